//! VRRP advertisements: VRRPv3 (RFC 9568 §5) and VRRPv2 (RFC 3768 §5),
//! encoded and decoded with their checksums. Pure: no sockets.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// RFC 9568 §5.1.1.3 / §5.1.2.3: received adverts must carry TTL / hop limit 255.
pub const REQUIRED_TTL: u8 = 255;
const TYPE_ADVERTISEMENT: u8 = 1;
const HEADER_LEN: usize = 8;
/// VRRPv2 simple text password (RFC 2338 auth type 1, keepalived's PASS).
const AUTH_NONE: u8 = 0;
const AUTH_SIMPLE_TEXT: u8 = 1;
const AUTH_DATA_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

/// How a VRRPv3 IPv4 checksum is computed: the RFC's way (with the IPv4
/// pseudo-header), or as VRRPv2 did (without), for peers that still do
/// (keepalived's `vrrp_v3_checksum_as_v2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumMode {
    Rfc,
    AsV2,
}

/// An advertisement, as both versions carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// v3: centisecond resolution, at most 40.95 s; v2: whole seconds.
    pub interval: Duration,
    pub addresses: Vec<IpAddr>,
    /// v2 only: the simple text password, zero-padded to 8 bytes.
    pub password: Option<[u8; AUTH_DATA_LEN]>,
}

/// Why a received packet is not a usable advertisement; each is counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated: {len} bytes")]
    Truncated { len: usize },
    #[error("version {0} where {1:?} is configured")]
    Version(u8, Version),
    #[error("type {0} is not an advertisement")]
    Type(u8),
    #[error("bad checksum")]
    Checksum,
    #[error("address count {count} does not fit {len} bytes")]
    AddressCount { count: u8, len: usize },
    #[error("authentication type {0} is not supported")]
    AuthType(u8),
}

/// Encodes `advert` sent from `src` to `dst` (the checksum covers them in v3).
pub fn encode(advert: &Advert, src: IpAddr, dst: IpAddr, mode: ChecksumMode) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + advert.addresses.len() * 16 + AUTH_DATA_LEN);
    let version = match advert.version {
        Version::V2 => 2,
        Version::V3 => 3,
    };
    out.push((version << 4) | TYPE_ADVERTISEMENT);
    out.push(advert.vrid);
    out.push(advert.priority);
    out.push(advert.addresses.len() as u8);
    match advert.version {
        Version::V3 => {
            let centis = (advert.interval.as_millis() / 10).min(0x0fff) as u16;
            out.extend_from_slice(&centis.to_be_bytes());
        }
        Version::V2 => {
            out.push(if advert.password.is_some() {
                AUTH_SIMPLE_TEXT
            } else {
                AUTH_NONE
            });
            out.push(advert.interval.as_secs().clamp(1, 255) as u8);
        }
    }
    out.extend_from_slice(&[0, 0]);
    for a in &advert.addresses {
        match a {
            IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
        }
    }
    if advert.version == Version::V2 {
        out.extend_from_slice(&advert.password.unwrap_or([0; AUTH_DATA_LEN]));
    }
    let sum = checksum(&out, src, dst, advert.version, mode);
    out[6..8].copy_from_slice(&sum.to_be_bytes());
    out
}

/// Decodes a VRRP message received from `src` to `dst`; `family_v6` says
/// which address size it carries. The checksum is verified; the caller
/// checks TTL, VRID, addresses and password against its configuration.
pub fn decode(
    bytes: &[u8],
    src: IpAddr,
    dst: IpAddr,
    expected: Version,
    mode: ChecksumMode,
) -> Result<Advert, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Truncated { len: bytes.len() });
    }
    let version = match bytes[0] >> 4 {
        2 if expected == Version::V2 => Version::V2,
        3 if expected == Version::V3 => Version::V3,
        other => return Err(DecodeError::Version(other, expected)),
    };
    if bytes[0] & 0x0f != TYPE_ADVERTISEMENT {
        return Err(DecodeError::Type(bytes[0] & 0x0f));
    }
    let count = bytes[3];
    let addr_len = if src.is_ipv6() { 16 } else { 4 };
    let auth_len = if version == Version::V2 {
        AUTH_DATA_LEN
    } else {
        0
    };
    let needed = HEADER_LEN + count as usize * addr_len + auth_len;
    if bytes.len() < needed {
        return Err(DecodeError::AddressCount {
            count,
            len: bytes.len(),
        });
    }
    let bytes = &bytes[..needed];
    if checksum(bytes, src, dst, version, mode) != 0 {
        return Err(DecodeError::Checksum);
    }
    let (interval, password) = match version {
        Version::V3 => {
            let centis = u16::from_be_bytes([bytes[4], bytes[5]]) & 0x0fff;
            (Duration::from_millis(centis as u64 * 10), None)
        }
        Version::V2 => {
            let password = match bytes[4] {
                AUTH_NONE => None,
                AUTH_SIMPLE_TEXT => {
                    let mut p = [0u8; AUTH_DATA_LEN];
                    p.copy_from_slice(&bytes[needed - AUTH_DATA_LEN..]);
                    Some(p)
                }
                other => return Err(DecodeError::AuthType(other)),
            };
            (Duration::from_secs(bytes[5] as u64), password)
        }
    };
    let addresses = bytes[HEADER_LEN..HEADER_LEN + count as usize * addr_len]
        .chunks(addr_len)
        .map(|c| match c.len() {
            4 => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
            _ => {
                let mut o = [0u8; 16];
                o.copy_from_slice(c);
                IpAddr::V6(Ipv6Addr::from(o))
            }
        })
        .collect();
    Ok(Advert {
        version,
        vrid: bytes[1],
        priority: bytes[2],
        interval,
        addresses,
        password,
    })
}

/// The one's complement checksum of `message` (whose checksum field holds
/// the checksum, or zero when computing one): over the message alone in
/// v2 (and v3 IPv4 "as v2"), with the pseudo-header otherwise (RFC 9568
/// §5.2.8). A correct message sums to zero.
fn checksum(message: &[u8], src: IpAddr, dst: IpAddr, version: Version, mode: ChecksumMode) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += word as u32;
        }
    };
    let pseudo = version == Version::V3 && !(mode == ChecksumMode::AsV2 && src.is_ipv4());
    if pseudo {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                add(&s.octets());
                add(&d.octets());
                add(&[0, IPPROTO_VRRP]);
                add(&(message.len() as u16).to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                add(&s.octets());
                add(&d.octets());
                add(&(message.len() as u32).to_be_bytes());
                add(&[0, 0, 0, IPPROTO_VRRP]);
            }
            _ => {}
        }
    }
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    const DST4: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18));

    fn v3() -> Advert {
        Advert {
            version: Version::V3,
            vrid: 51,
            priority: 150,
            interval: Duration::from_millis(1000),
            addresses: vec!["198.18.0.100".parse().unwrap()],
            password: None,
        }
    }

    #[test]
    fn v3_ipv4_round_trip_with_the_rfc_layout() {
        let bytes = encode(&v3(), SRC4, DST4, ChecksumMode::Rfc);
        assert_eq!(&bytes[..6], &[0x31, 51, 150, 1, 0x00, 100]);
        assert_eq!(&bytes[8..], &[198, 18, 0, 100]);
        assert_eq!(
            decode(&bytes, SRC4, DST4, Version::V3, ChecksumMode::Rfc),
            Ok(v3())
        );
    }

    #[test]
    fn v3_ipv6_round_trip() {
        let src: IpAddr = "fe80::2".parse().unwrap();
        let dst: IpAddr = "ff02::12".parse().unwrap();
        let advert = Advert {
            addresses: vec![
                "2001:db8::100".parse().unwrap(),
                "2001:db8::101".parse().unwrap(),
            ],
            interval: Duration::from_millis(250),
            ..v3()
        };
        let bytes = encode(&advert, src, dst, ChecksumMode::Rfc);
        assert_eq!(bytes.len(), 8 + 32);
        assert_eq!(
            decode(&bytes, src, dst, Version::V3, ChecksumMode::Rfc),
            Ok(advert)
        );
    }

    #[test]
    fn v2_round_trip_with_password() {
        let advert = Advert {
            version: Version::V2,
            interval: Duration::from_secs(1),
            password: Some(*b"halbpass"),
            ..v3()
        };
        let bytes = encode(&advert, SRC4, DST4, ChecksumMode::Rfc);
        assert_eq!(&bytes[..6], &[0x21, 51, 150, 1, AUTH_SIMPLE_TEXT, 1]);
        assert_eq!(&bytes[12..], b"halbpass");
        assert_eq!(
            decode(&bytes, SRC4, DST4, Version::V2, ChecksumMode::Rfc),
            Ok(advert)
        );
    }

    #[test]
    fn v3_checksum_as_v2_is_its_own_variant() {
        let bytes = encode(&v3(), SRC4, DST4, ChecksumMode::AsV2);
        assert_eq!(
            decode(&bytes, SRC4, DST4, Version::V3, ChecksumMode::Rfc),
            Err(DecodeError::Checksum)
        );
        assert!(decode(&bytes, SRC4, DST4, Version::V3, ChecksumMode::AsV2).is_ok());
    }

    #[test]
    fn malformed_adverts_are_refused_with_a_reason() {
        let good = encode(&v3(), SRC4, DST4, ChecksumMode::Rfc);
        let mut bad_sum = good.clone();
        bad_sum[7] ^= 1;
        let mut v2 = good.clone();
        v2[0] = 0x21;
        let mut kind = good.clone();
        kind[0] = 0x32;
        let mut count = good.clone();
        count[3] = 3;
        let cases: [(&[u8], DecodeError); 5] = [
            (&good[..5], DecodeError::Truncated { len: 5 }),
            (&bad_sum, DecodeError::Checksum),
            (&v2, DecodeError::Version(2, Version::V3)),
            (&kind, DecodeError::Type(2)),
            (&count, DecodeError::AddressCount { count: 3, len: 12 }),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                decode(bytes, SRC4, DST4, Version::V3, ChecksumMode::Rfc),
                Err(want)
            );
        }
    }
}
