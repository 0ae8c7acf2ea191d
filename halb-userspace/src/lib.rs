//! The halb agent as a library: the `halb` binary is a thin CLI over it, and
//! the integration tests use the same code to read what the agent pinned.

pub mod agent;
pub mod backends;
pub mod bgp;
pub mod config;
pub mod connsync;
pub mod control;
pub mod dataplane;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod proxy;
pub mod vrrp;
