//! Test harness for halb: network namespaces, topologies built from veth
//! pairs and bridges, processes that die with the test, and the agent run
//! as a real process. The integration tests and `cargo xtask run`'s lab
//! both build on it.
//!
//! Helpers panic with context instead of returning errors: a failing test
//! then points at the step that failed, and unwinding still runs every Drop.

pub mod agent;
pub mod bird;
pub mod ecmp;
pub mod failover_load;
pub mod ha;
pub mod keepalived;
pub mod l7;
pub mod netns;
pub mod process;
pub mod scenario;
pub mod synced;
pub mod topo;
pub mod traffic;
pub mod wait;
pub mod xdp_pass;
