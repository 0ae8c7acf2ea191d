//! Flow events for connection sync: a new flow, a flow still in use (once
//! per refresh epoch), a flow closing. The agent reads them from the ring
//! buffer and sends them to its peers; nothing here waits for it.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use halb_common::{
    event::{FLOW_MODE_DSR, FLOW_MODE_FULL_NAT, FLOW_MODE_KEEP_CLIENT, FlowEvent},
    service::{MODE_DSR, SERVICE_F_KEEP_CLIENT_ADDR},
};

use crate::{
    lookup,
    maps::{
        HALB_BACKENDS, HALB_EPOCH_SHIFT, HALB_FLOW_EVENTS_ON, HALB_FLOW_EVTS, HALB_FLOWS,
        HALB_SCR_EVT, HALB_STATS,
    },
    parse::{Packet, eth::EthHdr, ptr_at},
};

/// The low byte of the refresh epoch `now` falls in.
#[inline(always)]
pub fn epoch(now: u64) -> u8 {
    (now >> (HALB_EPOCH_SHIFT.load() & 63)) as u8
}

/// Whether flow events are reported at all (the agent syncs to peers).
#[inline(always)]
pub fn enabled() -> bool {
    HALB_FLOW_EVENTS_ON.load() != 0
}

/// A flow event noted while its packet was handled.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Noted {
    kind: u8,
    client_mac: [u8; 6],
}

/// Notes a flow event of `kind` for [`report`], with the frame's source MAC
/// (the previous hop towards the client), before the frame is rewritten.
#[inline(always)]
pub fn note(ctx: &XdpContext, kind: u8) {
    if !enabled() {
        return;
    }
    let (Some(noted), Some(eth)) = (HALB_SCR_EVT.get_ptr_mut(0), ptr_at::<EthHdr>(ctx, 0)) else {
        return;
    };
    // SAFETY: this CPU's slot of a per-CPU array (XDP does not nest on a
    // CPU); ptr_at checked that a whole EthHdr lies before data_end.
    unsafe {
        (*noted).kind = kind;
        (*noted).client_mac = (*eth).src;
    }
}

/// Reports the flow event `pkt` brought about (`kind`, as noted), unless
/// sync is off; a full ring buffer loses the event (counted), never the
/// packet. The flow and its service are looked up again: only events pay
/// for that, and this frame is a sibling of the forwarding path's.
// verifier: out of line and called after forwarding, so its frame is not
// added to the forwarding path's (512 bytes for the whole call chain); the
// event is written straight into the reserved ring memory.
#[inline(never)]
pub fn report(pkt: &Packet, kind: u8) {
    if !enabled() {
        return;
    }
    let key = lookup::flow_key(pkt);
    let (Some(svc), Some(flow), Some(noted)) = (
        lookup::service(pkt),
        HALB_FLOWS.get_ptr(key),
        HALB_SCR_EVT.get_ptr(0),
    ) else {
        return;
    };
    // SAFETY: pointers from successful lookups; plain integer fields.
    let (flow, noted) = unsafe { (&*flow, &*noted) };
    if noted.kind != kind {
        return;
    }
    let Some(backend) = HALB_BACKENDS.get_ptr(flow.backend_id) else {
        return;
    };
    let Some(mut entry) = HALB_FLOW_EVTS.reserve(0) else {
        count(false);
        return;
    };
    let ev: *mut FlowEvent = entry.as_mut_ptr();
    // SAFETY: `ev` points at the reserved, exclusively owned record;
    // `backend` at a map value (plain integers).
    unsafe {
        if svc.mode == MODE_DSR {
            (*ev).mode = FLOW_MODE_DSR;
            (*ev).snat_be = [0; 4];
        } else if svc.flags & SERVICE_F_KEEP_CLIENT_ADDR != 0 {
            (*ev).mode = FLOW_MODE_KEEP_CLIENT;
            (*ev).snat_be = [0; 4];
        } else {
            (*ev).mode = FLOW_MODE_FULL_NAT;
            (*ev).snat_be = svc.snat_addr_be;
        }
        (*ev).client_mac = noted.client_mac;
        (*ev).key = key;
        (*ev).backend_be = (*backend).addr_be;
        // The precise clock: the agent times the sync lag from it.
        (*ev).time_ns = bpf_ktime_get_ns();
        (*ev).backend_id = flow.backend_id;
        (*ev).backend_port_be = (*backend).port_be;
        (*ev).nat_port_be = flow.nat_port_be;
        (*ev).kind = kind;
        (*ev).backend_family = (*backend).family;
        (*ev).state = flow.state;
        (*ev)._pad = [0; 6];
    }
    entry.submit(0);
    count(true);
}

#[inline(always)]
fn count(sent: bool) {
    let Some(counters) = HALB_STATS.get_ptr_mut(halb_common::maps::STATS_INDEX_RX) else {
        return;
    };
    // SAFETY: per-CPU array slot from a successful lookup; XDP runs
    // without preemption, so only this CPU writes it.
    let counters = unsafe { &mut *counters };
    if sent {
        counters.flow_events += 1;
    } else {
        counters.flow_events_lost += 1;
    }
}
