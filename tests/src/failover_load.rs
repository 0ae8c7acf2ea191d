//! A load client for failover tests that counts every broken connection.
//! Three kinds of traffic, each broken differently by a failover:
//!
//! - kept-alive connections, a `GET /` on each about every 100 ms: lost
//!   connection state breaks them, a pause shows as their longest gap;
//! - downloads of halb-web's `/stream/MS`, checked byte by byte: a lost,
//!   repeated or reordered segment, an early close or a stall breaks them;
//! - new connections, one per request: a balancer that refuses new flows
//!   for a while fails them.
//!
//! The client runs on threads of its own from [`FailoverLoad::start`]
//! until [`FailoverLoad::stop`] returns the [`Report`]; dropping it
//! instead (say, in a panicking test) stops and joins every thread too.

use std::{
    fmt,
    net::{Shutdown, SocketAddr, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::{netns::NetNs, traffic};

mod kept_alive;
mod stream;

pub use stream::{STREAM_CHUNK, STREAM_PACE, stream_byte, stream_len};

/// Time between two requests of one new-connection worker: enough to see
/// a refusal of a few tens of milliseconds, few enough that a long test
/// neither runs out of ephemeral ports nor takes the CPUs from the
/// balancer under test.
const NEW_CONN_PACE: Duration = Duration::from_millis(10);
/// Error texts kept per kind of traffic.
const MAX_ERRORS: usize = 20;
/// A response head longer than this is an error.
const MAX_HEAD: usize = 16 * 1024;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    /// Kept-alive connections, all opened before [`FailoverLoad::start`] returns.
    pub kept_alive: usize,
    /// Downloads of `/stream/{download_ms}`, each run once, all at the start.
    pub downloads: usize,
    pub download_ms: u64,
    /// Threads that make one new connection per request, until stopped.
    pub new_conn_workers: usize,
}

/// Counts so far, to wait until traffic flows (or has broken).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Requests answered on kept-alive connections.
    pub kept_alive_requests: usize,
    pub kept_alive_broken: usize,
    pub new_ok: usize,
    pub new_failed: usize,
    /// Downloads finished, whole or broken.
    pub downloads_finished: usize,
}

/// What the load met, from start to stop.
#[derive(Debug, Clone)]
pub struct Report {
    pub kept_alive: usize,
    pub kept_alive_broken: usize,
    /// Requests answered on kept-alive connections.
    pub kept_alive_requests: usize,
    /// The longest time between two answers on one kept-alive connection.
    pub longest_gap: Duration,
    pub downloads: usize,
    pub downloads_broken: usize,
    /// Body bytes received and checked, over all downloads (a broken one
    /// counts those that came before it broke).
    pub download_bytes: u64,
    pub new_ok: usize,
    pub new_failed: usize,
    /// What broke, the first 20 of each kind of traffic.
    pub errors: Vec<String>,
}

impl Report {
    /// Broken connections of every kind: kept-alive, downloads, new.
    pub fn broken(&self) -> usize {
        self.kept_alive_broken + self.downloads_broken + self.new_failed
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kept-alive: {} connections, {} broken, {} requests answered, longest gap {:?}",
            self.kept_alive, self.kept_alive_broken, self.kept_alive_requests, self.longest_gap
        )?;
        writeln!(
            f,
            "downloads: {}, {} broken, {} bytes",
            self.downloads, self.downloads_broken, self.download_bytes
        )?;
        write!(
            f,
            "new connections: {} ok, {} failed",
            self.new_ok, self.new_failed
        )?;
        for error in &self.errors {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

/// The running load; see the module's comment.
pub struct FailoverLoad {
    spec: LoadSpec,
    started: Instant,
    shared: Arc<Shared>,
    kept_alive: Vec<JoinHandle<Vec<kept_alive::Outcome>>>,
    downloads: Vec<JoinHandle<stream::Outcome>>,
    new_conns: Vec<JoinHandle<Vec<String>>>,
}

impl FailoverLoad {
    /// Opens the kept-alive connections from `ns` to `target` (panics if
    /// one cannot be opened) and starts every kind of traffic in `spec`.
    pub fn start(ns: &NetNs, target: SocketAddr, spec: LoadSpec) -> Self {
        let streams: Vec<TcpStream> = ns.run(|| {
            (0..spec.kept_alive)
                .map(|i| {
                    kept_alive::open(target).unwrap_or_else(|e| {
                        panic!(
                            "kept-alive connection {i} of {} to {target}: {e}",
                            spec.kept_alive
                        )
                    })
                })
                .collect()
        });
        // Built before any thread starts, so that a panic part-way
        // through still stops those already running (Drop).
        let mut load = Self {
            spec,
            started: Instant::now(),
            shared: Arc::new(Shared::default()),
            kept_alive: Vec::new(),
            downloads: Vec::new(),
            new_conns: Vec::new(),
        };
        let mut streams = streams.into_iter().enumerate().peekable();
        while streams.peek().is_some() {
            let mut conns = Vec::new();
            for (id, stream) in streams.by_ref().take(kept_alive::PER_THREAD) {
                load.shared
                    .track(&stream)
                    .unwrap_or_else(|e| panic!("kept-alive connection {id}: {e}"));
                conns.push(kept_alive::KeptAlive::new(id, stream));
            }
            let name = format!("kept-alive-{}", load.kept_alive.len());
            load.kept_alive
                .push(load.spawn(ns, name, move |shared| kept_alive::run(conns, shared)));
        }
        for id in 0..spec.downloads {
            let ms = spec.download_ms;
            load.downloads
                .push(load.spawn(ns, format!("download-{id}"), move |shared| {
                    stream::download(id, target, ms, shared)
                }));
        }
        for id in 0..spec.new_conn_workers {
            let started = load.started;
            load.new_conns
                .push(load.spawn(ns, format!("new-conn-{id}"), move |shared| {
                    new_connections(target, started, shared)
                }));
        }
        load
    }

    /// Time since the load started: the clock of its error texts, for a
    /// test to print its own events against.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counts so far.
    pub fn progress(&self) -> Progress {
        let s = &self.shared;
        Progress {
            kept_alive_requests: s.kept_alive_requests.load(Ordering::Relaxed),
            kept_alive_broken: s.kept_alive_broken.load(Ordering::Relaxed),
            new_ok: s.new_ok.load(Ordering::Relaxed),
            new_failed: s.new_failed.load(Ordering::Relaxed),
            downloads_finished: s.downloads_finished.load(Ordering::Relaxed),
        }
    }

    /// Sends no more requests, waits for those in flight (a kept-alive
    /// answer for up to 10 s, the downloads to their end or a 10 s stall),
    /// joins every thread and reports.
    pub fn stop(mut self) -> Report {
        self.shared.stop.store(true, Ordering::Relaxed);
        let kept_alive: Vec<kept_alive::Outcome> = join(std::mem::take(&mut self.kept_alive))
            .into_iter()
            .flatten()
            .collect();
        let downloads = join(std::mem::take(&mut self.downloads));
        let new_errors: Vec<String> = join(std::mem::take(&mut self.new_conns))
            .into_iter()
            .flatten()
            .collect();
        // The threads are done with their connections; close them.
        self.shared.sockets.lock().expect("sockets lock").clear();

        let mut errors: Vec<String> = kept_alive
            .iter()
            .filter_map(|c| c.error.clone())
            .take(MAX_ERRORS)
            .collect();
        errors.extend(
            downloads
                .iter()
                .filter_map(|d| d.error.clone())
                .take(MAX_ERRORS),
        );
        errors.extend(new_errors.into_iter().take(MAX_ERRORS));
        let progress = self.progress();
        Report {
            kept_alive: self.spec.kept_alive,
            kept_alive_broken: progress.kept_alive_broken,
            kept_alive_requests: progress.kept_alive_requests,
            longest_gap: kept_alive
                .iter()
                .map(|c| c.longest_gap)
                .max()
                .unwrap_or_default(),
            downloads: self.spec.downloads,
            downloads_broken: downloads.iter().filter(|d| d.error.is_some()).count(),
            download_bytes: downloads.iter().map(|d| d.bytes).sum(),
            new_ok: progress.new_ok,
            new_failed: progress.new_failed,
            errors,
        }
    }

    /// Starts a thread named `name` in `ns` that runs `work`.
    fn spawn<T: Send + 'static>(
        &self,
        ns: &NetNs,
        name: String,
        work: impl FnOnce(&Shared) -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let ns = NetNs::open(ns.name());
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                ns.enter_current_thread();
                work(&shared)
            })
            .expect("spawn a load thread")
    }
}

impl Drop for FailoverLoad {
    /// Stops without waiting for answers: the kept-alive and download
    /// connections are shut down under their threads; a new-connection
    /// worker finishes its request (within its 5 s timeouts).
    fn drop(&mut self) {
        self.shared.abort();
        let panics = [
            join_quietly(self.kept_alive.drain(..)),
            join_quietly(self.downloads.drain(..)),
            join_quietly(self.new_conns.drain(..)),
        ];
        if let Some(panic) = panics.into_iter().flatten().next()
            && !std::thread::panicking()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Joins every thread, then re-raises the first panic among them.
fn join<T>(threads: Vec<JoinHandle<T>>) -> Vec<T> {
    let results: Vec<_> = threads.into_iter().map(JoinHandle::join).collect();
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        .collect()
}

/// Joins every thread; returns the first panic among them.
fn join_quietly<T>(
    threads: impl Iterator<Item = JoinHandle<T>>,
) -> Option<Box<dyn std::any::Any + Send>> {
    threads.filter_map(|t| t.join().err()).next()
}

/// What the load's threads share: flags that stop them, the counts
/// [`Progress`] reads, and a handle on every connection open for long,
/// so that Drop can shut down one a thread is blocked on.
#[derive(Default)]
struct Shared {
    /// Send no more requests.
    stop: AtomicBool,
    /// Give up on requests in flight too.
    abort: AtomicBool,
    kept_alive_requests: AtomicUsize,
    kept_alive_broken: AtomicUsize,
    new_ok: AtomicUsize,
    new_failed: AtomicUsize,
    downloads_finished: AtomicUsize,
    sockets: Mutex<Vec<TcpStream>>,
}

impl Shared {
    /// Keeps a handle on `stream` for [`Shared::abort`]; fails if the load
    /// is already aborted (its streams already shut down).
    fn track(&self, stream: &TcpStream) -> Result<(), String> {
        let handle = stream
            .try_clone()
            .map_err(|e| format!("clone socket: {e}"))?;
        self.sockets.lock().expect("sockets lock").push(handle);
        // Set before abort() takes the lock: either abort() saw the handle
        // pushed above, or this sees the flag.
        if self.abort.load(Ordering::Relaxed) {
            return Err("stopped".into());
        }
        Ok(())
    }

    /// Stops every thread as soon as it can: no more requests, and the
    /// tracked connections shut down, so blocked reads return at once.
    fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        for socket in self.sockets.lock().expect("sockets lock").drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// A response head: its length, status and content length.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    len: usize,
    status: u16,
    content_length: u64,
}

/// The head at the start of `buf`, or None while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(len) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) else {
        if buf.len() > MAX_HEAD {
            return Err(format!("no end of head in {} bytes", buf.len()));
        }
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&buf[..len]);
    let mut lines = text.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let content_length = lines
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim())
        })
        .ok_or_else(|| format!("no content-length in {text:?}"))?;
    let content_length = content_length
        .parse()
        .map_err(|e| format!("content-length {content_length:?}: {e}"))?;
    Ok(Some(Head {
        len,
        status,
        content_length,
    }))
}

/// A new-connection worker: `GET /` on a new connection, again and
/// again until stopped; returns the first errors, each with the time it
/// began (since `started`) and its source port, to find its flow.
fn new_connections(target: SocketAddr, started: Instant, shared: &Shared) -> Vec<String> {
    let mut errors = Vec::new();
    let mut next = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        let at = started.elapsed();
        let (port, result) = new_connection(target);
        let error = match result {
            Ok(body) if !body.is_empty() => None,
            Ok(_) => Some("empty body".to_owned()),
            Err(e) => Some(e),
        };
        match error {
            None => shared.new_ok.fetch_add(1, Ordering::Relaxed),
            Some(e) => {
                if errors.len() < MAX_ERRORS {
                    errors.push(format!("new connection at {at:?} from port {port}: {e}"));
                }
                shared.new_failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        next += NEW_CONN_PACE;
        match next.checked_duration_since(Instant::now()) {
            // A pace (NEW_CONN_PACE), not a wait for an event.
            Some(wait) => std::thread::sleep(wait),
            // Behind (a slow request): the next one at once, not a burst.
            None => next = Instant::now(),
        }
    }
    errors
}

/// One `GET /` on a new connection from an ephemeral port. The connect
/// starts non-blocking, so that the port the kernel chose (as connect()
/// chooses it, in turn, not at random as bind() would) is known even when
/// the handshake then fails.
fn new_connection(target: SocketAddr) -> (u16, Result<String, String>) {
    let socket = match Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    ) {
        Ok(socket) => socket,
        Err(e) => return (0, Err(format!("socket: {e}"))),
    };
    let started = socket
        .set_nonblocking(true)
        .and_then(|()| match socket.connect(&SockAddr::from(target)) {
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
            other => other,
        })
        .and_then(|()| socket.local_addr());
    let port = match started {
        Ok(local) => local.as_socket().map_or(0, |a| a.port()),
        Err(e) => return (0, Err(format!("connect: {e}"))),
    };
    let connected = wait_connected(&socket, Duration::from_secs(5))
        .and_then(|()| socket.set_nonblocking(false));
    match connected {
        Ok(()) => (port, traffic::get_on(socket.into())),
        Err(e) => (port, Err(format!("connect: {e}"))),
    }
}

/// Waits until the non-blocking connect of `socket` completes.
fn wait_connected(socket: &Socket, timeout: Duration) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        let mut poll = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut poll, 1, ms) };
        if ready < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if ready > 0 {
            return match socket.take_error()? {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_parsed_once_complete() {
        let answer =
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nconnection: keep-alive\r\n\r\nweb1\n";
        assert_eq!(parse_head(&answer[..20]), Ok(None));
        assert_eq!(
            parse_head(answer),
            Ok(Some(Head {
                len: answer.len() - 5,
                status: 200,
                content_length: 5,
            }))
        );
        assert!(parse_head(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_head(&[b'x'; MAX_HEAD + 1]).is_err());
    }
}
