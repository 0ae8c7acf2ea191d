//! TCP check: the backend accepts a connection within the timeout.

use std::{net::SocketAddr, time::Duration};

use tokio::net::TcpStream;

/// Ok when a connection to `target` opens within `timeout`; else why not.
pub async fn check(target: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err(format!("connect: no answer within {timeout:?}")),
    }
}
