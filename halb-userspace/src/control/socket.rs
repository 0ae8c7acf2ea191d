//! The agent's end of the control socket.

use std::{
    io,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::mpsc,
    task::JoinHandle,
};

use super::protocol::{Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another halb answers on {}: stop it first, or give this one another [admin] control_socket", path.display())]
    InUse { path: PathBuf },
    #[error("cannot create the control socket {}: {source}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A bound control socket; the file is removed on drop.
///
/// Connections are accepted and read by a task of their own, so waiting
/// for [`ControlSocket::next`] in a `select!` loses nothing when another
/// branch wins (reading in the select would drop a half-read client).
pub struct ControlSocket {
    requests: mpsc::Receiver<Pending>,
    acceptor: JoinHandle<()>,
    path: PathBuf,
}

/// How long a client may take to send its request line.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A request received, and where its answer goes.
pub struct Pending {
    pub request: Result<Request, String>,
    stream: UnixStream,
}

impl ControlSocket {
    /// Binds `path` (root-only: folder 0700, socket 0600), replacing a
    /// stale file that nothing answers on.
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        let bind_error = |source| ControlError::Bind {
            path: path.to_owned(),
            source,
        };
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse {
                    path: path.to_owned(),
                });
            }
            std::fs::remove_file(path).map_err(bind_error)?;
        }
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(bind_error)?;
        }
        let listener = UnixListener::bind(path).map_err(bind_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(bind_error)?;
        let (tx, requests) = mpsc::channel(16);
        Ok(Self {
            requests,
            acceptor: tokio::spawn(accept(listener, tx)),
            path: path.to_owned(),
        })
    }

    /// Waits for the next request (cancel-safe).
    pub async fn next(&mut self) -> Option<Pending> {
        self.requests.recv().await
    }
}

/// Accepts clients and reads one request line from each.
async fn accept(listener: UnixListener, requests: mpsc::Sender<Pending>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let request = serde_json::from_str(&line).map_err(|e| format!("bad request: {e}"));
            let _ = requests
                .send(Pending {
                    request,
                    stream: reader.into_inner(),
                })
                .await;
        });
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.acceptor.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How long a client may take to read its answer.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Pending {
    /// Sends the answer from a task of its own, so a client that does not
    /// read holds up nothing; one that went away is not an error.
    pub fn answer(mut self, response: &Response) {
        let mut line = serde_json::to_string(response).unwrap_or_else(|e| {
            format!("{{\"result\":\"error\",\"message\":\"cannot encode the answer: {e}\"}}")
        });
        line.push('\n');
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(ANSWER_TIMEOUT, self.stream.write_all(line.as_bytes())).await;
        });
    }
}
