//! Names, sizes and tunables of the maps both sides refer to.
//!
//! Map names are the names of the statics in `halb-ebpf`; the kernel keeps
//! at most 15 bytes of a map's name, so every name here fits in that.

/// The XDP entry point in `halb-ebpf`.
pub const PROGRAM_XDP: &str = "halb_xdp";

/// Per-CPU `PacketCounters` at [`STATS_INDEX_RX`].
pub const MAP_STATS: &str = "HALB_STATS";
/// Per-CPU `VerdictCounters`, one entry.
pub const MAP_VERDICTS: &str = "HALB_VERDICTS";
/// Hash: `ServiceKey` -> `Service`.
pub const MAP_SERVICES: &str = "HALB_SERVICES";
/// Hash: `VipKey` -> `Vip`.
pub const MAP_VIPS: &str = "HALB_VIPS";
/// Array: backend id -> `Backend`.
pub const MAP_BACKENDS: &str = "HALB_BACKENDS";
/// Array: `ring_id * ring_size + slot` -> backend id (Maglev rings).
pub const MAP_RINGS: &str = "HALB_RINGS";
/// LRU hash (per-CPU LRU lists): client-side `FlowKey` -> `Flow`.
pub const MAP_FLOWS: &str = "HALB_FLOWS";
/// LRU hash (per-CPU LRU lists): reply-side `FlowKey` -> `NatEntry`.
pub const MAP_NAT: &str = "HALB_NAT";
/// Per-CPU array: service id -> `TrafficCounters`.
pub const MAP_SERVICE_STATS: &str = "HALB_SVC_STATS";
/// Per-CPU array: backend id -> `TrafficCounters`.
pub const MAP_BACKEND_STATS: &str = "HALB_BE_STATS";
/// Hash: ifindex -> `Interface` (the MAC of each interface the program
/// is attached to).
pub const MAP_INTERFACES: &str = "HALB_IFACES";
/// Hash: `VipKey` (a VRRP virtual address) -> `Lease`.
pub const MAP_LEASES: &str = "HALB_LEASES";

/// Ring buffer of `FlowEvent`s (new flows, refreshes, closes) that the
/// agent syncs to peer nodes.
pub const MAP_FLOW_EVENTS: &str = "HALB_FLOW_EVTS";
/// Ring buffer size in bytes (a power of two): about 37k events.
pub const FLOW_EVENTS_BYTES: u32 = 4 << 20;

/// Every map the agent pins, by name.
pub const PINNED_MAPS: &[&str] = &[
    MAP_STATS,
    MAP_VERDICTS,
    MAP_SERVICES,
    MAP_VIPS,
    MAP_BACKENDS,
    MAP_RINGS,
    MAP_FLOWS,
    MAP_NAT,
    MAP_SERVICE_STATS,
    MAP_BACKEND_STATS,
    MAP_INTERFACES,
    MAP_LEASES,
    MAP_FLOW_EVENTS,
];

/// Default folder in bpffs where the agent pins its maps.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/halb";

/// Index of the counters for packets the XDP program received.
pub const STATS_INDEX_RX: u32 = 0;
/// Number of entries in [`MAP_STATS`] and [`MAP_VERDICTS`].
pub const STATS_ENTRIES: u32 = 1;

/// Compiled-in map sizes; the agent may set others at load time
/// (`EbpfLoader::map_max_entries`), within what the config allows.
pub const MAX_SERVICES: u32 = 64;
/// Interfaces the program can be attached to at once.
pub const MAX_INTERFACES: u32 = 64;
/// VRRP virtual addresses with a lease.
pub const MAX_LEASES: u32 = 256;
pub const MAX_BACKENDS: u32 = 4096;
/// Rings: two per service (one live, one being filled).
pub const MAX_RINGS: u32 = 2 * MAX_SERVICES;
/// Default Maglev ring size (a prime).
pub const DEFAULT_RING_SIZE: u32 = 65537;
pub const RING_ENTRIES: u32 = MAX_RINGS * DEFAULT_RING_SIZE;
pub const MAX_FLOWS: u32 = 262_144;
pub const MAX_NAT: u32 = 262_144;

/// Slot value for "no backend" in a ring.
pub const NO_BACKEND: u32 = u32::MAX;

/// Names of the globals (in the object's .rodata) the agent sets at load.
pub const GLOBAL_RING_SIZE: &str = "HALB_RING_SIZE";
pub const GLOBAL_TCP_TIMEOUT_NS: &str = "HALB_TCP_TIMEOUT_NS";
pub const GLOBAL_TCP_CLOSING_TIMEOUT_NS: &str = "HALB_TCP_CLOSING_TIMEOUT_NS";
pub const GLOBAL_UDP_TIMEOUT_NS: &str = "HALB_UDP_TIMEOUT_NS";
pub const GLOBAL_NAT_PORT_MIN: &str = "HALB_NAT_PORT_MIN";
pub const GLOBAL_NAT_PORT_MAX: &str = "HALB_NAT_PORT_MAX";
/// With sync: the NAT ports of all synced nodes, of which this node's
/// (`HALB_NAT_PORT_MIN..=MAX`) are a share.
pub const GLOBAL_NAT_SHARED_MIN: &str = "HALB_NAT_SHARED_MIN";
pub const GLOBAL_NAT_SHARED_MAX: &str = "HALB_NAT_SHARED_MAX";
/// Nonzero: report flow events (the agent syncs connections to peers).
pub const GLOBAL_FLOW_EVENTS: &str = "HALB_FLOW_EVENTS_ON";
/// Refresh epoch of flow events: `now_ns >> shift`.
pub const GLOBAL_EPOCH_SHIFT: &str = "HALB_EPOCH_SHIFT";

/// Defaults of those globals. Timeouts follow IPVS's (tcp 900 s,
/// tcpfin 120 s is long for a balancer: 10 s here, udp 300 s).
pub const DEFAULT_TCP_TIMEOUT_NS: u64 = 900 * 1_000_000_000;
pub const DEFAULT_TCP_CLOSING_TIMEOUT_NS: u64 = 10 * 1_000_000_000;
pub const DEFAULT_UDP_TIMEOUT_NS: u64 = 300 * 1_000_000_000;
/// Full-NAT source ports; below Linux's default ephemeral range
/// (32768-60999), so they never collide with the node's own connections.
pub const DEFAULT_NAT_PORT_MIN: u16 = 10_000;
pub const DEFAULT_NAT_PORT_MAX: u16 = 32_767;

const _: () = {
    let mut i = 0;
    while i < PINNED_MAPS.len() {
        assert!(PINNED_MAPS[i].len() <= 15);
        i += 1;
    }
};
