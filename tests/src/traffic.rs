//! A load client that counts every outcome: HTTP/1.1 requests, each on a
//! new TCP connection, from inside a namespace, with the answering
//! backend's name (halb-web's body) tallied per request.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::Mutex,
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::netns::NetNs;

/// What a batch of requests met.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: usize,
    pub failed: usize,
    /// Requests answered, by backend name.
    pub by_backend: BTreeMap<String, usize>,
    /// The first few failures, for the assertion message.
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

impl Tally {
    /// Share of answered requests that `backend` served.
    pub fn share(&self, backend: &str) -> f64 {
        *self.by_backend.get(backend).unwrap_or(&0) as f64 / self.ok.max(1) as f64
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.failed += other.failed;
        for (name, n) in other.by_backend {
            *self.by_backend.entry(name).or_default() += n;
        }
        self.errors.extend(other.errors);
        self.errors.truncate(10);
    }
}

/// How a request's connection is made.
#[derive(Clone, Copy)]
pub enum Source {
    /// An ephemeral port, closed normally.
    Ephemeral,
    /// Source port `first + i` for request `i`, closed with RST (no
    /// TIME_WAIT), so a later batch can reuse exactly the same 5-tuples.
    FixedPorts { first: u16 },
}

/// Sends `count` requests to `target` from `ns`, `concurrency` at a time.
pub fn http_requests(
    ns: &NetNs,
    target: SocketAddr,
    count: usize,
    concurrency: usize,
    source: Source,
) -> Tally {
    let started = Instant::now();
    let total = Mutex::new(Tally::default());
    std::thread::scope(|scope| {
        for worker in 0..concurrency {
            let total = &total;
            scope.spawn(move || {
                ns.enter_current_thread();
                let mut tally = Tally::default();
                for i in (worker..count).step_by(concurrency) {
                    match request(target, source, i) {
                        Ok(body) => {
                            tally.ok += 1;
                            *tally.by_backend.entry(body).or_default() += 1;
                        }
                        Err(e) => {
                            tally.failed += 1;
                            if tally.errors.len() < 10 {
                                tally.errors.push(format!("request {i}: {e}"));
                            }
                        }
                    }
                }
                total.lock().expect("tally lock").merge(tally);
            });
        }
    });
    let mut tally = total.into_inner().expect("tally lock");
    tally.elapsed = started.elapsed();
    tally
}

/// One request; returns the response body (the backend's name), trimmed.
pub fn request(target: SocketAddr, source: Source, i: usize) -> Result<String, String> {
    let timeout = Duration::from_secs(5);
    let stream = match source {
        Source::Ephemeral => {
            TcpStream::connect_timeout(&target, timeout).map_err(|e| format!("connect: {e}"))?
        }
        Source::FixedPorts { first } => {
            let socket = Socket::new(
                Domain::for_address(target),
                Type::STREAM,
                Some(Protocol::TCP),
            )
            .map_err(|e| format!("socket: {e}"))?;
            socket
                .set_reuse_address(true)
                .map_err(|e| format!("reuse: {e}"))?;
            socket
                .set_linger(Some(Duration::ZERO))
                .map_err(|e| format!("linger: {e}"))?;
            let port = first + i as u16;
            let local: SocketAddr = if target.is_ipv4() {
                ([0, 0, 0, 0], port).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, port).into()
            };
            socket
                .bind(&SockAddr::from(local))
                .map_err(|e| format!("bind {local}: {e}"))?;
            socket
                .connect_timeout(&SockAddr::from(target), timeout)
                .map_err(|e| format!("connect from {port}: {e}"))?;
            socket.into()
        }
    };
    exchange_get(stream, timeout)
}

/// One request on the connected `stream`, with the 5 s timeout of [`request`].
pub fn get_on(stream: TcpStream) -> Result<String, String> {
    exchange_get(stream, Duration::from_secs(5))
}

/// `GET /` on the connected `stream`; returns the body, trimmed.
fn exchange_get(mut stream: TcpStream, timeout: Duration) -> Result<String, String> {
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: halb-test\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("receive: {e}"))?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(format!("unexpected response {response:?}"));
    }
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .ok_or_else(|| format!("no body in {response:?}"))?;
    Ok(body.trim().to_owned())
}

/// One request of a timed load: when it started and what it met.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Duration,
    pub result: Result<String, String>,
}

/// Sends requests on new connections from `ns` to `target`, `concurrency`
/// at a time with `pause` between a worker's requests, for `duration`;
/// returns every request's outcome in time order.
pub fn http_load(
    ns: &NetNs,
    target: SocketAddr,
    duration: Duration,
    concurrency: usize,
    pause: Duration,
) -> Vec<Sample> {
    let started = Instant::now();
    let samples = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            let samples = &samples;
            scope.spawn(move || {
                ns.enter_current_thread();
                let mut mine = Vec::new();
                while started.elapsed() < duration {
                    let at = started.elapsed();
                    let result = request(target, Source::Ephemeral, 0);
                    mine.push(Sample { at, result });
                    std::thread::sleep(pause);
                }
                samples.lock().expect("samples lock").extend(mine);
            });
        }
    });
    let mut samples = samples.into_inner().expect("samples lock");
    samples.sort_by_key(|s| s.at);
    samples
}

/// One HTTP/1.1 connection kept open across requests: the same flow, so
/// the same backend, as long as the balancer keeps it there.
pub struct KeepAlive {
    stream: TcpStream,
}

impl KeepAlive {
    /// Connects from `ns` to `target`.
    pub fn connect(ns: &NetNs, target: SocketAddr) -> Self {
        let stream = ns
            .run(|| TcpStream::connect_timeout(&target, Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("connect to {target}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        Self { stream }
    }

    /// Sends a request on the open connection; returns the body (the
    /// backend's name).
    pub fn request(&mut self) -> Result<String, String> {
        self.stream
            .write_all(b"GET / HTTP/1.1\r\nHost: halb-test\r\n\r\n")
            .map_err(|e| format!("send: {e}"))?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match self.stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                Ok(_) => return Err("connection closed".into()),
                Err(e) => return Err(format!("receive: {e}")),
            }
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no content-length in {head:?}"))?;
        let mut body = vec![0u8; length];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| format!("receive body: {e}"))?;
        Ok(String::from_utf8_lossy(&body).trim().to_owned())
    }
}

/// Sends `request` as-is to `target` (from the calling thread's namespace),
/// then reads until the server closes or `wait` passes; returns what came.
pub fn exchange(target: SocketAddr, request: &[u8], wait: Duration) -> Result<String, String> {
    let mut stream =
        TcpStream::connect_timeout(&target, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(wait))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request)
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if response.is_empty() => return Err(format!("receive: {e}")),
            Err(_) => break,
        }
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// `GET path` on a new connection with `headers` (each "Name: value");
/// returns the status code and the body.
pub fn get(target: SocketAddr, path: &str, headers: &[&str]) -> Result<(u16, String), String> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: halb-test\r\nConnection: close\r\n");
    for h in headers {
        request += &format!("{h}\r\n");
    }
    request += "\r\n";
    let response = exchange(target, request.as_bytes(), Duration::from_secs(5))?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {response:?}"))?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}
