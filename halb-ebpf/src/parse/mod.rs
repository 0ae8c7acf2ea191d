//! Bounds-checked packet parsing: Ethernet, then IPv4 or IPv6, then the
//! TCP/UDP ports or the ICMP type, into one [`Packet`].

pub mod eth;
pub mod ipv4;
pub mod ipv6;
pub mod l4;

use aya_ebpf::programs::XdpContext;
use halb_common::addr::{AddrBe, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

use crate::{
    maps::HALB_SCR_PKT,
    verdict::{Drop, Pass, Verdict},
};

/// Offset of the IP header: halb handles untagged Ethernet frames.
pub const L3_OFF: usize = eth::ETH_HLEN;

/// Deepest header offset the program reads: an ICMP error's quoted ports
/// (14 + 60 + 8 + 60 + 4 = 146 at most).
const MAX_OFFSET: usize = 0x1ff;

/// Returns a pointer to a `T` at `offset` bytes into the packet, or `None`
/// when the packet is too short to hold it. Every packet access goes through here.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    // verifier: a variable offset must be known small for a bounds check on
    // it to count (pointer offset + size within 0xffff); every header halb
    // reads starts well inside the first MAX_OFFSET bytes.
    if offset > MAX_OFFSET {
        return None;
    }
    let start = ctx.data();
    let end = ctx.data_end();
    // verifier: compare the end of the very pointer we hand out with data_end.
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// What the datapath needs to know of an IP packet.
///
/// Lives in a per-CPU scratch map, not on the stack: the verifier allows a
/// call chain 512 bytes of stack in all.
#[repr(C)]
pub struct Packet {
    pub src: AddrBe,
    pub dst: AddrBe,
    /// Offset of the transport header.
    pub l4_off: u16,
    /// Length of the IP packet, header included (for route lookups).
    pub ip_len: u16,
    /// TCP/UDP ports; zero for other protocols.
    pub sport_be: u16,
    pub dport_be: u16,
    pub family: u8,
    /// IP protocol of the transport header (after IPv6's fixed header).
    pub proto: u8,
    /// TCP flags byte; zero for other protocols.
    pub tcp_flags: u8,
    /// 1 for an IPv4 fragment, or IPv6 with a fragment header.
    pub fragment: u8,
}

/// Parses the frame into this CPU's scratch [`Packet`]; anything that is
/// not IP is passed, malformed IP is dropped. `l3` is the frame's
/// EtherType, which the caller has already read (see [`eth::ethertype`]).
#[inline(always)]
pub fn packet(ctx: &XdpContext, l3: eth::L3) -> Result<&'static mut Packet, Verdict> {
    let pkt = HALB_SCR_PKT
        .get_ptr_mut(0)
        .ok_or(Verdict::Drop(Drop::MapError))?;
    // SAFETY: this CPU's slot of a per-CPU array; XDP does not nest on a
    // CPU, so nothing else uses it until this packet is done.
    let pkt = unsafe { &mut *pkt };
    pkt.sport_be = 0;
    pkt.dport_be = 0;
    pkt.tcp_flags = 0;
    match l3 {
        eth::L3::Ipv4 => ipv4::parse(ctx, pkt)?,
        eth::L3::Ipv6 => ipv6::parse(ctx, pkt)?,
        _ => return Err(Verdict::Pass(Pass::NotIp)),
    }
    if pkt.fragment != 0 {
        return Ok(pkt);
    }
    let l4_off = pkt.l4_off as usize;
    match pkt.proto {
        PROTO_TCP => {
            let tcp = l4::tcp(ctx, l4_off, pkt.ip_len_after_l4())?;
            pkt.sport_be = tcp.sport_be;
            pkt.dport_be = tcp.dport_be;
            pkt.tcp_flags = tcp.flags;
        }
        PROTO_UDP => {
            let udp = l4::udp(ctx, l4_off, pkt.ip_len_after_l4())?;
            pkt.sport_be = udp.sport_be;
            pkt.dport_be = udp.dport_be;
        }
        PROTO_ICMP | PROTO_ICMPV6 if ptr_at::<l4::IcmpHdr>(ctx, l4_off).is_none() => {
            return Err(Verdict::Drop(Drop::BadL4));
        }
        _ => {}
    }
    Ok(pkt)
}

impl Packet {
    /// Bytes of the IP packet from the transport header on.
    #[inline(always)]
    pub fn ip_len_after_l4(&self) -> usize {
        (self.ip_len as usize).saturating_sub(self.l4_off as usize - L3_OFF)
    }
}
