//! Flow events: what the XDP program reports through the ring buffer
//! [`crate::maps::MAP_FLOW_EVENTS`] so that the agent can sync its
//! connection state to peer nodes without polling the flow map.

use crate::addr::AddrBe;

/// `FlowEvent::kind`: a flow was scheduled to a backend.
pub const FLOW_EVENT_NEW: u8 = 1;
/// A tracked flow is still in use (sent once per refresh epoch), so the
/// peers' copies do not time out while it lives here.
pub const FLOW_EVENT_REFRESH: u8 = 2;
/// A FIN or RST was seen: the flow now lives its closing timeout.
pub const FLOW_EVENT_CLOSING: u8 = 3;

/// `FlowEvent::mode`: how the flow is forwarded, so a peer writes the same
/// entries.
pub const FLOW_MODE_FULL_NAT: u8 = 0;
pub const FLOW_MODE_KEEP_CLIENT: u8 = 1;
pub const FLOW_MODE_DSR: u8 = 2;

/// One record of the flow-event ring buffer: everything a peer needs to
/// forward the flow's later packets exactly as this node does, in terms
/// that do not depend on this node's ids (backends by address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// The client's side: client -> VIP (the key of the flow map).
    pub key: crate::flow::FlowKey,
    pub backend_be: AddrBe,
    /// Full NAT: the source address backends see (zero otherwise).
    pub snat_be: AddrBe,
    /// CLOCK_MONOTONIC (coarse) nanoseconds when it happened.
    pub time_ns: u64,
    /// This node's id of the backend (for its own bookkeeping only).
    pub backend_id: u32,
    pub backend_port_be: u16,
    /// Full NAT: the source port towards the backend.
    pub nat_port_be: u16,
    /// The previous hop towards the client (source MAC of its frames).
    pub client_mac: [u8; 6],
    pub kind: u8,
    pub mode: u8,
    pub backend_family: u8,
    /// `FLOW_OPEN` or `FLOW_CLOSING`.
    pub state: u8,
    pub _pad: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 104);

/// Refresh epochs are `now_ns >> shift` (the low byte is kept in the flow);
/// the agent picks the shift from the timeouts, these are its bounds.
pub const MIN_EPOCH_SHIFT: u8 = 24;
pub const MAX_EPOCH_SHIFT: u8 = 36;

#[cfg(feature = "user")]
// SAFETY: repr(C), integer fields and explicit padding only.
unsafe impl aya::Pod for FlowEvent {}
