//! Which backend gets a packet: the one its tracked flow already has, or a
//! new pick from the service's Maglev ring.

use aya_ebpf::{bindings::BPF_ANY, programs::XdpContext};
use halb_common::{
    addr::PROTO_TCP,
    backend::{BACKEND_DRAINING, BACKEND_UP, Backend},
    event::{FLOW_EVENT_CLOSING, FLOW_EVENT_NEW, FLOW_EVENT_REFRESH},
    flow::{FLOW_CLOSING, FLOW_OPEN, Flow, FlowKey},
    hash,
    maps::NO_BACKEND,
    service::{MODE_DSR, SERVICE_F_KEEP_CLIENT_ADDR, SERVICE_F_SOURCE_AFFINITY, Service},
};

use crate::{
    clock, events,
    fib::NextHop,
    maps::{HALB_BACKENDS, HALB_FLOWS, HALB_RING_SIZE, HALB_RINGS},
    parse::{Packet, l4::TCP_SYN},
    verdict::{Drop, Verdict},
};

pub struct Choice {
    pub backend_id: u32,
    pub backend: Backend,
    /// No live flow entry existed: the caller tracks the flow.
    pub new_flow: bool,
    /// Full NAT: the source port the tracked flow uses towards the backend.
    pub nat_port_be: u16,
    /// The tracked flow's cached next hop, while it is fresh (under a
    /// second old); None means: look the route up, then [`remember_hop`].
    pub hop: Option<NextHop>,
    /// The flow event this packet brings about (0: none); reported by
    /// [`events::report`] once the packet is on its way.
    pub event: u8,
}

#[inline(always)]
pub fn backend(
    ctx: &XdpContext,
    pkt: &Packet,
    key: &FlowKey,
    svc: &Service,
) -> Result<Choice, Verdict> {
    let now = clock::now();
    if let Some(flow) = HALB_FLOWS.get_ptr_mut(key) {
        // SAFETY: a pointer from a successful lookup; fields are plain
        // integers, and concurrent writers only store whole fields.
        let flow = unsafe { &mut *flow };
        if !clock::expired(flow.last_seen_ns, flow.state, pkt.proto, now) {
            // A flow keeps a draining backend, but one that is down (or
            // gone) is rescheduled rather than black-holed.
            if let Some(backend) = backend_in(flow.backend_id, BACKEND_DRAINING) {
                let stale_hop = clock::touch(&mut flow.last_seen_ns, now);
                // Peers hear of a flow's close at once, and of its life
                // once per epoch (checked only when the entry is touched,
                // once a second), so their copies never time out first.
                let event = if clock::closes(pkt) && flow.state != FLOW_CLOSING {
                    flow.state = FLOW_CLOSING;
                    Some(FLOW_EVENT_CLOSING)
                } else if stale_hop && flow.reported_epoch != events::epoch(now) {
                    Some(FLOW_EVENT_REFRESH)
                } else {
                    None
                };
                if let Some(kind) = event {
                    flow.reported_epoch = events::epoch(now);
                    events::note(ctx, kind);
                }
                let hop = (!stale_hop && flow.hop_ifindex != 0).then_some(NextHop {
                    ifindex: flow.hop_ifindex,
                    dst_mac: flow.hop_dst_mac,
                    src_mac: flow.hop_src_mac,
                });
                return Ok(Choice {
                    backend_id: flow.backend_id,
                    backend,
                    new_flow: false,
                    nat_port_be: flow.nat_port_be,
                    hop,
                    event: event.unwrap_or(0),
                });
            }
        }
    }

    // Full NAT with sync: a mid-flow TCP segment of a flow not known here
    // (yet: its state comes from the peer that made it) is dropped, not
    // scheduled; a new NAT port would get it a reset from the backend,
    // whereas the client retransmits it once the state is in. (Without
    // sync no state will come: the reset tells the client at once.)
    if events::enabled()
        && pkt.proto == PROTO_TCP
        && pkt.tcp_flags & TCP_SYN == 0
        && svc.mode != MODE_DSR
        && svc.flags & SERVICE_F_KEEP_CLIENT_ADDR == 0
    {
        return Err(Verdict::Drop(Drop::MidFlow));
    }
    let hash = if svc.flags & SERVICE_F_SOURCE_AFFINITY != 0 {
        hash::source(&pkt.src)
    } else {
        hash::five_tuple(&pkt.src, &pkt.dst, pkt.sport_be, pkt.dport_be, pkt.proto)
    };
    let ring_size = HALB_RING_SIZE.load();
    // verifier: checked_rem, not `%`, which would bring a panic path in.
    let slot = hash
        .checked_rem(ring_size)
        .ok_or(Verdict::Drop(Drop::NoBackend))?;
    let index = svc.ring_id.wrapping_mul(ring_size).wrapping_add(slot);
    let backend_id = HALB_RINGS
        .get(index)
        .copied()
        .ok_or(Verdict::Drop(Drop::NoBackend))?;
    if backend_id == NO_BACKEND {
        return Err(Verdict::Drop(Drop::NoBackend));
    }
    let backend = backend_in(backend_id, BACKEND_UP).ok_or(Verdict::Drop(Drop::NoBackend))?;
    Ok(Choice {
        backend_id,
        backend,
        new_flow: true,
        nat_port_be: 0,
        hop: None,
        event: FLOW_EVENT_NEW,
    })
}

/// The backend `id` if its state is UP or, when `accept` is
/// BACKEND_DRAINING, UP or DRAINING.
#[inline(always)]
fn backend_in(id: u32, accept: u8) -> Option<Backend> {
    let backend = HALB_BACKENDS.get(id).copied()?;
    let usable = backend.state == BACKEND_UP
        || (accept == BACKEND_DRAINING && backend.state == BACKEND_DRAINING);
    usable.then_some(backend)
}

/// Records a newly scheduled flow, with the next hop towards its backend.
#[inline(always)]
pub fn track(
    ctx: &XdpContext,
    pkt: &Packet,
    key: &FlowKey,
    choice: &Choice,
    nat_port_be: u16,
    hop: &NextHop,
) -> Result<(), Verdict> {
    let now = clock::now();
    let flow = Flow {
        last_seen_ns: now,
        backend_id: choice.backend_id,
        hop_ifindex: hop.ifindex,
        hop_dst_mac: hop.dst_mac,
        hop_src_mac: hop.src_mac,
        nat_port_be,
        state: if clock::closes(pkt) {
            FLOW_CLOSING
        } else {
            FLOW_OPEN
        },
        reported_epoch: events::epoch(now),
    };
    HALB_FLOWS
        .insert(key, flow, BPF_ANY as u64)
        .map_err(|_| Verdict::Drop(Drop::MapError))?;
    events::note(ctx, FLOW_EVENT_NEW);
    Ok(())
}

/// Caches a freshly looked-up next hop in the tracked flow.
#[inline(always)]
pub fn remember_hop(key: &FlowKey, hop: &NextHop) {
    if let Some(flow) = HALB_FLOWS.get_ptr_mut(key) {
        // SAFETY: a pointer from a successful lookup; plain integer fields.
        let flow = unsafe { &mut *flow };
        flow.hop_ifindex = hop.ifindex;
        flow.hop_dst_mac = hop.dst_mac;
        flow.hop_src_mac = hop.src_mac;
    }
}
