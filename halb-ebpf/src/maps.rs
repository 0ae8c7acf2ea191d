//! The maps the XDP program reads and writes, declared with BTF so that
//! `bpftool map dump` prints keys and values by field name, and the
//! globals the agent sets at load time.

use crate::parse::Packet;
use aya_ebpf::{
    Global,
    bindings::{BPF_F_NO_COMMON_LRU, bpf_fib_lookup as FibParams},
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use halb_common::{
    backend::Backend,
    event::FlowEvent,
    flow::{Flow, FlowKey, NatEntry},
    interface::Interface,
    maps::{
        DEFAULT_NAT_PORT_MAX, DEFAULT_NAT_PORT_MIN, DEFAULT_RING_SIZE,
        DEFAULT_TCP_CLOSING_TIMEOUT_NS, DEFAULT_TCP_TIMEOUT_NS, DEFAULT_UDP_TIMEOUT_NS,
        FLOW_EVENTS_BYTES, MAX_BACKENDS, MAX_FLOWS, MAX_INTERFACES, MAX_LEASES, MAX_NAT,
        MAX_SERVICES, RING_ENTRIES, STATS_ENTRIES,
    },
    service::{Lease, Service, ServiceKey, Vip, VipKey},
    stats::{PacketCounters, TrafficCounters, VerdictCounters},
};

/// Per-CPU LRU lists: no lock shared by all CPUs on the hot path.
const LRU_FLAGS: usize = BPF_F_NO_COMMON_LRU as usize;

#[btf_map]
pub static HALB_STATS: PerCpuArray<PacketCounters, { STATS_ENTRIES as usize }> = PerCpuArray::new();

#[btf_map]
pub static HALB_VERDICTS: PerCpuArray<VerdictCounters, { STATS_ENTRIES as usize }> =
    PerCpuArray::new();

#[btf_map]
pub static HALB_SERVICES: HashMap<ServiceKey, Service, { MAX_SERVICES as usize }> = HashMap::new();

#[btf_map]
pub static HALB_VIPS: HashMap<VipKey, Vip, { MAX_SERVICES as usize }> = HashMap::new();

#[btf_map]
pub static HALB_BACKENDS: Array<Backend, { MAX_BACKENDS as usize }> = Array::new();

#[btf_map]
pub static HALB_RINGS: Array<u32, { RING_ENTRIES as usize }> = Array::new();

#[btf_map]
pub static HALB_FLOWS: LruHashMap<FlowKey, Flow, { MAX_FLOWS as usize }, LRU_FLAGS> =
    LruHashMap::new();

#[btf_map]
pub static HALB_NAT: LruHashMap<FlowKey, NatEntry, { MAX_NAT as usize }, LRU_FLAGS> =
    LruHashMap::new();

#[btf_map]
pub static HALB_SVC_STATS: PerCpuArray<TrafficCounters, { MAX_SERVICES as usize }> =
    PerCpuArray::new();

#[btf_map]
pub static HALB_BE_STATS: PerCpuArray<TrafficCounters, { MAX_BACKENDS as usize }> =
    PerCpuArray::new();

#[btf_map]
pub static HALB_IFACES: HashMap<u32, Interface, { MAX_INTERFACES as usize }> = HashMap::new();

#[btf_map]
pub static HALB_LEASES: HashMap<VipKey, Lease, { MAX_LEASES as usize }> = HashMap::new();

#[btf_map]
pub static HALB_FLOW_EVTS: RingBuf<FlowEvent, { FLOW_EVENTS_BYTES as usize }> = RingBuf::new();

/// Per-CPU scratch space for the parsed packet and the route lookup's
/// argument (not pinned: each loaded program has its own).
// verifier: kept off the stack, whose 512 bytes the whole call chain shares.
#[btf_map]
pub static HALB_SCR_PKT: PerCpuArray<Packet, 1> = PerCpuArray::new();
#[btf_map]
pub static HALB_SCR_FIB: PerCpuArray<FibParams, 1> = PerCpuArray::new();
#[btf_map]
pub static HALB_SCR_NAT: PerCpuArray<NatEntry, 1> = PerCpuArray::new();
/// The flow event a packet brought about, noted before the frame is
/// rewritten (its source MAC) and reported once it is on its way.
#[btf_map]
pub static HALB_SCR_EVT: PerCpuArray<crate::events::Noted, 1> = PerCpuArray::new();

/// Slots per Maglev ring (a prime).
#[unsafe(no_mangle)]
pub static HALB_RING_SIZE: Global<u32> = Global::new(DEFAULT_RING_SIZE);
#[unsafe(no_mangle)]
pub static HALB_TCP_TIMEOUT_NS: Global<u64> = Global::new(DEFAULT_TCP_TIMEOUT_NS);
#[unsafe(no_mangle)]
pub static HALB_TCP_CLOSING_TIMEOUT_NS: Global<u64> = Global::new(DEFAULT_TCP_CLOSING_TIMEOUT_NS);
#[unsafe(no_mangle)]
pub static HALB_UDP_TIMEOUT_NS: Global<u64> = Global::new(DEFAULT_UDP_TIMEOUT_NS);
#[unsafe(no_mangle)]
pub static HALB_NAT_PORT_MIN: Global<u16> = Global::new(DEFAULT_NAT_PORT_MIN);
#[unsafe(no_mangle)]
pub static HALB_NAT_PORT_MAX: Global<u16> = Global::new(DEFAULT_NAT_PORT_MAX);
#[unsafe(no_mangle)]
pub static HALB_NAT_SHARED_MIN: Global<u16> = Global::new(DEFAULT_NAT_PORT_MIN);
#[unsafe(no_mangle)]
pub static HALB_NAT_SHARED_MAX: Global<u16> = Global::new(DEFAULT_NAT_PORT_MAX);
#[unsafe(no_mangle)]
pub static HALB_FLOW_EVENTS_ON: Global<u8> = Global::new(0);
#[unsafe(no_mangle)]
pub static HALB_EPOCH_SHIFT: Global<u8> = Global::new(33);
