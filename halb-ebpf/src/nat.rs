//! NAT forwarding: the destination becomes the backend; in full NAT the
//! source becomes the balancer's address with a port allocated so that no
//! two flows share a reply tuple. Replies are translated back here too.

use aya_ebpf::{bindings::BPF_NOEXIST, programs::XdpContext};
use halb_common::{
    addr::PROTO_TCP,
    flow::{FLOW_OPEN, FlowKey, NatEntry},
    hash,
    service::{SERVICE_F_KEEP_CLIENT_ADDR, Service},
};

use crate::{
    clock, events,
    fib::{self, NextHop},
    lookup,
    maps::{
        HALB_NAT, HALB_NAT_PORT_MAX, HALB_NAT_PORT_MIN, HALB_NAT_SHARED_MAX, HALB_NAT_SHARED_MIN,
        HALB_SCR_NAT,
    },
    parse::{
        Packet,
        eth::EthHdr,
        l4::{TCP_ACK, TCP_SYN},
        ptr_at,
    },
    rewrite::{self, Endpoints},
    select::{self, Choice},
    verdict::{Direction, Drop, Verdict},
};

/// Ports tried for a new full-NAT flow before giving up.
const PORT_TRIES: u32 = 16;

/// Client -> VIP becomes (balancer or client) -> backend.
#[inline(always)]
pub fn forward(
    ctx: &XdpContext,
    pkt: &Packet,
    key: &FlowKey,
    svc: &Service,
    choice: &Choice,
) -> Result<Verdict, Verdict> {
    let backend = &choice.backend;
    let keep_client = svc.flags & SERVICE_F_KEEP_CLIENT_ADDR != 0;
    let (src, sport_be) = if keep_client {
        (pkt.src, pkt.sport_be)
    } else {
        (svc.snat_addr_be, choice.nat_port_be)
    };
    let mut to = Endpoints {
        src,
        sport_be,
        dst: backend.addr_be,
        dport_be: backend.port_be,
    };
    // The route first: a packet that cannot be sent creates no state.
    let hop = match choice.hop {
        Some(hop) => hop,
        None => {
            let hop = fib::lookup(ctx, pkt.family, &to.src, &to.dst, pkt.ip_len)?;
            if !choice.new_flow {
                select::remember_hop(key, &hop);
            }
            hop
        }
    };
    if choice.new_flow {
        let macs = frame_macs(ctx)?;
        let entry = HALB_SCR_NAT
            .get_ptr_mut(0)
            .ok_or(Verdict::Drop(Drop::MapError))?;
        // SAFETY: this CPU's slot of a per-CPU array; XDP does not nest on
        // a CPU, so nothing else uses it until this packet is done.
        // verifier: built in map memory, not on the stack (512 bytes shared
        // by the whole call chain).
        let entry = unsafe { &mut *entry };
        entry.last_seen_ns = clock::now();
        entry.client_be = pkt.src;
        entry.vip_be = pkt.dst;
        entry.client_port_be = pkt.sport_be;
        entry.vip_port_be = pkt.dport_be;
        entry.backend_id = choice.backend_id;
        entry.client_ifindex = ctx.ingress_ifindex() as u32;
        entry.client_mac = macs.src;
        entry.balancer_mac = macs.dst;
        entry.state = FLOW_OPEN;
        entry._pad = [0; 7];
        let entry: &NatEntry = entry;
        if keep_client {
            // The reply tuple (backend -> client) is unique per client tuple.
            let reply = reply_key(pkt, &to);
            HALB_NAT
                .insert(reply, entry, 0)
                .map_err(|_| Verdict::Drop(Drop::MapError))?;
        } else {
            to.sport_be = allocate_port(pkt, &to, entry)?;
        }
        select::track(ctx, pkt, key, choice, to.sport_be, &hop)?;
    } else if choice.hop.is_none() || pkt.tcp_flags & TCP_SYN != 0 {
        // Once a second (with the route), and at once for a SYN sent again.
        follow_client(ctx, pkt, &to);
    }
    rewrite::l3_l4(ctx, pkt, &to)?;
    fib::apply(ctx, &hop).map(|egress| Verdict::Forward(Direction::ToBackend, egress))
}

/// Backend -> (balancer or client) becomes VIP -> client, sent back the
/// way the client's packets came: out of their interface, to the MAC they
/// came from (the client, or the router before it). No route lookup: the
/// kernel never sees the client's packets, so it may not even have a
/// neighbour entry for that hop.
#[inline(always)]
pub fn reply(ctx: &XdpContext, pkt: &Packet, entry: &NatEntry) -> Result<Verdict, Verdict> {
    let to = Endpoints {
        src: entry.vip_be,
        sport_be: entry.vip_port_be,
        dst: entry.client_be,
        dport_be: entry.client_port_be,
    };
    rewrite::l3_l4(ctx, pkt, &to)?;
    let hop = NextHop {
        ifindex: entry.client_ifindex,
        dst_mac: entry.client_mac,
        src_mac: entry.balancer_mac,
    };
    fib::apply(ctx, &hop).map(|egress| Verdict::Forward(Direction::Reply, egress))
}

/// Points a tracked flow's replies at the hop its client's packets come
/// from now. That hop changes: while a VIP moves, a client whose ARP cache
/// is late sends to the old master, whose kernel forwards to the new one;
/// a flow started so would have its replies sent to the old master for
/// good, and a router in front of the balancers may change too.
#[inline(always)]
fn follow_client(ctx: &XdpContext, pkt: &Packet, to: &Endpoints) {
    let Ok(macs) = frame_macs(ctx) else {
        return;
    };
    if let Some(entry) = HALB_NAT.get_ptr_mut(reply_key(pkt, to)) {
        // SAFETY: a pointer from a successful lookup; plain integer fields.
        let entry = unsafe { &mut *entry };
        entry.client_ifindex = ctx.ingress_ifindex() as u32;
        entry.client_mac = macs.src;
        entry.balancer_mac = macs.dst;
    }
}

/// Whether `pkt`, which no NAT entry knows, may be a backend's reply to a
/// flow whose state is still on its way from the peer that made it (with
/// sync only): TCP, not a connection attempt, to a full-NAT source address
/// at a port of the NAT range the nodes share. The kernel would answer it
/// with a reset, and end a connection that the state, once in, carries on.
#[inline(always)]
pub fn awaited(pkt: &Packet) -> bool {
    if !events::enabled()
        || pkt.proto != PROTO_TCP
        || pkt.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    {
        return false;
    }
    let port = u16::from_be(pkt.dport_be);
    port >= HALB_NAT_SHARED_MIN.load() && port <= HALB_NAT_SHARED_MAX.load() && lookup::is_snat(pkt)
}

/// The frame's MACs: the previous hop towards the client (source) and
/// the balancer's own on that interface (destination).
#[inline(always)]
fn frame_macs(ctx: &XdpContext) -> Result<Macs, Verdict> {
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(Verdict::Drop(Drop::BadIp))?;
    // SAFETY: ptr_at checked that a whole EthHdr lies before data_end.
    let eth = unsafe { &*eth };
    Ok(Macs {
        src: eth.src,
        dst: eth.dst,
    })
}

struct Macs {
    src: [u8; 6],
    dst: [u8; 6],
}

/// The key a backend's reply to a packet sent as `to` will carry.
#[inline(always)]
fn reply_key(pkt: &Packet, to: &Endpoints) -> FlowKey {
    FlowKey {
        src_be: to.dst,
        dst_be: to.src,
        sport_be: to.dport_be,
        dport_be: to.sport_be,
        proto: pkt.proto,
        family: pkt.family,
        _pad: [0; 2],
    }
}

/// Claims a source port for a new full-NAT flow towards `to.dst`: the
/// first free one from a hash-chosen start. Claiming is an insert that
/// fails if the reply tuple exists, so two CPUs can never take the same
/// port; an expired claim is removed and retried.
#[inline(always)]
fn allocate_port(pkt: &Packet, to: &Endpoints, entry: &NatEntry) -> Result<u16, Verdict> {
    let min = HALB_NAT_PORT_MIN.load() as u32;
    let max = HALB_NAT_PORT_MAX.load() as u32;
    let span = max.saturating_sub(min).wrapping_add(1);
    let start = hash::five_tuple(&pkt.src, &pkt.dst, pkt.sport_be, pkt.dport_be, pkt.proto);
    let now = entry.last_seen_ns;
    let mut candidate = Endpoints {
        src: to.src,
        sport_be: 0,
        dst: to.dst,
        dport_be: to.dport_be,
    };
    for i in 0..PORT_TRIES {
        // verifier: checked_rem, not `%`, which would bring a panic path in.
        let offset = start
            .wrapping_add(i)
            .checked_rem(span)
            .ok_or(Verdict::Drop(Drop::NatPorts))?;
        let port = min.wrapping_add(offset) as u16;
        candidate.sport_be = port.to_be();
        let key = reply_key(pkt, &candidate);
        if HALB_NAT.insert(key, entry, BPF_NOEXIST as u64).is_ok() {
            return Ok(candidate.sport_be);
        }
        let stale = match HALB_NAT.get_ptr(key) {
            // SAFETY: a pointer from a successful lookup, read at once.
            Some(old) => unsafe {
                clock::expired((*old).last_seen_ns, (*old).state, pkt.proto, now)
            },
            None => true,
        };
        if stale {
            let _ = HALB_NAT.remove(key);
            if HALB_NAT.insert(key, entry, BPF_NOEXIST as u64).is_ok() {
                return Ok(candidate.sport_be);
            }
        }
    }
    Err(Verdict::Drop(Drop::NatPorts))
}
