//! A small HTTP/1.1 server for tests and the lab: every request gets
//! `200 OK` with the server's name as the body, so a client can tell which
//! backend answered. Keep-alive is honoured, as load generators expect.
//! `GET /echo-headers` answers with the name and then the request's
//! headers, one per line, as they arrived (to see what a proxy added);
//! `GET /delay/MS` answers after MS milliseconds; `GET /stream/MS` sends
//! a body of MS/10 chunks of 1024 bytes (at least one), one every 10 ms,
//! so it takes MS milliseconds, with byte i of the body `(i % 251) as u8`
//! so a client can check every byte (see `halb_tests::failover_load`).
//!
//! Usage: halb-web NAME ADDR:PORT [ADDR:PORT ...]

use std::{net::SocketAddr, time::Duration};

use halb_tests::failover_load::{STREAM_CHUNK, STREAM_PACE, stream_byte, stream_len};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Requests with a larger head are answered 431 and the connection closed.
const MAX_HEAD: usize = 16 * 1024;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: halb-web NAME ADDR:PORT [ADDR:PORT ...]";
    let name = args.next().unwrap_or_else(|| exit(usage));
    let addrs: Vec<SocketAddr> = args
        .map(|a| a.parse().unwrap_or_else(|e| exit(&format!("{a}: {e}"))))
        .collect();
    if addrs.is_empty() {
        exit(usage);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(serve(name, addrs));
}

fn exit(message: &str) -> ! {
    eprintln!("halb-web: {message}");
    std::process::exit(2)
}

async fn serve(name: String, addrs: Vec<SocketAddr>) {
    let body: &'static str = Box::leak(format!("{name}\n").into_boxed_str());
    let mut tasks = Vec::new();
    for addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| exit(&format!("bind {addr}: {e}")));
        eprintln!("halb-web {name}: listening on {addr}");
        tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(connection(stream, body));
                    }
                    Err(e) => eprintln!("halb-web: accept: {e}"),
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

async fn connection(mut stream: TcpStream, body: &str) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    loop {
        let head_end = loop {
            if let Some(end) = find_head_end(&buf) {
                break end;
            }
            if buf.len() > MAX_HEAD {
                let _ = stream
                    .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                return;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let body_len = header(&head, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        // HTTP/1.0 closes unless asked to keep alive; HTTP/1.1 keeps alive unless asked to close.
        let http10 = head.lines().next().is_some_and(|l| l.ends_with("http/1.0"));
        let connection = header(&head, "connection").unwrap_or_default();
        let close = connection == "close" || (http10 && connection != "keep-alive");
        // Discard the request body.
        while buf.len() < head_end + body_len {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let path = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_default();
        let ms = |prefix: &str| path.strip_prefix(prefix)?.parse::<u64>().ok();
        if let Some(ms) = ms("/stream/") {
            buf.drain(..head_end + body_len);
            if send_stream(&mut stream, ms, close).await.is_err() || close {
                return;
            }
            continue;
        }
        if let Some(ms) = ms("/delay/") {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let body: std::borrow::Cow<'_, str> = if path == "/echo-headers" {
            let raw = String::from_utf8_lossy(&buf[..head_end]);
            let headers: String = raw
                .lines()
                .skip(1)
                .filter(|l| !l.is_empty())
                .map(|l| format!("{l}\n"))
                .collect();
            format!("{body}{headers}").into()
        } else {
            body.into()
        };
        buf.drain(..head_end + body_len);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: {}\r\n\r\n{body}",
            body.len(),
            if close { "close" } else { "keep-alive" }
        );
        if stream.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// Answers `GET /stream/MS`: the head at once, then the body one chunk
/// per [`STREAM_PACE`], the last one MS milliseconds after the head.
async fn send_stream(stream: &mut TcpStream, ms: u64, close: bool) -> std::io::Result<()> {
    let len = stream_len(ms);
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\nconnection: {}\r\n\r\n",
        if close { "close" } else { "keep-alive" }
    );
    stream.write_all(head.as_bytes()).await?;
    let first = tokio::time::Instant::now() + STREAM_PACE;
    let mut pace = tokio::time::interval_at(first, STREAM_PACE);
    let mut chunk = vec![0u8; STREAM_CHUNK];
    for start in (0..len).step_by(STREAM_CHUNK) {
        pace.tick().await;
        for (i, byte) in (start..).zip(chunk.iter_mut()) {
            *byte = stream_byte(i);
        }
        stream.write_all(&chunk).await?;
    }
    Ok(())
}

/// Offset just past the blank line that ends the request head.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Value of header `name` (lowercase) in a lowercased head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_owned())
    })
}
