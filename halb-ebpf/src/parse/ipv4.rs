//! IPv4 header.

use aya_ebpf::programs::XdpContext;
use halb_common::addr::FAMILY_IPV4;

use super::{L3_OFF, Packet, ptr_at};
use crate::verdict::{Drop, Verdict};

#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len_be: u16,
    pub id_be: u16,
    pub frag_off_be: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub src: u32,
    pub dst: u32,
}

/// More-fragments flag and fragment offset bits of `frag_off`.
const MF_AND_OFFSET: u16 = 0x3fff;

/// Parses and validates the IPv4 header (version, IHL, total length), as
/// the kernel's ip_rcv would; a packet it would drop is dropped here.
#[inline(always)]
pub fn parse(ctx: &XdpContext, pkt: &mut Packet) -> Result<(), Verdict> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, L3_OFF).ok_or(Verdict::Drop(Drop::BadIp))?;
    // SAFETY: ptr_at checked that a whole Ipv4Hdr lies before data_end.
    let ip = unsafe { &*ip };
    let ihl = (ip.version_ihl & 0x0f) as usize * 4;
    if ip.version_ihl >> 4 != 4 || ihl < 20 {
        return Err(Verdict::Drop(Drop::BadIp));
    }
    let tot_len = u16::from_be(ip.tot_len_be);
    let available = ctx.data_end() - ctx.data() - L3_OFF;
    if (tot_len as usize) < ihl || tot_len as usize > available {
        return Err(Verdict::Drop(Drop::BadIp));
    }
    pkt.family = FAMILY_IPV4;
    pkt.proto = ip.proto;
    pkt.l4_off = (L3_OFF + ihl) as u16;
    pkt.ip_len = tot_len;
    pkt.src = [ip.src, 0, 0, 0];
    pkt.dst = [ip.dst, 0, 0, 0];
    pkt.fragment = (u16::from_be(ip.frag_off_be) & MF_AND_OFFSET != 0) as u8;
    Ok(())
}
