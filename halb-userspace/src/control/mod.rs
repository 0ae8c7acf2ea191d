//! The control socket: a unix socket, root only, carrying one JSON request
//! and one JSON response per line. `halb status`, `halb backend drain`,
//! `halb reload` and `halb stop` are its clients.

pub mod client;
pub mod protocol;
pub mod socket;
pub mod status;
