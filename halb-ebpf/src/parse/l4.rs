//! TCP, UDP and ICMP headers.

use aya_ebpf::programs::XdpContext;

use super::ptr_at;
use crate::verdict::{Drop, Verdict};

#[repr(C)]
pub struct TcpHdr {
    pub sport_be: u16,
    pub dport_be: u16,
    pub seq_be: u32,
    pub ack_be: u32,
    /// Data offset in the upper four bits.
    pub doff_res: u8,
    pub flags: u8,
    pub window_be: u16,
    pub check: u16,
    pub urg_ptr_be: u16,
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

#[repr(C)]
pub struct UdpHdr {
    pub sport_be: u16,
    pub dport_be: u16,
    pub len_be: u16,
    pub check: u16,
}

/// ICMP and ICMPv6 share this layout: type, code, checksum, four more bytes.
#[repr(C)]
pub struct IcmpHdr {
    pub kind: u8,
    pub code: u8,
    pub check: u16,
    pub rest: u32,
}

pub struct Ports {
    pub sport_be: u16,
    pub dport_be: u16,
    pub flags: u8,
}

/// A TCP header whose data offset fits the segment; else dropped.
#[inline(always)]
pub fn tcp(ctx: &XdpContext, off: usize, segment_len: usize) -> Result<Ports, Verdict> {
    let tcp = ptr_at::<TcpHdr>(ctx, off).ok_or(Verdict::Drop(Drop::BadL4))?;
    // SAFETY: ptr_at checked that a whole TcpHdr lies before data_end.
    let tcp = unsafe { &*tcp };
    let doff = (tcp.doff_res >> 4) as usize * 4;
    if doff < core::mem::size_of::<TcpHdr>() || doff > segment_len {
        return Err(Verdict::Drop(Drop::BadL4));
    }
    Ok(Ports {
        sport_be: tcp.sport_be,
        dport_be: tcp.dport_be,
        flags: tcp.flags,
    })
}

/// A UDP header whose length field fits the datagram; else dropped.
#[inline(always)]
pub fn udp(ctx: &XdpContext, off: usize, datagram_len: usize) -> Result<Ports, Verdict> {
    let udp = ptr_at::<UdpHdr>(ctx, off).ok_or(Verdict::Drop(Drop::BadL4))?;
    // SAFETY: ptr_at checked that a whole UdpHdr lies before data_end.
    let udp = unsafe { &*udp };
    let len = u16::from_be(udp.len_be) as usize;
    if len < core::mem::size_of::<UdpHdr>() || len > datagram_len {
        return Err(Verdict::Drop(Drop::BadL4));
    }
    Ok(Ports {
        sport_be: udp.sport_be,
        dport_be: udp.dport_be,
        flags: 0,
    })
}
