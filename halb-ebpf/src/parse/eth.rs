//! Ethernet header.

use aya_ebpf::programs::XdpContext;

use super::ptr_at;

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
