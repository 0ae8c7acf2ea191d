//! VRRP leases: a node answers "who has this VIP?" (ARP requests, IPv6
//! neighbour solicitations) only while its agent keeps the VIP's lease
//! alive. The kernel would answer for any address on the interface, and a
//! killed agent leaves its VIPs there; without this, its kernel keeps
//! telling the LAN that the VIP is here, and a client that asks at the
//! wrong moment sends half a connection to each node.

use aya_ebpf::programs::XdpContext;
use halb_common::{
    addr::{AddrBe, FAMILY_IPV4, FAMILY_IPV6},
    service::VipKey,
};

use crate::{
    clock,
    maps::HALB_LEASES,
    parse::{L3_OFF, Packet, ptr_at},
    verdict::{Drop, Pass, Verdict},
};

const ARPOP_REQUEST: u16 = 1;
const ARPHRD_ETHER: u16 = 1;
const ICMPV6_NEIGHBOUR_SOLICITATION: u8 = 135;

/// An ARP packet for IPv4 over Ethernet (RFC 826).
#[repr(C)]
struct ArpHdr {
    htype_be: u16,
    ptype_be: u16,
    hlen: u8,
    plen: u8,
    oper_be: u16,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
}

/// ICMPv6 type, code, checksum, reserved word, then the target (RFC 4861 §4.3).
#[repr(C)]
struct NeighbourSolicitation {
    kind: u8,
    code: u8,
    check: u16,
    reserved: u32,
    target: [u8; 16],
}

/// An ARP frame: dropped when it asks for a VIP whose lease ran out; every
/// other ARP frame goes to the kernel.
// verifier: inlined; out of line, LLVM passed the context's packet
// pointers as scalars it shifts, which the verifier refuses.
#[inline(always)]
pub fn arp(ctx: &XdpContext) -> Result<Verdict, Verdict> {
    let pass = Verdict::Pass(Pass::NotIp);
    let arp = ptr_at::<ArpHdr>(ctx, L3_OFF).ok_or(pass)?;
    // SAFETY: ptr_at checked that a whole ArpHdr lies before data_end.
    let arp = unsafe { &*arp };
    if u16::from_be(arp.oper_be) != ARPOP_REQUEST
        || u16::from_be(arp.htype_be) != ARPHRD_ETHER
        || arp.plen != 4
    {
        return Err(pass);
    }
    let target = [u32::from_ne_bytes(arp.tpa), 0, 0, 0];
    if expired(target, FAMILY_IPV4) {
        return Err(Verdict::Drop(Drop::LeaseExpired));
    }
    Err(pass)
}

/// An ICMPv6 packet: Some(drop) when it is a neighbour solicitation for
/// a VIP whose lease ran out.
#[inline(always)]
pub fn solicitation(ctx: &XdpContext, pkt: &Packet) -> Option<Verdict> {
    let ns = ptr_at::<NeighbourSolicitation>(ctx, pkt.l4_off as usize)?;
    // SAFETY: ptr_at checked that a whole solicitation lies before data_end.
    let ns = unsafe { &*ns };
    if ns.kind != ICMPV6_NEIGHBOUR_SOLICITATION {
        return None;
    }
    let t = ns.target;
    let word = |i: usize| u32::from_ne_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
    let target = [word(0), word(4), word(8), word(12)];
    expired(target, FAMILY_IPV6).then_some(Verdict::Drop(Drop::LeaseExpired))
}

/// Whether `addr` has a lease, and it ran out. An address without one is
/// none of VRRP's business.
#[inline(always)]
fn expired(addr_be: AddrBe, family: u8) -> bool {
    let key = VipKey {
        addr_be,
        family,
        _pad: [0; 3],
    };
    // SAFETY: a read-only lookup; the value is copied at once.
    match unsafe { HALB_LEASES.get(key) } {
        Some(lease) => lease.expires_ns < clock::now(),
        None => false,
    }
}
