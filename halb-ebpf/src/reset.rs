//! `when_all_down = "reset"`: a TCP segment to a service with no backend up
//! is answered with a reset (RFC 9293 §3.10.7.1, as for a closed port), so
//! the client fails at once instead of retransmitting SYNs into a drop.
//! The segment is turned around in place: MACs, addresses and ports
//! swapped, payload cut off, flags, sequence numbers and checksums set.

use aya_ebpf::{helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use halb_common::addr::{FAMILY_IPV4, PROTO_TCP};

use crate::{
    csum::Update,
    parse::{L3_OFF, Packet, eth::EthHdr, ipv4::Ipv4Hdr, ipv6::Ipv6Hdr, l4::TcpHdr, ptr_at},
    verdict::{Direction, Drop, Egress, Verdict},
};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
const TCP_HLEN: usize = 20;

#[inline(always)]
pub fn refuse(ctx: &XdpContext, pkt: &Packet) -> Result<Verdict, Verdict> {
    let bad = Verdict::Drop(Drop::BadL4);
    if pkt.proto != PROTO_TCP {
        return Err(Verdict::Drop(Drop::NoBackend));
    }
    let l4_off = pkt.l4_off as usize;
    let tcp = ptr_at::<TcpHdr>(ctx, l4_off).ok_or(bad)?;
    // SAFETY: ptr_at checked that a whole TcpHdr lies before data_end.
    let (flags, seq, ack, doff) = unsafe {
        (
            (*tcp).flags,
            u32::from_be((*tcp).seq_be),
            u32::from_be((*tcp).ack_be),
            ((*tcp).doff_res >> 4) as u32 * 4,
        )
    };
    if flags & TCP_RST != 0 {
        // Never answer a reset with a reset.
        return Err(Verdict::Drop(Drop::NoBackend));
    }
    // RFC 9293: answering a segment with ACK, the reset takes SEG.ACK as
    // its sequence number; otherwise sequence 0 and it acknowledges all
    // the segment occupied (SYN and FIN count one each).
    let payload = (pkt.ip_len as u32).saturating_sub(l4_off as u32 - L3_OFF as u32 + doff);
    let (new_seq, new_ack, new_flags) = if flags & TCP_ACK != 0 {
        (ack, 0, TCP_RST)
    } else {
        let occupied = payload + (flags & TCP_SYN != 0) as u32 + (flags & TCP_FIN != 0) as u32;
        (0, seq.wrapping_add(occupied), TCP_RST | TCP_ACK)
    };

    // Cut the frame to the headers: the reset carries no payload.
    let new_len = l4_off + TCP_HLEN;
    let old_len = ctx.data_end() - ctx.data();
    if old_len > new_len {
        let delta = new_len as i32 - old_len as i32;
        // SAFETY: shrinking the frame we own; pointers are re-derived after.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
            return Err(bad);
        }
    }

    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(bad)?;
    // SAFETY: ptr_at checked that a whole EthHdr lies before data_end.
    let eth = unsafe { &mut *eth };
    core::mem::swap(&mut eth.src, &mut eth.dst);

    let ip_payload = TCP_HLEN as u16;
    if pkt.family == FAMILY_IPV4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, L3_OFF).ok_or(Verdict::Drop(Drop::BadIp))?;
        // SAFETY: ptr_at checked that a whole Ipv4Hdr lies before data_end.
        let ip = unsafe { &mut *ip };
        let tot_len_be = ((l4_off - L3_OFF) as u16 + ip_payload).to_be();
        // Swapping source and destination leaves the header sum unchanged.
        ip.check = Update::new(ip.check)
            .half(ip.tot_len_be, tot_len_be)
            .finish();
        ip.tot_len_be = tot_len_be;
        core::mem::swap(&mut ip.src, &mut ip.dst);
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, L3_OFF).ok_or(Verdict::Drop(Drop::BadIp))?;
        // SAFETY: ptr_at checked that a whole Ipv6Hdr lies before data_end.
        let ip = unsafe { &mut *ip };
        ip.payload_len_be = ip_payload.to_be();
        core::mem::swap(&mut ip.src, &mut ip.dst);
    }

    let tcp = ptr_at::<TcpHdr>(ctx, l4_off).ok_or(bad)?;
    // SAFETY: ptr_at checked that a whole TcpHdr lies before data_end.
    let tcp = unsafe { &mut *tcp };
    core::mem::swap(&mut tcp.sport_be, &mut tcp.dport_be);
    tcp.seq_be = new_seq.to_be();
    tcp.ack_be = new_ack.to_be();
    tcp.doff_res = (TCP_HLEN as u8 / 4) << 4;
    tcp.flags = new_flags;
    tcp.window_be = 0;
    tcp.urg_ptr_be = 0;
    tcp.check = 0;
    tcp.check = transport_checksum(pkt, tcp);
    Ok(Verdict::Forward(Direction::Refused, Egress::Tx))
}

/// The TCP checksum of the 20-byte header `tcp` (no payload) between the
/// packet's addresses swapped (the pseudo-header sum does not depend on
/// their order).
#[inline(always)]
fn transport_checksum(pkt: &Packet, tcp: &TcpHdr) -> u16 {
    // Raw memory words, as csum.rs sums them.
    let mut sum: u32 = 0;
    let words = if pkt.family == FAMILY_IPV4 { 1 } else { 4 };
    let mut i = 0;
    while i < 4 {
        if i < words {
            sum += (pkt.src[i] & 0xffff) + (pkt.src[i] >> 16);
            sum += (pkt.dst[i] & 0xffff) + (pkt.dst[i] >> 16);
        }
        i += 1;
    }
    sum += (PROTO_TCP as u16).to_be() as u32;
    sum += (TCP_HLEN as u16).to_be() as u32;
    // SAFETY: TcpHdr is 20 bytes of plain integers, read as ten u16 words.
    let header: &[u16; 10] = unsafe { &*(tcp as *const TcpHdr as *const [u16; 10]) };
    let mut j = 0;
    while j < 10 {
        sum += header[j] as u32;
        j += 1;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
