//! A small HTTP/1.1 server for tests and the lab: every request gets
//! `200 OK` with the server's name as the body, so a client can tell which
//! backend answered. Keep-alive is honoured, as load generators expect.
//! `GET /echo-headers` answers with the name and then the request's
//! headers, one per line, as they arrived (to see what a proxy added);
//! `GET /delay/MS` answers after MS milliseconds.
//!
//! Usage: halb-web NAME ADDR:PORT [ADDR:PORT ...]

use std::net::SocketAddr;

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
        let delay = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|path| path.strip_prefix("/delay/"))
            .and_then(|ms| ms.parse::<u64>().ok());
        if let Some(ms) = delay {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        let echo = head
            .lines()
            .next()
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("/echo-headers"));
        let body: std::borrow::Cow<'_, str> = if echo {
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
