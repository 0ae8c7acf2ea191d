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

/// Idle connections kept per backend at most.
const MAX_IDLE: usize = 64;

/// A backend's idle kept-alive connections.
#[derive(Default)]
pub struct Idle(Mutex<Vec<Sender>>);

impl Idle {
    /// An idle connection still open and ready for a request.
    pub fn take(&self) -> Option<Sender> {
        let mut idle = self.0.lock().expect("idle lock");
        while let Some(sender) = idle.pop() {
            if sender.is_ready() && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    pub fn put(&self, sender: Sender) {
        let mut idle = self.0.lock().expect("idle lock");
        if idle.len() < MAX_IDLE && !sender.is_closed() {
            idle.push(sender);
        }
    }

    pub fn clear(&self) {
        self.0.lock().expect("idle lock").clear();
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
