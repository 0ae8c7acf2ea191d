//! ICMP errors about tracked flows: "fragmentation needed" (ICMPv4 type 3
//! code 4) and "packet too big" (ICMPv6 type 2) sent to a VIP by a router
//! on the client's path concern a packet the VIP sent to a client. They go
//! to that flow's backend, so its path MTU discovery works; in NAT mode the
//! quoted packet is rewritten to the tuple the backend knows. Every other
//! ICMP message goes to the kernel.

use aya_ebpf::programs::XdpContext;
use halb_common::{
    addr::{AddrBe, FAMILY_IPV4, PROTO_TCP, PROTO_UDP},
    backend::Backend,
    flow::FlowKey,
    service::{MODE_DSR, SERVICE_F_KEEP_CLIENT_ADDR, ServiceKey},
};

use crate::{
    csum::Update,
    fib,
    maps::{HALB_BACKENDS, HALB_FLOWS, HALB_SERVICES},
    parse::{
        L3_OFF, Packet, ipv4::Ipv4Hdr, ipv6::IPV6_HLEN, ipv6::Ipv6Hdr, l4::IcmpHdr, l4::UdpHdr,
        ptr_at,
    },
    rewrite,
    verdict::{Direction, Drop, Egress, Pass, Verdict},
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PKT_TOOBIG: u8 = 2;
/// The quoted packet starts after the 8-byte ICMP header.
const ICMP_HLEN: usize = 8;

/// Source and destination ports at the start of a TCP or UDP header.
#[repr(C)]
struct PortPair {
    sport_be: u16,
    dport_be: u16,
}

/// The packet quoted in an ICMP error: what the VIP sent to the client.
struct Quoted {
    /// Offset of the quoted IP header.
    ip_off: usize,
    /// Offset of the quoted transport header.
    l4_off: usize,
    proto: u8,
    src: AddrBe,
    dst: AddrBe,
    sport_be: u16,
    dport_be: u16,
}

// verifier: not inlined, so its stack is not added to the other paths'.
#[inline(never)]
pub fn to_backend(ctx: &XdpContext, pkt: &Packet) -> Result<Verdict, Verdict> {
    let pass = Verdict::Pass(Pass::Icmp);
    let icmp = ptr_at::<IcmpHdr>(ctx, pkt.l4_off as usize).ok_or(Verdict::Drop(Drop::BadL4))?;
    // SAFETY: ptr_at checked that a whole IcmpHdr lies before data_end.
    let (kind, code) = unsafe { ((*icmp).kind, (*icmp).code) };
    let too_big = if pkt.family == FAMILY_IPV4 {
        kind == ICMP_DEST_UNREACH && code == ICMP_FRAG_NEEDED
    } else {
        kind == ICMPV6_PKT_TOOBIG
    };
    if !too_big {
        return Err(pass);
    }
    let quoted = quoted(ctx, pkt).ok_or(pass)?;
    if quoted.src != pkt.dst {
        // Not about a packet this VIP sent.
        return Err(pass);
    }
    // The flow, as tracked: client -> VIP.
    let key = FlowKey {
        src_be: quoted.dst,
        dst_be: quoted.src,
        sport_be: quoted.dport_be,
        dport_be: quoted.sport_be,
        proto: quoted.proto,
        family: pkt.family,
        _pad: [0; 2],
    };
    // SAFETY: values copied out at once.
    let flow = unsafe { HALB_FLOWS.get(key).copied() }.ok_or(pass)?;
    let backend = HALB_BACKENDS.get(flow.backend_id).copied().ok_or(pass)?;
    let service_key = ServiceKey {
        addr_be: quoted.src,
        port_be: quoted.sport_be,
        proto: quoted.proto,
        family: pkt.family,
    };
    // SAFETY: as above.
    let svc = unsafe { HALB_SERVICES.get(service_key).copied() }.ok_or(pass)?;

    if svc.mode == MODE_DSR {
        return dsr(ctx, pkt, &backend);
    }
    // NAT: the backend sent backend -> (balancer:nat_port or client).
    let (client, client_port_be) = if svc.flags & SERVICE_F_KEEP_CLIENT_ADDR != 0 {
        (quoted.dst, quoted.dport_be)
    } else {
        (svc.snat_addr_be, flow.nat_port_be)
    };
    rewrite_quoted(ctx, pkt, &quoted, &backend, &client, client_port_be)?;
    // Outer destination: the backend instead of the VIP.
    rewrite_outer_dst(ctx, pkt, &backend.addr_be)?;
    fib::forward(ctx, pkt.family, &pkt.src, &backend.addr_be, pkt.ip_len)
        .map(|egress| Verdict::Forward(Direction::IcmpToBackend, egress))
}

/// DSR: the backend holds the VIP, so the error goes unchanged, by MAC.
#[inline(always)]
fn dsr(ctx: &XdpContext, pkt: &Packet, backend: &Backend) -> Result<Verdict, Verdict> {
    if backend.mac == [0; 6] {
        return fib::forward(ctx, pkt.family, &pkt.src, &backend.addr_be, pkt.ip_len)
            .map(|egress| Verdict::Forward(Direction::IcmpToBackend, egress));
    }
    let eth = ptr_at::<crate::parse::eth::EthHdr>(ctx, 0).ok_or(Verdict::Drop(Drop::BadIp))?;
    // SAFETY: ptr_at checked that a whole EthHdr lies before data_end.
    let own = unsafe { (*eth).dst };
    fib::set_macs(ctx, &backend.mac, &own)?;
    Ok(Verdict::Forward(Direction::IcmpToBackend, Egress::Tx))
}

#[inline(always)]
fn quoted(ctx: &XdpContext, pkt: &Packet) -> Option<Quoted> {
    let ip_off = pkt.l4_off as usize + ICMP_HLEN;
    let (l4_off, proto, src, dst) = if pkt.family == FAMILY_IPV4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, ip_off)?;
        // SAFETY: ptr_at checked that a whole Ipv4Hdr lies before data_end.
        let ip = unsafe { &*ip };
        let ihl = (ip.version_ihl & 0x0f) as usize * 4;
        if ihl < 20 {
            return None;
        }
        (ip_off + ihl, ip.proto, [ip.src, 0, 0, 0], [ip.dst, 0, 0, 0])
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, ip_off)?;
        // SAFETY: ptr_at checked that a whole Ipv6Hdr lies before data_end.
        let ip = unsafe { &*ip };
        (ip_off + IPV6_HLEN, ip.next_header, ip.src, ip.dst)
    };
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    let ports = ptr_at::<PortPair>(ctx, l4_off)?;
    // SAFETY: ptr_at checked that a whole PortPair lies before data_end.
    let ports = unsafe { &*ports };
    Some(Quoted {
        ip_off,
        l4_off,
        proto,
        src,
        dst,
        sport_be: ports.sport_be,
        dport_be: ports.dport_be,
    })
}

/// Makes the quoted packet read backend:port -> `client`:`client_port_be`,
/// fixing the quoted IPv4 header checksum, a quoted UDP checksum, and the
/// ICMP checksum (which covers the quoted bytes). A quoted TCP checksum
/// lies past the 8 bytes an error must quote and is left alone.
#[inline(always)]
fn rewrite_quoted(
    ctx: &XdpContext,
    pkt: &Packet,
    quoted: &Quoted,
    backend: &Backend,
    client: &AddrBe,
    client_port_be: u16,
) -> Result<(), Verdict> {
    let bad = Verdict::Drop(Drop::BadL4);
    let icmp = ptr_at::<IcmpHdr>(ctx, pkt.l4_off as usize).ok_or(bad)?;
    // SAFETY: ptr_at checked that a whole IcmpHdr lies before data_end.
    let icmp = unsafe { &mut *icmp };
    let mut sum = Update::new(icmp.check)
        .addr(&quoted.src, &backend.addr_be)
        .addr(&quoted.dst, client)
        .half(quoted.sport_be, backend.port_be)
        .half(quoted.dport_be, client_port_be);

    if pkt.family == FAMILY_IPV4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, quoted.ip_off).ok_or(bad)?;
        // SAFETY: ptr_at checked that a whole Ipv4Hdr lies before data_end.
        let ip = unsafe { &mut *ip };
        let old_check = ip.check;
        ip.check = Update::new(ip.check)
            .word(ip.src, backend.addr_be[0])
            .word(ip.dst, client[0])
            .finish();
        sum = sum.half(old_check, ip.check);
        ip.src = backend.addr_be[0];
        ip.dst = client[0];
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, quoted.ip_off).ok_or(bad)?;
        // SAFETY: ptr_at checked that a whole Ipv6Hdr lies before data_end.
        let ip = unsafe { &mut *ip };
        ip.src = backend.addr_be;
        ip.dst = *client;
        // ICMPv6's checksum covers the pseudo-header: the outer destination
        // changes from the VIP to the backend.
        sum = sum.addr(&pkt.dst, &backend.addr_be);
    }
    if quoted.proto == PROTO_UDP {
        // UDP's checksum is within the 8 quoted bytes: keep it consistent
        // with the rewritten tuple (an IPv4 zero means "none" and stays).
        let udp = ptr_at::<UdpHdr>(ctx, quoted.l4_off).ok_or(bad)?;
        // SAFETY: ptr_at checked that a whole UdpHdr lies before data_end.
        let udp = unsafe { &mut *udp };
        if udp.check != 0 || pkt.family != FAMILY_IPV4 {
            let old_check = udp.check;
            let check = Update::new(udp.check)
                .addr(&quoted.src, &backend.addr_be)
                .addr(&quoted.dst, client)
                .half(quoted.sport_be, backend.port_be)
                .half(quoted.dport_be, client_port_be)
                .finish();
            udp.check = if check == 0 { 0xffff } else { check };
            sum = sum.half(old_check, udp.check);
        }
    }
    let ports = ptr_at::<PortPair>(ctx, quoted.l4_off).ok_or(bad)?;
    // SAFETY: ptr_at checked that a whole PortPair lies before data_end.
    let ports = unsafe { &mut *ports };
    ports.sport_be = backend.port_be;
    ports.dport_be = client_port_be;
    icmp.check = sum.finish();
    Ok(())
}

#[inline(always)]
fn rewrite_outer_dst(ctx: &XdpContext, pkt: &Packet, dst: &AddrBe) -> Result<(), Verdict> {
    if pkt.family == FAMILY_IPV4 {
        return rewrite::addresses(ctx, pkt, &pkt.src, dst);
    }
    let ip = ptr_at::<Ipv6Hdr>(ctx, L3_OFF).ok_or(Verdict::Drop(Drop::BadIp))?;
    // SAFETY: ptr_at checked that a whole Ipv6Hdr lies before data_end.
    unsafe { (*ip).dst = *dst };
    Ok(())
}
