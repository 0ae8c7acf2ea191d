//! Rewrites a packet's addresses and ports in place, with incremental
//! checksum updates: the IPv4 header checksum, and the TCP or UDP checksum,
//! which covers the pseudo-header's addresses too.

use aya_ebpf::programs::XdpContext;
use halb_common::addr::{AddrBe, FAMILY_IPV4, PROTO_TCP};

use crate::{
    csum::Update,
    parse::{L3_OFF, Packet, ipv4::Ipv4Hdr, ipv6::Ipv6Hdr, l4::TcpHdr, l4::UdpHdr, ptr_at},
    verdict::{Drop, Verdict},
};

/// New source and destination of a packet.
pub struct Endpoints {
    pub src: AddrBe,
    pub sport_be: u16,
    pub dst: AddrBe,
    pub dport_be: u16,
}

/// Rewrites `pkt` (TCP or UDP) to `to`.
#[inline(always)]
pub fn l3_l4(ctx: &XdpContext, pkt: &Packet, to: &Endpoints) -> Result<(), Verdict> {
    let bad = Verdict::Drop(Drop::BadL4);
    if pkt.proto == PROTO_TCP {
        let tcp = ptr_at::<TcpHdr>(ctx, pkt.l4_off as usize).ok_or(bad)?;
        // SAFETY: ptr_at checked that a whole TcpHdr lies before data_end.
        let tcp = unsafe { &mut *tcp };
        tcp.check = transport_check(tcp.check, pkt, to);
        tcp.sport_be = to.sport_be;
        tcp.dport_be = to.dport_be;
    } else {
        let udp = ptr_at::<UdpHdr>(ctx, pkt.l4_off as usize).ok_or(bad)?;
        // SAFETY: ptr_at checked that a whole UdpHdr lies before data_end.
        let udp = unsafe { &mut *udp };
        // RFC 768: an IPv4 UDP checksum of zero means "none"; keep it so.
        if udp.check != 0 || pkt.family != FAMILY_IPV4 {
            let check = transport_check(udp.check, pkt, to);
            // RFC 768: a computed zero is sent as all ones.
            udp.check = if check == 0 { 0xffff } else { check };
        }
        udp.sport_be = to.sport_be;
        udp.dport_be = to.dport_be;
    }
    addresses(ctx, pkt, &to.src, &to.dst)
}

#[inline(always)]
fn transport_check(check: u16, pkt: &Packet, to: &Endpoints) -> u16 {
    Update::new(check)
        .addr(&pkt.src, &to.src)
        .addr(&pkt.dst, &to.dst)
        .half(pkt.sport_be, to.sport_be)
        .half(pkt.dport_be, to.dport_be)
        .finish()
}

/// Rewrites the IP header's addresses (and the IPv4 header checksum).
#[inline(always)]
pub fn addresses(
    ctx: &XdpContext,
    pkt: &Packet,
    src: &AddrBe,
    dst: &AddrBe,
) -> Result<(), Verdict> {
    let bad = Verdict::Drop(Drop::BadIp);
    if pkt.family == FAMILY_IPV4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, L3_OFF).ok_or(bad)?;
        // SAFETY: ptr_at checked that a whole Ipv4Hdr lies before data_end.
        let ip = unsafe { &mut *ip };
        ip.check = Update::new(ip.check)
            .word(ip.src, src[0])
            .word(ip.dst, dst[0])
            .finish();
        ip.src = src[0];
        ip.dst = dst[0];
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, L3_OFF).ok_or(bad)?;
        // SAFETY: ptr_at checked that a whole Ipv6Hdr lies before data_end.
        let ip = unsafe { &mut *ip };
        ip.src = *src;
        ip.dst = *dst;
    }
    Ok(())
}
