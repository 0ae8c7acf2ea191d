//! The maps the XDP program reads and writes, declared with BTF so that
//! `bpftool map dump` prints keys and values by field name.

use aya_ebpf::{btf_maps::PerCpuArray, macros::btf_map};
use halb_common::{maps::STATS_ENTRIES, stats::PacketCounters};

#[btf_map]
pub static HALB_STATS: PerCpuArray<PacketCounters, { STATS_ENTRIES as usize }> = PerCpuArray::new();
