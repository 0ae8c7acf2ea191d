//! halb-web's `GET /stream/MS` body, and the downloads of a
//! [`FailoverLoad`](super::FailoverLoad) that check it byte by byte.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::atomic::Ordering,
    time::Duration,
};

use super::{Shared, parse_head};

/// Body bytes halb-web's `GET /stream/MS` sends at a time.
pub const STREAM_CHUNK: usize = 1024;
/// Time between two chunks of `GET /stream/MS`.
pub const STREAM_PACE: Duration = Duration::from_millis(10);

/// Length of the body of `GET /stream/MS`: MS/10 chunks, at least one.
pub fn stream_len(ms: u64) -> u64 {
    (ms / STREAM_PACE.as_millis() as u64).max(1) * STREAM_CHUNK as u64
}

/// Byte `i` of a `/stream` body. 251 is prime, so the pattern does not
/// repeat in step with chunks or segments: one lost, repeated or
/// reordered shows.
pub fn stream_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// How long a download may go without a byte.
const STALL: Duration = Duration::from_secs(10);

/// What became of a download.
pub(super) struct Outcome {
    /// Body bytes received and checked.
    pub(super) bytes: u64,
    pub(super) error: Option<String>,
}

/// Runs download `id`: `GET /stream/{ms}` once, to its end.
pub(super) fn download(id: usize, target: SocketAddr, ms: u64, shared: &Shared) -> Outcome {
    let mut bytes = 0;
    let result = fetch_stream(target, ms, shared, &mut bytes);
    shared.downloads_finished.fetch_add(1, Ordering::Relaxed);
    Outcome {
        bytes,
        error: result.err().map(|e| format!("download #{id}: {e}")),
    }
}

/// `GET /stream/{ms}`, checking the body byte by byte; counts the good
/// bytes in `bytes`.
fn fetch_stream(
    target: SocketAddr,
    ms: u64,
    shared: &Shared,
    bytes: &mut u64,
) -> Result<(), String> {
    let expected = stream_len(ms);
    let mut stream =
        TcpStream::connect_timeout(&target, STALL).map_err(|e| format!("connect: {e}"))?;
    shared.track(&stream)?;
    stream
        .set_read_timeout(Some(STALL))
        .and_then(|()| stream.set_write_timeout(Some(STALL)))
        .map_err(|e| format!("timeouts: {e}"))?;
    let request =
        format!("GET /stream/{ms} HTTP/1.1\r\nHost: halb-test\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut chunk = vec![0u8; 16 * 1024];
    let mut buf = Vec::new();
    let head = loop {
        if let Some(head) = parse_head(&buf)? {
            break head;
        }
        let n =
            receive(&mut stream, &mut chunk, shared).map_err(|e| format!("{e} before the head"))?;
        buf.extend_from_slice(&chunk[..n]);
    };
    if head.status != 200 {
        return Err(format!("status {}", head.status));
    }
    if head.content_length != expected {
        return Err(format!(
            "content-length {}, expected {expected}",
            head.content_length
        ));
    }
    check_stream(&buf[head.len..], bytes, expected)?;
    while *bytes < expected {
        let n = receive(&mut stream, &mut chunk, shared)
            .map_err(|e| format!("{e} after {bytes} of {expected} body bytes"))?;
        check_stream(&chunk[..n], bytes, expected)?;
    }
    Ok(())
}

/// One read of a download; an error for the end of the stream, a stall
/// and an abort.
fn receive(stream: &mut TcpStream, chunk: &mut [u8], shared: &Shared) -> Result<usize, String> {
    loop {
        if shared.abort.load(Ordering::Relaxed) {
            return Err("stopped".into());
        }
        return match stream.read(chunk) {
            Ok(0) => Err("connection closed".into()),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(format!("nothing for {STALL:?}"))
            }
            Err(e) => Err(format!("receive: {e}")),
        };
    }
}

/// Checks `data`, the body bytes from offset `bytes` on, against the
/// `/stream` pattern; advances `bytes` past the good ones.
fn check_stream(data: &[u8], bytes: &mut u64, expected: u64) -> Result<(), String> {
    for &byte in data {
        if *bytes == expected {
            return Err(format!("more than the {expected} bytes announced"));
        }
        let want = stream_byte(*bytes);
        if byte != want {
            return Err(format!("body byte {bytes} is {byte}, expected {want}"));
        }
        *bytes += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_body_is_checked_byte_by_byte() {
        assert_eq!(stream_len(1500), 150 * 1024);
        assert_eq!(stream_len(5), 1024);
        let body: Vec<u8> = (0..stream_len(20)).map(stream_byte).collect();
        let mut bytes = 0;
        check_stream(&body[..1000], &mut bytes, 2048).expect("first part");
        check_stream(&body[1000..], &mut bytes, 2048).expect("the rest");
        assert_eq!(bytes, 2048);
        assert!(
            check_stream(&[0], &mut bytes, 2048).is_err(),
            "past the end"
        );

        let mut skipped = body.clone();
        skipped.remove(300);
        let mut bytes = 0;
        let error = check_stream(&skipped, &mut bytes, 2048).expect_err("a lost byte");
        assert_eq!(bytes, 300, "{error}");
    }
}
