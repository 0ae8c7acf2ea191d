//! The kept-alive connections of a [`FailoverLoad`](super::FailoverLoad):
//! each sends `GET /` about every 100 ms on the same connection, and is
//! broken, for good, by the first request that is not answered well.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    os::fd::AsRawFd,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use super::{Shared, parse_head};

/// Kept-alive connections, one thread each this many.
pub(super) const PER_THREAD: usize = 25;
/// Time between two requests on one kept-alive connection.
const PACE: Duration = Duration::from_millis(100);
/// Connect, read and write timeout of a kept-alive connection, and how
/// long a request on it may wait for its answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How often a kept-alive thread looks at the stop flag while it waits
/// for answers: a poll interval, not a wait for an event.
const POLL: Duration = Duration::from_millis(50);

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: halb-test\r\n\r\n";

/// Opens one connection to `target` (from the calling thread's namespace).
pub(super) fn open(target: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&target, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// One kept-alive connection, as its thread drives it.
pub(super) struct KeptAlive {
    id: usize,
    stream: TcpStream,
    /// The answer received so far.
    buf: Vec<u8>,
    state: State,
    answers: usize,
    last_answer: Option<Instant>,
    longest_gap: Duration,
}

enum State {
    Idle { next: Instant },
    Waiting { sent: Instant },
    Broken(String),
}

/// What became of a kept-alive connection.
pub(super) struct Outcome {
    pub(super) longest_gap: Duration,
    pub(super) error: Option<String>,
}

impl KeptAlive {
    pub(super) fn new(id: usize, stream: TcpStream) -> Self {
        Self {
            id,
            stream,
            buf: Vec::new(),
            state: State::Idle {
                next: Instant::now(),
            },
            answers: 0,
            last_answer: None,
            longest_gap: Duration::ZERO,
        }
    }

    fn send(&mut self, shared: &Shared) {
        match self.stream.write_all(REQUEST) {
            Ok(()) => {
                self.state = State::Waiting {
                    sent: Instant::now(),
                }
            }
            Err(e) => self.break_with(&format!("send: {e}"), shared),
        }
    }

    /// Reads what the connection has (poll said it has something).
    fn receive(&mut self, shared: &Shared) {
        let State::Waiting { sent } = self.state else {
            return;
        };
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => return self.break_with("connection closed", shared),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => return,
            Err(e) => return self.break_with(&format!("receive: {e}"), shared),
        }
        match complete_answer(&self.buf) {
            Ok(false) => {}
            Ok(true) => {
                let now = Instant::now();
                if let Some(last) = self.last_answer {
                    self.longest_gap = self.longest_gap.max(now - last);
                }
                self.last_answer = Some(now);
                self.answers += 1;
                self.buf.clear();
                self.state = State::Idle { next: sent + PACE };
                shared.kept_alive_requests.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.break_with(&e, shared),
        }
    }

    /// Marks the connection broken and closes it; it is not used again.
    fn break_with(&mut self, why: &str, shared: &Shared) {
        let _ = self.stream.shutdown(Shutdown::Both);
        self.state = State::Broken(format!(
            "kept-alive #{}: {why}, after {} answers",
            self.id, self.answers
        ));
        shared.kept_alive_broken.fetch_add(1, Ordering::Relaxed);
    }

    fn outcome(self) -> Outcome {
        Outcome {
            longest_gap: self.longest_gap,
            error: match self.state {
                State::Broken(error) => Some(error),
                _ => None,
            },
        }
    }
}

/// One thread's kept-alive connections: each sends its next request when
/// due, and all wait for their answers at once (poll), so a connection
/// that stalls delays no other one, nor their gaps.
pub(super) fn run(mut conns: Vec<KeptAlive>, shared: &Shared) -> Vec<Outcome> {
    // Spread the requests over the pace rather than send them all at once.
    let start = Instant::now();
    let spread = conns.len().max(1) as u32;
    for (i, conn) in (0u32..).zip(&mut conns) {
        conn.state = State::Idle {
            next: start + PACE * i / spread,
        };
    }
    while !shared.abort.load(Ordering::Relaxed) {
        let stopping = shared.stop.load(Ordering::Relaxed);
        let now = Instant::now();
        let mut wake = now + POLL;
        let mut fds = Vec::new();
        let mut waiting = Vec::new();
        for (i, conn) in conns.iter_mut().enumerate() {
            match conn.state {
                State::Idle { next } if !stopping && next <= now => conn.send(shared),
                State::Idle { next } if !stopping => wake = wake.min(next),
                State::Waiting { sent } if now >= sent + TIMEOUT => {
                    conn.break_with(&format!("no answer within {TIMEOUT:?}"), shared);
                }
                _ => {}
            }
            if let State::Waiting { sent } = conn.state {
                wake = wake.min(sent + TIMEOUT);
                fds.push(libc::pollfd {
                    fd: conn.stream.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                waiting.push(i);
            }
        }
        if stopping && waiting.is_empty() {
            break;
        }
        let timeout = wake
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000);
        // SAFETY: fds is an array of fds.len() pollfd, each naming a socket
        // that conns keeps open for the whole call.
        let ready = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                i32::try_from(timeout).unwrap_or(i32::MAX),
            )
        };
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            assert_eq!(error.kind(), ErrorKind::Interrupted, "poll: {error}");
            continue;
        }
        for (fd, &i) in fds.iter().zip(&waiting) {
            if fd.revents != 0 {
                conns[i].receive(shared);
            }
        }
    }
    conns.into_iter().map(KeptAlive::outcome).collect()
}

/// Whether `buf` holds a whole answer to `GET /`; an error for anything
/// but a 200 with a body, and for bytes past its end.
fn complete_answer(buf: &[u8]) -> Result<bool, String> {
    let Some(head) = parse_head(buf)? else {
        return Ok(false);
    };
    if head.status != 200 {
        return Err(format!("status {}", head.status));
    }
    if head.content_length == 0 {
        return Err("empty body".into());
    }
    let whole = head.len as u64 + head.content_length;
    match (buf.len() as u64).cmp(&whole) {
        std::cmp::Ordering::Less => Ok(false),
        std::cmp::Ordering::Equal => Ok(true),
        std::cmp::Ordering::Greater => Err(format!(
            "{} bytes past the answer",
            buf.len() as u64 - whole
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_whole_only_with_its_body_and_nothing_more() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nweb1\n";
        assert_eq!(complete_answer(&answer[..answer.len() - 1]), Ok(false));
        assert_eq!(complete_answer(answer), Ok(true));
        assert!(complete_answer(&[&answer[..], b"x"].concat()).is_err());
        assert!(complete_answer(b"HTTP/1.1 503 Busy\r\ncontent-length: 5\r\n\r\n").is_err());
        assert!(complete_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_err());
    }
}
