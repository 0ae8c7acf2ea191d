//! The metrics endpoint, served by hyper in tasks of its own: no client,
//! however slow or idle, holds up the agent. The page itself is rendered
//! by the agent on request (a quick, synchronous step in its loop) and
//! handed back over a oneshot channel.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, mpsc, oneshot},
    task::JoinHandle,
};

/// A request for the page: the agent renders it and sends it back.
pub type PageRequest = oneshot::Sender<String>;

/// How long a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one connection may live, whatever it does.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the agent may take to render the page.
const RENDER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {source}")]
pub struct MetricsError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// The running endpoint; stops accepting when dropped.
pub struct MetricsServer {
    acceptor: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics`, asking `pages` for each page.
    pub async fn start(
        addr: SocketAddr,
        pages: mpsc::Sender<PageRequest>,
    ) -> Result<Self, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError { addr, source })?;
        Ok(Self {
            acceptor: tokio::spawn(accept(listener, pages)),
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept(listener: TcpListener, pages: mpsc::Sender<PageRequest>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Too many at once: closing is cheaper than queueing.
            continue;
        };
        let pages = pages.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request| respond(request, pages.clone()));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
        });
    }
}

async fn respond<B>(
    request: Request<B>,
    pages: mpsc::Sender<PageRequest>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/metrics" {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            "metrics are at /metrics\n".into(),
        ));
    }
    let (tx, rx) = oneshot::channel();
    let page = match pages.send(tx).await {
        Ok(()) => tokio::time::timeout(RENDER_TIMEOUT, rx)
            .await
            .ok()
            .and_then(Result::ok),
        Err(_) => None,
    };
    Ok(match page {
        Some(body) => {
            let mut response = plain(StatusCode::OK, body);
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        None => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down\n".into(),
        ),
    })
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
