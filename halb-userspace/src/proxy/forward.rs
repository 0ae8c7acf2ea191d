//! One request through the proxy: pick the pool by the rules, wait for a
//! slot under maxconn, pick a backend, connect (retrying on another
//! backend when that fails), forward with X-Forwarded-For, and stream the
//! response back; the access-log line is written when the body is done.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    log::Record,
    pool::Pool,
    route::Routes,
    upstream::{self, Body, Sender},
};
use crate::config::validate::{HttpSettings, ServiceConfig};

/// One layer-7 service as its connections share it.
pub struct Service {
    pub name: String,
    pub routes: Routes,
    pub pools: Vec<Arc<Pool>>,
    pub settings: HttpSettings,
    slots: Arc<Semaphore>,
    /// Client connections open now, and requests waiting for a slot.
    pub connections: AtomicUsize,
    pub waiting: AtomicUsize,
}

impl Service {
    pub fn new(config: &ServiceConfig) -> Option<Self> {
        let http = config.http.as_ref()?;
        Some(Self {
            name: config.name.clone(),
            routes: Routes::new(http),
            pools: http.pools.iter().map(|p| Arc::new(Pool::new(p))).collect(),
            settings: http.settings.clone(),
            slots: Arc::new(Semaphore::new(http.settings.maxconn as usize)),
            connections: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        })
    }
}

/// What a client connection carries from one request to the next.
pub struct Connection {
    pub client: SocketAddr,
    pub accepted: Instant,
    pub requests: AtomicU64,
    /// Bytes read from the client so far, and as of the last response
    /// done: more since then means a request is half sent.
    pub bytes_read: Arc<AtomicU64>,
    pub idle_mark: AtomicU64,
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [header::HeaderName; 7] = [
    header::CONNECTION,
    header::HeaderName::from_static("keep-alive"),
    header::HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub async fn handle(
    service: Arc<Service>,
    connection: Arc<Connection>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let first = connection.requests.fetch_add(1, Ordering::Relaxed) == 0;
    let pool = service.pools[service.routes.pick(&request)].clone();
    let mut record = Record::new(
        connection.client,
        &service.name,
        service.connections.load(Ordering::Relaxed),
        &pool.name,
        format!(
            "{} {} {:?}",
            request.method(),
            request.uri(),
            request.version()
        ),
    );
    record.started = started;
    record.t_request = first.then(|| started.duration_since(connection.accepted));

    // A free slot at once (the usual case) costs no timer.
    let permit = match service.slots.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            service.waiting.fetch_add(1, Ordering::Relaxed);
            record.queue_waiting = service.waiting.load(Ordering::Relaxed) - 1;
            let permit = tokio::time::timeout(
                service.settings.timeouts.queue,
                service.slots.clone().acquire_owned(),
            )
            .await;
            service.waiting.fetch_sub(1, Ordering::Relaxed);
            let Ok(Ok(permit)) = permit else {
                return Ok(canned(
                    record,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "sQ--",
                    connection,
                ));
            };
            permit
        }
    };
    record.t_queue = Some(started.elapsed());

    let (parts, body) = request.into_parts();
    let body_empty = body.is_end_stream();
    let client_timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut body = Some(
        Timed {
            inner: body.boxed(),
            limit: service.settings.timeouts.client,
            sleep: None,
            timed_out: client_timed_out.clone(),
        }
        .boxed(),
    );
    let uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let keep_alive = service.settings.backend_keep_alive;
    let mut tried: Vec<usize> = Vec::new();
    loop {
        let pick = if service.settings.redispatch || tried.is_empty() {
            pool.pick(&tried)
        } else {
            Some(tried[0])
        };
        let Some(index) = pick else {
            return Ok(canned(
                record,
                StatusCode::SERVICE_UNAVAILABLE,
                "SC--",
                connection,
            ));
        };
        let backend = &pool.backends[index];
        record.backend = format!("{}/{}", pool.name, backend.addr);
        let connect_started = Instant::now();
        let reused = backend.idle.take();
        let was_reused = reused.is_some();
        let mut sender = match reused {
            Some(sender) => sender,
            None => {
                let connected = match upstream::connect(
                    backend.addr,
                    service.settings.timeouts.connect,
                )
                .await
                {
                    Ok(mut sender) => match sender.ready().await {
                        Ok(()) => Ok(sender),
                        Err(e) => Err(e.to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                };
                match connected {
                    Ok(sender) => sender,
                    Err(reason) => {
                        backend.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(service = service.name, backend = %backend.addr, reason, "connect failed");
                        tried.push(index);
                        if record.retries < service.settings.retries {
                            record.retries += 1;
                            continue;
                        }
                        return Ok(canned(
                            record,
                            StatusCode::SERVICE_UNAVAILABLE,
                            "SC--",
                            connection,
                        ));
                    }
                }
            }
        };
        record.t_connect = Some(connect_started.elapsed());
        let mut outgoing = Request::builder()
            .method(parts.method.clone())
            .uri(uri.as_str())
            .body(body.take().unwrap_or_else(empty))
            .expect("method and URI came from a parsed request");
        // Built per attempt from the client's headers (a retry is rare;
        // a copy kept for it would cost every request).
        *outgoing.headers_mut() =
            upstream_headers(&parts.headers, connection.client, &service.settings);
        let active = Active::start(pool.clone(), index);
        let sent = tokio::time::timeout(
            service.settings.timeouts.server,
            sender.send_request(outgoing),
        )
        .await;
        let response = match sent {
            Err(_) => {
                drop(active);
                return Ok(canned(
                    record,
                    StatusCode::GATEWAY_TIMEOUT,
                    "sH--",
                    connection,
                ));
            }
            Ok(Err(e)) => {
                drop(active);
                // A kept-alive connection the backend closed meanwhile, or a
                // backend that died mid-request: a request without a body
                // can go again (to another backend when redispatching).
                if body_empty && record.retries < service.settings.retries {
                    if was_reused {
                        // Its other idle connections are likely as stale.
                        backend.idle.clear();
                    } else {
                        tried.push(index);
                        backend.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    record.retries += 1;
                    tracing::debug!(service = service.name, backend = %backend.addr, error = %e, "request failed; retrying");
                    continue;
                }
                if client_timed_out.load(Ordering::Relaxed) {
                    return Ok(canned(
                        record,
                        StatusCode::REQUEST_TIMEOUT,
                        "cD--",
                        connection,
                    ));
                }
                return Ok(canned(record, StatusCode::BAD_GATEWAY, "SH--", connection));
            }
            Ok(Ok(response)) => response,
        };
        backend.served.fetch_add(1, Ordering::Relaxed);
        record.t_response = Some(started.elapsed());
        record.status = response.status().as_u16();
        record.backend_active = pool
            .backends
            .iter()
            .map(|b| b.active.load(Ordering::Relaxed))
            .sum();
        record.server_active = backend.active.load(Ordering::Relaxed);
        let reusable = keep_alive && !wants_close(response.headers());
        let (mut head, body) = response.into_parts();
        strip_hop_by_hop(&mut head.headers);
        let logged = Logged {
            inner: body.boxed(),
            bytes: 0,
            finish: Some(Finish {
                record,
                reuse: reusable.then_some(sender),
                active: Some(active),
                _permit: Some(permit),
                connection,
            }),
        };
        return Ok(Response::from_parts(head, logged.boxed()));
    }
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// The request's headers for the backend: hop-by-hop ones removed, the
/// client's address added as X-Forwarded-For (unless it is in the
/// excepted network), and `Connection: close` when not keeping alive.
fn upstream_headers(headers: &HeaderMap, client: SocketAddr, settings: &HttpSettings) -> HeaderMap {
    let mut out = headers.clone();
    strip_hop_by_hop(&mut out);
    let client_ip = client.ip().to_canonical();
    let excepted = settings
        .forwarded_for_except
        .is_some_and(|(net, prefix)| in_network(client_ip, net, prefix));
    if !excepted && let Ok(value) = HeaderValue::from_str(&client_ip.to_string()) {
        out.append(header::HeaderName::from_static("x-forwarded-for"), value);
    }
    if !settings.backend_keep_alive {
        out.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    out
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|n| n.trim().to_ascii_lowercase()))
        .filter(|n| !n.is_empty())
        .collect();
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    for name in named {
        headers.remove(name.as_str());
    }
}

fn wants_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
    })
}

pub fn in_network(ip: std::net::IpAddr, net: std::net::IpAddr, prefix: u8) -> bool {
    use std::net::IpAddr::{V4, V6};
    match (ip, net) {
        (V4(a), V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (V6(a), V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// haproxy's short error pages.
pub fn error_text(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Your browser sent an invalid request.",
        408 => "Your browser didn't send a complete request in time.",
        431 => "The request's headers are too large.",
        502 => "The server returned an invalid or incomplete response.",
        503 => "No server is available to handle this request.",
        504 => "The server didn't respond in time.",
        _ => "",
    }
}

/// A short error page, logged like any response.
fn canned(
    mut record: Record,
    status: StatusCode,
    termination: &'static str,
    connection: Arc<Connection>,
) -> Response<Body> {
    record.status = status.as_u16();
    record.termination = termination;
    let text = format!(
        "<html><body><h1>{} {}</h1>\n{}\n</body></html>\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        error_text(status)
    );
    let logged = Logged {
        inner: Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
        bytes: 0,
        finish: Some(Finish {
            record,
            reuse: None,
            active: None,
            _permit: None,
            connection,
        }),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(logged.boxed())
        .expect("a valid response")
}

/// A client's request body, failed when the client sends nothing for
/// `limit` (haproxy's `timeout client` while it uploads).
struct Timed {
    inner: Body,
    limit: std::time::Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: Arc<std::sync::atomic::AtomicBool>,
}

impl hyper::body::Body for Timed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            self.sleep = None;
            return polled;
        }
        let limit = self.limit;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if std::future::Future::poll(sleep.as_mut(), cx).is_ready() {
            // Ending the body early makes the backend request fail; hyper
            // has no public way to make a hyper::Error of our own.
            self.sleep = None;
            self.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One request in flight on a backend (for leastconn and the log).
struct Active {
    pool: Arc<Pool>,
    index: usize,
}

impl Active {
    fn start(pool: Arc<Pool>, index: usize) -> Self {
        pool.backends[index].active.fetch_add(1, Ordering::Relaxed);
        Self { pool, index }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.pool.backends[self.index]
            .active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// What happens when a response body is done (or dropped).
struct Finish {
    record: Record,
    /// The backend connection, to keep if the body completed.
    reuse: Option<Sender>,
    active: Option<Active>,
    _permit: Option<OwnedSemaphorePermit>,
    connection: Arc<Connection>,
}

/// A response body that counts its bytes and, once done, writes the log
/// line, returns the backend connection to its pool and frees the slot.
struct Logged {
    inner: Body,
    bytes: u64,
    finish: Option<Finish>,
}

impl Logged {
    fn done(&mut self, completed: bool) {
        let Some(mut finish) = self.finish.take() else {
            return;
        };
        finish.record.bytes = self.bytes;
        if !completed && finish.record.termination == "----" {
            // The client went away before the whole response.
            finish.record.termination = "CD--";
        }
        finish.record.emit();
        if let (true, Some(sender), Some(active)) = (completed, finish.reuse.take(), &finish.active)
        {
            active.pool.backends[active.index].idle.put(sender);
        }
        let c = &finish.connection;
        c.idle_mark
            .store(c.bytes_read.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl hyper::body::Body for Logged {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.done(true);
                }
            }
            Poll::Ready(None) => self.done(true),
            Poll::Ready(Some(Err(_))) => self.done(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.done(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_by_prefix() {
        let net = "127.0.0.0".parse().unwrap();
        assert!(in_network("127.1.2.3".parse().unwrap(), net, 8));
        assert!(!in_network("198.18.0.10".parse().unwrap(), net, 8));
        assert!(in_network("198.18.0.10".parse().unwrap(), net, 0));
        let net6 = "2001:db8::".parse().unwrap();
        assert!(in_network("2001:db8::10".parse().unwrap(), net6, 32));
        assert!(!in_network("127.0.0.1".parse().unwrap(), net6, 32));
    }

    #[test]
    fn hop_by_hop_headers_go_and_the_client_is_added() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.insert(header::HOST, HeaderValue::from_static("www"));
        let settings = crate::config::validate::HttpSettings {
            forwarded_for_except: Some(("127.0.0.0".parse().unwrap(), 8)),
            backend_keep_alive: true,
            retries: 3,
            redispatch: true,
            maxconn: 1,
            max_header_size: 16384,
            timeouts: Default::default(),
        };
        let out = upstream_headers(&h, "198.18.0.10:1234".parse().unwrap(), &settings);
        assert!(out.get(header::CONNECTION).is_none() && out.get("x-secret").is_none());
        let xff: Vec<_> = out.get_all("x-forwarded-for").iter().collect();
        assert_eq!(xff, ["203.0.113.9", "198.18.0.10"]);
        let local = upstream_headers(&h, "127.0.0.1:1234".parse().unwrap(), &settings);
        assert_eq!(local.get_all("x-forwarded-for").iter().count(), 1);
    }
}
