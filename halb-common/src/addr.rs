//! Addresses as the maps hold them: 16 bytes in network order, IPv4 in the
//! first four, the rest zero; a separate family byte says which.

/// `family` value for IPv4 (AF_INET).
pub const FAMILY_IPV4: u8 = 2;
/// `family` value for IPv6 (AF_INET6).
pub const FAMILY_IPV6: u8 = 10;

/// IP protocol numbers the datapath handles.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// An address in network order, as four words (IPv4: `[addr, 0, 0, 0]`).
pub type AddrBe = [u32; 4];
