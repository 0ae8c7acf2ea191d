//! Per-CPU packet counters.

use aya_ebpf::helpers::bpf_get_smp_processor_id;
use halb_common::maps::STATS_INDEX_RX;

use crate::{maps::HALB_STATS, parse::eth::L3};

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

#[inline(always)]
pub fn cpu() -> u32 {
    // SAFETY: a helper with no arguments and no side effects.
    unsafe { bpf_get_smp_processor_id() }
}
