//! The node's own network settings the datapath relies on.

pub mod addr;
pub mod forwarding;
pub mod garp;
pub mod iface;
pub mod neighbours;
