//! Names of the programs and maps both sides refer to, and where they are pinned.
//!
//! Map names are the names of the statics in `halb-ebpf`; the kernel keeps at
//! most 15 bytes of a map's name, so every name here fits in that.

/// The XDP entry point in `halb-ebpf`.
pub const PROGRAM_XDP: &str = "halb_xdp";

/// Per-CPU packet counters, one [`crate::stats::PacketCounters`] at
/// [`STATS_INDEX_RX`].
pub const MAP_STATS: &str = "HALB_STATS";

/// Every map the agent pins, in the order it pins them.
pub const PINNED_MAPS: &[&str] = &[MAP_STATS];

/// Default folder in bpffs where the agent pins its maps.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/halb";

/// Index of the counters for packets the XDP program received.
pub const STATS_INDEX_RX: u32 = 0;
/// Number of entries in [`MAP_STATS`].
pub const STATS_ENTRIES: u32 = 1;

const _: () = assert!(MAP_STATS.len() <= 15);
