//! Counters the XDP program keeps per CPU.

/// Packets seen by the XDP program on one CPU, split by layer-3 protocol.
///
/// Value type of [`crate::maps::MAP_STATS`]; userspace sums it over CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCounters {
    /// Every packet the program ran on.
    pub packets: u64,
    /// Bytes of those packets, from the Ethernet header on.
    pub bytes: u64,
    pub ipv4: u64,
    pub ipv6: u64,
    pub arp: u64,
    /// Any other EtherType, including VLAN-tagged frames.
    pub other_l3: u64,
    /// Frames too short to hold an Ethernet header.
    pub truncated: u64,
}

const _: () = assert!(core::mem::size_of::<PacketCounters>() == 56);

impl PacketCounters {
    /// Adds `other` field by field; used to sum per-CPU values.
    pub fn accumulate(&mut self, other: &Self) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.ipv4 += other.ipv4;
        self.ipv6 += other.ipv6;
        self.arp += other.arp;
        self.other_l3 += other.other_l3;
        self.truncated += other.truncated;
    }
}

// SAFETY: repr(C), only u64 fields, no padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PacketCounters {}
