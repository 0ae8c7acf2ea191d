//! `garp` inputs: a family byte (even: IPv4, odd: IPv6), the address, then
//! the interface MAC; a short input is padded with zeros.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub fn from_bytes(data: &[u8]) -> (IpAddr, [u8; 6]) {
    let mut padded = [0u8; 1 + 16 + 6];
    let n = data.len().min(padded.len());
    padded[..n].copy_from_slice(&data[..n]);
    let (addr, rest) = if padded[0] % 2 == 0 {
        let octets: [u8; 4] = padded[1..5].try_into().expect("4 bytes");
        (IpAddr::V4(Ipv4Addr::from(octets)), &padded[5..])
    } else {
        let octets: [u8; 16] = padded[1..17].try_into().expect("16 bytes");
        (IpAddr::V6(Ipv6Addr::from(octets)), &padded[17..])
    };
    let mac = rest[..6].try_into().expect("6 bytes");
    (addr, mac)
}

/// The input bytes for `addr` and `mac`.
pub fn input(addr: IpAddr, mac: [u8; 6]) -> Vec<u8> {
    let mut out = Vec::new();
    match addr {
        IpAddr::V4(v4) => {
            out.push(0);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(1);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&mac);
    out
}
