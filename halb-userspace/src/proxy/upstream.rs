//! Connections to backends: opened with a connect timeout, spoken to with
//! hyper's HTTP/1.1 client, and kept for the next request when the
//! service keeps backend connections alive.

use std::{net::SocketAddr, sync::Mutex, time::Duration};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Bodies going to backends and back to clients.
pub type Body = BoxBody<Bytes, hyper::Error>;
pub type Sender = SendRequest<Body>;

/// Idle connections kept per backend and worker at most.
const MAX_IDLE: usize = 64;
/// Worker threads with idle lists of their own (more share them).
const WORKER_SLOTS: usize = 16;

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Names the calling thread's proxy worker: each keeps its own idle
/// connections, whose tasks run on its own runtime (no cross-thread
/// wake-ups per request).
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index % WORKER_SLOTS));
}

/// A backend's idle kept-alive connections, per worker.
pub struct Idle(Vec<Mutex<Vec<Sender>>>);

impl Default for Idle {
    fn default() -> Self {
        Self((0..WORKER_SLOTS).map(|_| Mutex::default()).collect())
    }
}

impl Idle {
    fn mine(&self) -> &Mutex<Vec<Sender>> {
        &self.0[WORKER.with(std::cell::Cell::get)]
    }

    /// An idle connection still open and ready for a request.
    pub fn take(&self) -> Option<Sender> {
        let mut idle = self.mine().lock().expect("idle lock");
        while let Some(sender) = idle.pop() {
            if sender.is_ready() && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    pub fn put(&self, sender: Sender) {
        let mut idle = self.mine().lock().expect("idle lock");
        if idle.len() < MAX_IDLE && !sender.is_closed() {
            idle.push(sender);
        }
    }

    pub fn clear(&self) {
        for slot in &self.0 {
            slot.lock().expect("idle lock").clear();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timeout after {0:?}")]
    Timeout(Duration),
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] hyper::Error),
}

/// Opens a connection to `addr` within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(timeout))??;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the backend or the last sender closes it.
        let _ = connection.await;
    });
    Ok(sender)
}
