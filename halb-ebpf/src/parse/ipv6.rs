//! IPv6 fixed header. Extension headers are not parsed: such packets go to
//! the kernel, except fragments to a VIP, which are dropped.

use aya_ebpf::programs::XdpContext;
use halb_common::addr::{FAMILY_IPV6, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

use super::{L3_OFF, Packet, ptr_at};
use crate::verdict::{Drop, Pass, Verdict};

#[repr(C)]
pub struct Ipv6Hdr {
    pub version_tc_flow: [u8; 4],
    pub payload_len_be: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u32; 4],
    pub dst: [u32; 4],
}

pub const IPV6_HLEN: usize = 40;
/// Next-header value of the fragment extension header.
const NEXTHDR_FRAGMENT: u8 = 44;

#[inline(always)]
pub fn parse(ctx: &XdpContext, pkt: &mut Packet) -> Result<(), Verdict> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, L3_OFF).ok_or(Verdict::Drop(Drop::BadIp))?;
    // SAFETY: ptr_at checked that a whole Ipv6Hdr lies before data_end.
    let ip = unsafe { &*ip };
    if ip.version_tc_flow[0] >> 4 != 6 {
        return Err(Verdict::Drop(Drop::BadIp));
    }
    let payload_len = u16::from_be(ip.payload_len_be) as usize;
    let available = ctx.data_end() - ctx.data() - L3_OFF;
    // A zero payload length means a jumbogram (hop-by-hop option): not ours.
    if payload_len + IPV6_HLEN > available {
        return Err(Verdict::Drop(Drop::BadIp));
    }
    let fragment = ip.next_header == NEXTHDR_FRAGMENT;
    if !fragment && !matches!(ip.next_header, PROTO_TCP | PROTO_UDP | PROTO_ICMPV6) {
        return Err(Verdict::Pass(Pass::Ipv6Ext));
    }
    pkt.family = FAMILY_IPV6;
    pkt.proto = ip.next_header;
    pkt.l4_off = (L3_OFF + IPV6_HLEN) as u16;
    pkt.ip_len = (payload_len + IPV6_HLEN) as u16;
    pkt.src = ip.src;
    pkt.dst = ip.dst;
    pkt.fragment = fragment as u8;
    Ok(())
}
