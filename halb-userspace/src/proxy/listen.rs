//! A layer-7 service's listener and its client connections.
//!
//! The socket is bound with IP_FREEBIND, so a BACKUP node listens on the
//! VIP before VRRP gives it the address (no `net.ipv4.ip_nonlocal_bind`).
//! Each connection is served by hyper (HTTP/1.1, keep-alive), which answers
//! a malformed request with 400 and a head over `max_header_size` with 431;
//! a client that does not send its request within `timeouts.http_request`
//! gets 408 here, since hyper only closes. Every such refusal is logged.

use std::{
    future::Future as _,
    io::Write as _,
    net::SocketAddr,
    os::fd::AsFd,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use http::StatusCode;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, watch},
};

use super::{
    forward::{self, Connection, Service},
    log::Record,
    upstream,
};

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// A listening service; [`Listener::stop`] drains it.
///
/// Each worker thread runs a single-threaded runtime and serves the
/// connections handed to it whole, with its own backend connections, so a
/// request never wakes another thread (as haproxy's threads do not).
pub struct Listener {
    pub addr: SocketAddr,
    service: watch::Sender<Arc<Service>>,
    stop: watch::Sender<bool>,
    /// Client connections open on any worker.
    open: Arc<AtomicUsize>,
    done: Vec<oneshot::Receiver<()>>,
}

/// Worker threads per listener: one per CPU, within reason.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16)
}

impl Listener {
    pub fn start(addr: SocketAddr, service: Arc<Service>) -> Result<Self, ListenError> {
        let socket = bind(addr).map_err(|source| ListenError { addr, source })?;
        let (service_tx, service_rx) = watch::channel(service);
        let (stop_tx, stop_rx) = watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
        let mut done = Vec::new();
        let mut socket = Some(socket);
        let count = workers();
        let loads: Arc<Vec<AtomicUsize>> =
            Arc::new((0..count).map(|_| AtomicUsize::new(0)).collect());
        let (senders, mut receivers): (Vec<_>, Vec<_>) = (0..count)
            .map(|_| mpsc::unbounded_channel::<Accepted>())
            .unzip();
        for worker in (0..count).rev() {
            let inbox = receivers.pop().expect("one inbox per worker");
            let (done_tx, done_rx) = oneshot::channel();
            let (service_rx, stop_rx, open, loads) = (
                service_rx.clone(),
                stop_rx.clone(),
                open.clone(),
                loads.clone(),
            );
            // Worker 0 also accepts, and hands each connection to the worker
            // with the fewest (as haproxy spreads connections over threads).
            let acceptor =
                (worker == 0).then(|| (socket.take().expect("one socket"), senders.clone()));
            std::thread::Builder::new()
                .name(format!("http-{worker}"))
                .spawn(move || {
                    upstream::set_worker(worker);
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for an HTTP worker");
                    runtime.block_on(async move {
                        if let Some((socket, senders)) = acceptor {
                            match TcpListener::from_std(socket) {
                                Ok(listener) => {
                                    tokio::spawn(accept(
                                        listener,
                                        senders,
                                        loads.clone(),
                                        stop_rx.clone(),
                                    ));
                                }
                                Err(e) => {
                                    tracing::error!(%addr, error = %e, "HTTP proxy cannot listen")
                                }
                            }
                        }
                        work(worker, inbox, service_rx, stop_rx, open, loads).await;
                    });
                    let _ = done_tx.send(());
                })
                .map_err(|source| ListenError { addr, source })?;
            done.push(done_rx);
        }
        Ok(Self {
            addr,
            service: service_tx,
            stop: stop_tx,
            open,
            done,
        })
    }

    /// New connections get `service` (reloaded rules and pools); open ones
    /// finish with what they started with.
    pub fn replace(&self, service: Arc<Service>) {
        self.service.send_replace(service);
    }

    pub fn service(&self) -> Arc<Service> {
        self.service.borrow().clone()
    }

    /// Stops accepting and lets open connections finish their current
    /// request; returns once all are closed or `limit` has passed.
    pub async fn stop(self, limit: std::time::Duration) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + limit;
        for done in self.done {
            let _ = tokio::time::timeout_at(deadline, done).await;
        }
        if self.open.load(Ordering::Relaxed) > 0 {
            tracing::warn!(addr = %self.addr, open = self.open.load(Ordering::Relaxed), "connections still open after the drain limit: closed");
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
        socket.set_freebind_v6(true)?;
    } else {
        socket.set_freebind_v4(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// A connection accepted, on its way to a worker.
type Accepted = (std::net::TcpStream, SocketAddr);

/// Accepts until told to stop; each connection goes to the least loaded
/// worker.
async fn accept(
    listener: TcpListener,
    workers: Vec<mpsc::UnboundedSender<Accepted>>,
    loads: Arc<Vec<AtomicUsize>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted.and_then(|(s, c)| Ok((s.into_std()?, c))) {
                Ok(connection) => {
                    let least = (0..workers.len())
                        .min_by_key(|w| loads[*w].load(Ordering::Relaxed))
                        .unwrap_or(0);
                    loads[least].fetch_add(1, Ordering::Relaxed);
                    let _ = workers[least].send(connection);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Serves the connections handed to worker `me` until told to stop, then
/// waits for them (they run on this thread's runtime, which ends when
/// this returns).
async fn work(
    me: usize,
    mut inbox: mpsc::UnboundedReceiver<Accepted>,
    service: watch::Receiver<Arc<Service>>,
    mut stop: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
    loads: Arc<Vec<AtomicUsize>>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some((stream, client)) = inbox.recv() => {
                let Ok(stream) = TcpStream::from_std(stream) else {
                    loads[me].fetch_sub(1, Ordering::Relaxed);
                    continue;
                };
                let service = service.borrow().clone();
                let (open, loads, stop) = (open.clone(), loads.clone(), stop.clone());
                tokio::spawn(async move {
                    serve(stream, client, service, stop, &open).await;
                    loads[me].fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
    }
    let deadline = tokio::time::Instant::now() + super::DRAIN_LIMIT;
    while loads[me].load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn serve(
    stream: TcpStream,
    client: SocketAddr,
    service: Arc<Service>,
    mut stop: watch::Receiver<bool>,
    open: &AtomicUsize,
) {
    service.connections.fetch_add(1, Ordering::Relaxed);
    open.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    // A second handle on the socket, to answer 408 after hyper gave up.
    let raw = stream
        .as_fd()
        .try_clone_to_owned()
        .map(std::net::TcpStream::from);
    let bytes_read = Arc::new(AtomicU64::new(0));
    let connection = Arc::new(Connection {
        client,
        accepted: Instant::now(),
        requests: AtomicU64::new(0),
        bytes_read: bytes_read.clone(),
        idle_mark: AtomicU64::new(0),
    });
    let settings = &service.settings;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.timeouts.http_request)
        .max_buf_size((settings.max_header_size as usize).max(8192))
        .keep_alive(true);
    let handler = {
        let service = service.clone();
        let connection = connection.clone();
        service_fn(move |request| forward::handle(service.clone(), connection.clone(), request))
    };
    let io = TokioIo::new(Counted {
        inner: stream,
        connection: connection.clone(),
        keep_alive: settings.timeouts.keep_alive,
        idle: None,
    });
    let served = builder.serve_connection(io, handler);
    tokio::pin!(served);
    let result = tokio::select! {
        result = served.as_mut() => result,
        _ = stop.changed() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        refused(&service, &connection, &e, raw.ok());
    }
    service.connections.fetch_sub(1, Ordering::Relaxed);
    open.fetch_sub(1, Ordering::Relaxed);
}

/// Logs (and for a timeout, answers) a request hyper could not take.
fn refused(
    service: &Service,
    connection: &Connection,
    error: &hyper::Error,
    raw: Option<std::net::TcpStream>,
) {
    let half_sent = connection.bytes_read.load(Ordering::Relaxed)
        > connection.idle_mark.load(Ordering::Relaxed);
    let first = connection.requests.load(Ordering::Relaxed) == 0;
    let (status, termination) = if error.is_timeout() {
        // An idle kept-alive connection just closes; a request that never
        // came, or came in part, gets 408 (haproxy's `timeout http-request`).
        if !first && !half_sent {
            return;
        }
        if let Some(mut raw) = raw {
            let status = StatusCode::REQUEST_TIMEOUT;
            let body = format!(
                "<html><body><h1>408 Request Time-out</h1>\n{}\n</body></html>\n",
                forward::error_text(status)
            );
            let _ = raw.write_all(
                format!(
                    "HTTP/1.1 408 Request Time-out\r\ncontent-length: {}\r\ncache-control: no-cache\r\ncontent-type: text/html\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
        (408, "cR--")
    } else if error.is_parse_too_large() {
        (431, "PR--")
    } else if error.is_parse() {
        (400, "PR--")
    } else {
        tracing::debug!(service = service.name, client = %connection.client, error = %error, "client connection ended");
        return;
    };
    let mut record = Record::new(
        connection.client,
        &service.name,
        service.connections.load(Ordering::Relaxed),
        &service.name,
        "<BADREQ>".to_owned(),
    );
    record.status = status;
    record.termination = termination;
    record.emit();
}

/// A client stream that counts the bytes read from it, and ends an idle
/// kept-alive connection after `keep_alive` (hyper's own timer is the
/// request-head one).
struct Counted {
    inner: TcpStream,
    connection: Arc<Connection>,
    keep_alive: std::time::Duration,
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Counted {
    /// Between requests: one was answered and nothing new has come.
    fn between_requests(&self) -> bool {
        let c = &self.connection;
        c.requests.load(Ordering::Relaxed) > 0
            && c.bytes_read.load(Ordering::Relaxed) == c.idle_mark.load(Ordering::Relaxed)
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.connection
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        if polled.is_ready() || !self.between_requests() {
            self.idle = None;
            return polled;
        }
        let keep_alive = self.keep_alive;
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(keep_alive)));
        if idle.as_mut().poll(cx).is_ready() {
            // End of stream: hyper closes an idle connection quietly.
            self.idle = None;
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
