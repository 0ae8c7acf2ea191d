//! Frames for the fixtures, built with etherparse (correct checksums, no
//! hand-written bytes).

use std::net::IpAddr;

use etherparse::{PacketBuilder, TcpHeader};

/// TCP flags of a test segment.
#[derive(Clone, Copy)]
pub enum Tcp {
    Syn,
    Ack,
    Fin,
    Rst,
}

pub const PAYLOAD: &[u8] = b"halb fixture payload";

/// An Ethernet frame carrying TCP from `src` to `dst`.
pub fn tcp(
    macs: ([u8; 6], [u8; 6]),
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    flags: Tcp,
) -> Vec<u8> {
    let mut header = TcpHeader::new(src.1, dst.1, 1000, 64240);
    match flags {
        Tcp::Syn => header.syn = true,
        Tcp::Ack => header.ack = true,
        Tcp::Fin => {
            header.fin = true;
            header.ack = true;
        }
        Tcp::Rst => header.rst = true,
    }
    if header.ack {
        header.acknowledgment_number = 5000;
    }
    tcp_with(macs, src.0, dst.0, header, PAYLOAD)
}

/// An Ethernet frame carrying `header` (ports included) from `src` to `dst`.
pub fn tcp_with(
    macs: ([u8; 6], [u8; 6]),
    src: IpAddr,
    dst: IpAddr,
    header: TcpHeader,
    payload: &[u8],
) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(macs.0, macs.1);
    let mut out = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => builder
            .ipv4(s.octets(), d.octets(), 64)
            .tcp_header(header)
            .write(&mut out, payload),
        (IpAddr::V6(s), IpAddr::V6(d)) => builder
            .ipv6(s.octets(), d.octets(), 64)
            .tcp_header(header)
            .write(&mut out, payload),
        _ => panic!("mixed families"),
    }
    .expect("build TCP frame");
    out
}

/// An Ethernet frame carrying UDP from `src` to `dst`.
pub fn udp(macs: ([u8; 6], [u8; 6]), src: (IpAddr, u16), dst: (IpAddr, u16)) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(macs.0, macs.1);
    let mut out = Vec::new();
    match (src.0, dst.0) {
        (IpAddr::V4(s), IpAddr::V4(d)) => builder
            .ipv4(s.octets(), d.octets(), 64)
            .udp(src.1, dst.1)
            .write(&mut out, PAYLOAD),
        (IpAddr::V6(s), IpAddr::V6(d)) => builder
            .ipv6(s.octets(), d.octets(), 64)
            .udp(src.1, dst.1)
            .write(&mut out, PAYLOAD),
        _ => panic!("mixed families"),
    }
    .expect("build UDP frame");
    out
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Offset of the IP header in the frames built here.
pub const L3: usize = 14;
