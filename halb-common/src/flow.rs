//! Connection tracking and NAT state.

use crate::addr::AddrBe;

/// A 5-tuple as seen on the wire, in one direction.
///
/// Key of [`crate::maps::MAP_FLOWS`] (client -> VIP) and of
/// [`crate::maps::MAP_NAT`] (backend -> balancer or client: the reply).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src_be: AddrBe,
    pub dst_be: AddrBe,
    pub sport_be: u16,
    pub dport_be: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// `Flow::state` and `NatEntry::state`.
pub const FLOW_OPEN: u8 = 0;
/// A FIN or RST was seen: the entry lives only the short closing timeout.
pub const FLOW_CLOSING: u8 = 1;

/// Value of [`crate::maps::MAP_FLOWS`]: where a client's flow goes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub last_seen_ns: u64,
    pub backend_id: u32,
    /// The route lookup's answer towards the backend, cached so that only
    /// one packet of a flow a second pays for bpf_fib_lookup: the egress
    /// interface and the MACs to write.
    pub hop_ifindex: u32,
    pub hop_dst_mac: [u8; 6],
    pub hop_src_mac: [u8; 6],
    /// Full NAT: the source port the balancer uses towards the backend.
    pub nat_port_be: u16,
    pub state: u8,
    /// Low byte of the refresh epoch in which the flow was last reported
    /// to the agent (see [`crate::event::FLOW_EVENT_REFRESH`]).
    pub reported_epoch: u8,
}
const _: () = assert!(core::mem::size_of::<Flow>() == 32);

/// Value of [`crate::maps::MAP_NAT`]: how to turn a backend's reply back
/// into a packet from the VIP to the client.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatEntry {
    pub last_seen_ns: u64,
    pub client_be: AddrBe,
    pub vip_be: AddrBe,
    pub client_port_be: u16,
    pub vip_port_be: u16,
    pub backend_id: u32,
    /// Where the client's packets came from: the interface and the previous
    /// hop's MAC, used for the reply when the kernel has no neighbour entry
    /// for the way back (it never sees the client's traffic to learn one).
    pub client_ifindex: u32,
    pub client_mac: [u8; 6],
    /// The balancer's own MAC on that interface.
    pub balancer_mac: [u8; 6],
    pub state: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(core::mem::size_of::<NatEntry>() == 72);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integer fields and explicit padding only.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Flow {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::NatEntry {}
}
