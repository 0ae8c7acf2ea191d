//! HTTP check: a GET answered, within the timeout, with the expected status
//! and, if asked, a body containing the expected text.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Responses are read up to this size; a check needs no more.
const MAX_RESPONSE: usize = 64 * 1024;

pub struct Expect<'a> {
    pub path: &'a str,
    pub status: u16,
    pub body: Option<&'a str>,
}

pub async fn check(
    target: SocketAddr,
    timeout: Duration,
    expect: &Expect<'_>,
) -> Result<(), String> {
    tokio::time::timeout(timeout, exchange(target, expect))
        .await
        .unwrap_or_else(|_| Err(format!("no complete answer within {timeout:?}")))
}

async fn exchange(target: SocketAddr, expect: &Expect<'_>) -> Result<(), String> {
    let mut stream = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: halb-check\r\nConnection: close\r\n\r\n",
        expect.path
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("receive: {e}"))?;
        if n == 0 || response.len() >= MAX_RESPONSE {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP response: {:?}",
                text.lines().next().unwrap_or("")
            )
        })?;
    if status != expect.status {
        return Err(format!("status {status}, expected {}", expect.status));
    }
    if let Some(needle) = expect.body {
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if !body.contains(needle) {
            return Err(format!("body does not contain {needle:?}"));
        }
    }
    Ok(())
}
