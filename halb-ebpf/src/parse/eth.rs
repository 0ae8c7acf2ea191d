//! Ethernet header.

use aya_ebpf::programs::XdpContext;

use super::ptr_at;
use crate::maps::HALB_IFACES;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_ARP: u16 = 0x0806;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ethertype_be: u16,
}

/// Layer 3 of a frame, as far as counting needs it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    Ipv4,
    Ipv6,
    Arp,
    Other,
    /// Shorter than an Ethernet header.
    Truncated,
}

#[inline(always)]
pub fn ethertype(ctx: &XdpContext) -> L3 {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return L3::Truncated;
    };
    // SAFETY: ptr_at checked that a whole EthHdr lies before data_end.
    match u16::from_be(unsafe { (*eth).ethertype_be }) {
        ETH_P_IPV4 => L3::Ipv4,
        ETH_P_IPV6 => L3::Ipv6,
        ETH_P_ARP => L3::Arp,
        _ => L3::Other,
    }
}

/// Whether the frame is this interface's to handle: addressed to its own
/// MAC or to a group (broadcast, multicast). A switch that has not learnt
/// a destination MAC floods the frame to every port, which happens while
/// a VIP moves between nodes; forwarding such a frame here as well would
/// answer the client twice. An interface the agent has not described (as
/// in BPF_PROG_RUN) takes every frame.
#[inline(always)]
pub fn addressed_here(ctx: &XdpContext) -> bool {
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return true;
    };
    // SAFETY: ptr_at checked that a whole EthHdr lies before data_end.
    let dst = unsafe { (*eth).dst };
    // IEEE 802: the I/G bit, the lowest of the first octet, marks a group.
    if dst[0] & 1 != 0 {
        return true;
    }
    let ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: a read-only lookup; the value is copied at once.
    match unsafe { HALB_IFACES.get(ifindex) } {
        Some(iface) => iface.mac == dst,
        None => true,
    }
}
