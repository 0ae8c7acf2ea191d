//! `vrrp_advert` inputs: one byte of flags, then the VRRP message as the
//! socket hands it to the agent (the IP payload).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use halb::vrrp::packet::{ChecksumMode, IPPROTO_VRRP, Version};

/// Flag bits of the first byte.
pub const V3: u8 = 1 << 0;
pub const IPV6: u8 = 1 << 1;
pub const AS_V2: u8 = 1 << 2;
/// Rewrite the checksum before decoding, so that mutations get past it.
pub const FIX_CHECKSUM: u8 = 1 << 3;
/// Received with TTL / hop limit 255 (else 64, which must be refused).
pub const TTL_255: u8 = 1 << 4;

pub const SRC4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3));
pub const DST4: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));
pub const SRC6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 3));
pub const DST6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12));

/// One decoded input.
#[derive(Debug)]
pub struct Case {
    pub version: Version,
    pub mode: ChecksumMode,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub fix_checksum: bool,
    pub message: Vec<u8>,
}

impl Case {
    pub fn from_bytes(data: &[u8]) -> Option<Case> {
        let (&flags, message) = data.split_first()?;
        let v6 = flags & IPV6 != 0;
        Some(Case {
            version: if flags & V3 != 0 {
                Version::V3
            } else {
                Version::V2
            },
            mode: if flags & AS_V2 != 0 {
                ChecksumMode::AsV2
            } else {
                ChecksumMode::Rfc
            },
            src: if v6 { SRC6 } else { SRC4 },
            dst: if v6 { DST6 } else { DST4 },
            ttl: if flags & TTL_255 != 0 { 255 } else { 64 },
            fix_checksum: flags & FIX_CHECKSUM != 0,
            message: message.to_vec(),
        })
    }
}

/// The input bytes for `flags` and `message`.
pub fn input(flags: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(message);
    out
}

/// Writes into `message` the checksum that makes it valid for `case`,
/// computed here from the RFCs rather than by the product (RFC 3768 §5.3.8:
/// over the message; RFC 9568 §5.2.8: with the IPv4 or IPv6 pseudo-header,
/// except in the "as v2" mode over IPv4). It covers the bytes the header
/// says the message has. False when the message is too short to have one.
pub fn fix_checksum(message: &mut [u8], case: &Case) -> bool {
    if message.len() < 8 {
        return false;
    }
    let addr_len = if case.src.is_ipv6() { 16 } else { 4 };
    let auth_len = if case.version == Version::V2 { 8 } else { 0 };
    let len = 8 + usize::from(message[3]) * addr_len + auth_len;
    if message.len() < len {
        return false;
    }
    message[6] = 0;
    message[7] = 0;
    let mut words = Vec::new();
    let pseudo =
        case.version == Version::V3 && !(case.mode == ChecksumMode::AsV2 && case.src.is_ipv4());
    if pseudo {
        match (case.src, case.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                words.extend_from_slice(&s.octets());
                words.extend_from_slice(&d.octets());
                words.extend_from_slice(&[0, IPPROTO_VRRP]);
                words.extend_from_slice(&(len as u16).to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                words.extend_from_slice(&s.octets());
                words.extend_from_slice(&d.octets());
                words.extend_from_slice(&(len as u32).to_be_bytes());
                words.extend_from_slice(&[0, 0, 0, IPPROTO_VRRP]);
            }
            _ => unreachable!("one family per case"),
        }
    }
    words.extend_from_slice(&message[..len]);
    if words.len() % 2 == 1 {
        words.push(0);
    }
    let mut sum: u64 = words
        .chunks_exact(2)
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    message[6..8].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    true
}
