//! Counters the XDP program keeps per CPU; userspace sums them over CPUs.
//!
//! Every counter struct is all `u64` fields, declared through `counters!`,
//! which also gives it `accumulate` (to sum CPUs) and `values` with
//! `FIELD_NAMES` (for status output and metrics).

/// Declares a `#[repr(C)]` struct of `u64` counters with `accumulate`,
/// `FIELD_NAMES` and `values`.
macro_rules! counters {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident: u64, )+
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: u64, )+
        }

        impl $name {
            /// Names of the fields, in declaration order.
            pub const FIELD_NAMES: &'static [&'static str] = &[$(stringify!($field)),+];

            /// Adds `other` field by field; used to sum per-CPU values.
            pub fn accumulate(&mut self, other: &Self) {
                $( self.$field += other.$field; )+
            }

            /// Field values, in the order of [`Self::FIELD_NAMES`].
            pub fn values(&self) -> [u64; Self::FIELD_NAMES.len()] {
                [$(self.$field),+]
            }
        }

        #[cfg(feature = "user")]
        // SAFETY: repr(C), only u64 fields, so no padding.
        unsafe impl aya::Pod for $name {}
    };
}

counters! {
    /// Packets seen by the XDP program, split by layer-3 protocol, and the
    /// flow events it reported.
    ///
    /// Value of [`crate::maps::MAP_STATS`].
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
        /// Flow events reported to the agent (for connection sync).
        pub flow_events: u64,
        /// Flow events lost because the ring buffer was full.
        pub flow_events_lost: u64,
    }
}
const _: () = assert!(core::mem::size_of::<PacketCounters>() == 9 * 8);

counters! {
    /// Traffic of one service or one backend.
    ///
    /// Value of [`crate::maps::MAP_SERVICE_STATS`] and
    /// [`crate::maps::MAP_BACKEND_STATS`].
    pub struct TrafficCounters {
        pub packets: u64,
        pub bytes: u64,
        /// Flows scheduled (a backend picked for a flow not tracked yet).
        pub new_flows: u64,
    }
}
const _: () = assert!(core::mem::size_of::<TrafficCounters>() == 3 * 8);

counters! {
    /// What the XDP program did with each packet, and why.
    ///
    /// Value of [`crate::maps::MAP_VERDICTS`]. README's "Packet rules"
    /// explains each field.
    pub struct VerdictCounters {
        /// To the kernel: not IPv4/IPv6 (ARP, LLDP...).
        pub pass_not_ip: u64,
        /// To the kernel: IP, but not for a service nor a NAT reply.
        pub pass_not_service: u64,
        /// To the kernel: a layer-7 service, served by the HTTP proxy.
        pub pass_layer7: u64,
        /// To the kernel: IPv6 with an extension header the program does not parse.
        pub pass_ipv6_ext: u64,
        /// To the kernel: ICMP that is not an error about a tracked flow.
        pub pass_icmp: u64,
        /// To the kernel: a fragment, not addressed to a VIP.
        pub pass_fragment: u64,
        /// To the kernel (which drops it): a unicast frame addressed to
        /// another host's MAC, flooded here by a switch.
        pub pass_other_host: u64,
        /// Forwarded to a backend, out of the interface it came in on.
        pub fwd_tx: u64,
        /// Forwarded to a backend through another interface.
        pub fwd_redirect: u64,
        /// A backend's reply, translated back and sent to the client.
        pub reply_tx: u64,
        /// The same, through another interface.
        pub reply_redirect: u64,
        /// An ICMP error about a tracked flow, sent on to its backend.
        pub icmp_to_backend: u64,
        /// Answered with a TCP reset: no backend up, and the service says so.
        pub reset_no_backend: u64,
        /// Dropped: IP header malformed (version, header length, total length).
        pub drop_bad_ip: u64,
        /// Dropped: TCP/UDP/ICMP header truncated or malformed.
        pub drop_bad_l4: u64,
        /// Dropped: a fragment addressed to a VIP (services need whole packets).
        pub drop_fragment: u64,
        /// Dropped: the service has no backend up.
        pub drop_no_backend: u64,
        /// Dropped: no free NAT source port towards this backend.
        pub drop_nat_ports: u64,
        /// Dropped: no route to the backend (or back to the client).
        pub drop_no_route: u64,
        /// Dropped: the next hop's MAC is not known (the agent keeps
        /// backends' neighbour entries resolved).
        pub drop_no_neighbour: u64,
        /// Dropped: a map update failed.
        pub drop_map_error: u64,
        /// Dropped: an ARP request or neighbour solicitation for a VRRP
        /// virtual address whose lease ran out (this node's agent died
        /// as master; the backup holds the address now).
        pub drop_lease_expired: u64,
        /// Dropped (with `[sync]` only): a full-NAT TCP segment without SYN
        /// that no tracked flow knows (its flow's state has not arrived
        /// from the node that made it yet). Scheduled afresh it would get a new NAT port and
        /// a reset from the backend; dropped, it is retransmitted.
        pub drop_mid_flow: u64,
        /// Dropped (with `[sync]` only): a TCP segment to a full-NAT source
        /// address and NAT port that no NAT entry knows (a backend's reply
        /// to a flow whose state has not arrived yet). Passed on, the
        /// kernel would reset the backend's connection; dropped, the
        /// backend retransmits it.
        pub drop_unknown_reply: u64,
    }
}
const _: () = assert!(core::mem::size_of::<VerdictCounters>() == 24 * 8);
