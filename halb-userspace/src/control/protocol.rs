//! What goes over the control socket.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::status::Status;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// No new flows to the backend; its flows finish where they are.
    Drain {
        service: String,
        backend: SocketAddr,
    },
    /// Undo a drain.
    Enable {
        service: String,
        backend: SocketAddr,
    },
    /// Re-read the config file and apply what changed.
    Reload,
    /// Shut down as on SIGTERM.
    Stop,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(Status),
    Done { message: String },
    Error { message: String },
}
