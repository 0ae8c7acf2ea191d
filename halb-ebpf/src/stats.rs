//! Per-CPU counters: packets by layer 3, verdicts by reason, traffic by
//! service and by backend.

use aya_ebpf::helpers::bpf_get_smp_processor_id;
use halb_common::maps::STATS_INDEX_RX;

use crate::{
    maps::{HALB_BE_STATS, HALB_STATS, HALB_SVC_STATS, HALB_VERDICTS},
    parse::eth::L3,
    verdict::{Direction, Drop, Egress, Pass, Verdict},
};

#[derive(PartialEq, Eq)]
pub enum FirstOnCpu {
    Yes,
    No,
}

/// Counts one received packet of `len` bytes; says whether it was the first
/// this CPU ever counted (the map outlives agent restarts, so this is once
/// per CPU per datapath, not per agent).
#[inline(always)]
pub fn count_rx(len: u64, l3: L3) -> FirstOnCpu {
    let Some(counters) = HALB_STATS.get_ptr_mut(STATS_INDEX_RX) else {
        return FirstOnCpu::No;
    };
    // SAFETY: the pointer comes from a successful lookup in a per-CPU array,
    // so it is valid and only this CPU writes it; XDP runs without preemption.
    let counters = unsafe { &mut *counters };
    let first = if counters.packets == 0 {
        FirstOnCpu::Yes
    } else {
        FirstOnCpu::No
    };
    counters.packets += 1;
    counters.bytes += len;
    match l3 {
        L3::Ipv4 => counters.ipv4 += 1,
        L3::Ipv6 => counters.ipv6 += 1,
        L3::Arp => counters.arp += 1,
        L3::Other => counters.other_l3 += 1,
        L3::Truncated => counters.truncated += 1,
    }
    first
}

/// Counts `verdict` under its reason.
#[inline(always)]
pub fn count_verdict(verdict: &Verdict) {
    let Some(counters) = HALB_VERDICTS.get_ptr_mut(STATS_INDEX_RX) else {
        return;
    };
    // SAFETY: per-CPU array slot from a successful lookup; see count_rx.
    let c = unsafe { &mut *counters };
    let field = match verdict {
        Verdict::Pass(Pass::NotIp) => &mut c.pass_not_ip,
        Verdict::Pass(Pass::NotService) => &mut c.pass_not_service,
        Verdict::Pass(Pass::Layer7) => &mut c.pass_layer7,
        Verdict::Pass(Pass::Ipv6Ext) => &mut c.pass_ipv6_ext,
        Verdict::Pass(Pass::Icmp) => &mut c.pass_icmp,
        Verdict::Pass(Pass::Fragment) => &mut c.pass_fragment,
        Verdict::Pass(Pass::OtherHost) => &mut c.pass_other_host,
        Verdict::Forward(Direction::ToBackend, Egress::Tx) => &mut c.fwd_tx,
        Verdict::Forward(Direction::ToBackend, Egress::Redirect(_)) => &mut c.fwd_redirect,
        Verdict::Forward(Direction::Reply, Egress::Tx) => &mut c.reply_tx,
        Verdict::Forward(Direction::Reply, Egress::Redirect(_)) => &mut c.reply_redirect,
        Verdict::Forward(Direction::IcmpToBackend, _) => &mut c.icmp_to_backend,
        Verdict::Forward(Direction::Refused, _) => &mut c.reset_no_backend,
        Verdict::Drop(Drop::BadIp) => &mut c.drop_bad_ip,
        Verdict::Drop(Drop::BadL4) => &mut c.drop_bad_l4,
        Verdict::Drop(Drop::Fragment) => &mut c.drop_fragment,
        Verdict::Drop(Drop::NoBackend) => &mut c.drop_no_backend,
        Verdict::Drop(Drop::NatPorts) => &mut c.drop_nat_ports,
        Verdict::Drop(Drop::MidFlow) => &mut c.drop_mid_flow,
        Verdict::Drop(Drop::UnknownReply) => &mut c.drop_unknown_reply,
        Verdict::Drop(Drop::NoRoute) => &mut c.drop_no_route,
        Verdict::Drop(Drop::NoNeighbour) => &mut c.drop_no_neighbour,
        Verdict::Drop(Drop::MapError) => &mut c.drop_map_error,
        Verdict::Drop(Drop::LeaseExpired) => &mut c.drop_lease_expired,
    };
    *field += 1;
}

/// Counts a packet of `len` bytes for service `service_id` and backend
/// `backend_id`; `new_flow` when it started a flow.
#[inline(always)]
pub fn count_traffic(service_id: u32, backend_id: u32, len: u64, new_flow: bool) {
    let new = new_flow as u64;
    if let Some(c) = HALB_SVC_STATS.get_ptr_mut(service_id) {
        // SAFETY: per-CPU array slot from a successful lookup; see count_rx.
        let c = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += len;
        c.new_flows += new;
    }
    if let Some(c) = HALB_BE_STATS.get_ptr_mut(backend_id) {
        // SAFETY: as above.
        let c = unsafe { &mut *c };
        c.packets += 1;
        c.bytes += len;
        c.new_flows += new;
    }
}

#[inline(always)]
pub fn cpu() -> u32 {
    // SAFETY: a helper with no arguments and no side effects.
    unsafe { bpf_get_smp_processor_id() }
}
