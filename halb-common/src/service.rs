//! Virtual services: what the XDP program looks up for each packet.

use crate::addr::AddrBe;

/// Key of [`crate::maps::MAP_SERVICES`]: destination address, port and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub addr_be: AddrBe,
    pub port_be: u16,
    /// [`crate::addr::PROTO_TCP`] or [`crate::addr::PROTO_UDP`].
    pub proto: u8,
    /// [`crate::addr::FAMILY_IPV4`] or [`crate::addr::FAMILY_IPV6`].
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<ServiceKey>() == 20);

/// Forwarding modes (`Service::mode`).
pub const MODE_NAT: u8 = 0;
pub const MODE_DSR: u8 = 1;

/// `Service::flags` bits.
/// Hand packets to the kernel stack (the userspace HTTP proxy serves them).
pub const SERVICE_F_LAYER7: u8 = 1 << 0;
/// Pick the backend from the source address alone.
pub const SERVICE_F_SOURCE_AFFINITY: u8 = 1 << 1;
/// NAT mode: rewrite only the destination; the client's address reaches the
/// backend, whose route back must go through the balancer.
pub const SERVICE_F_KEEP_CLIENT_ADDR: u8 = 1 << 2;
/// TCP: when no backend is up, answer with a reset instead of dropping.
pub const SERVICE_F_RESET_WHEN_DOWN: u8 = 1 << 3;

/// Value of [`crate::maps::MAP_SERVICES`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Index into the per-service counters.
    pub id: u32,
    /// Which Maglev ring in [`crate::maps::MAP_RINGS`] is live. Userspace
    /// fills a spare ring, then switches this one field.
    pub ring_id: u32,
    pub mode: u8,
    pub flags: u8,
    pub _pad: [u8; 2],
    /// NAT mode without `SERVICE_F_KEEP_CLIENT_ADDR`: the balancer's own
    /// address that backends see as the source (family of the backends).
    pub snat_addr_be: AddrBe,
}
const _: () = assert!(core::mem::size_of::<Service>() == 28);

/// Key of [`crate::maps::MAP_VIPS`]: every address some service listens on,
/// so fragments and ICMP errors to a VIP can be recognised without ports,
/// and every full-NAT source address, so replies to it can.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipKey {
    pub addr_be: AddrBe,
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<VipKey>() == 20);

/// Value of [`crate::maps::MAP_VIPS`]. An address is a VIP (some service
/// listens on it), a full-NAT source address (some service's
/// `snat_address`), or both.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vip {
    /// How many services listen on this address.
    pub services: u16,
    /// How many full-NAT services use it as their source address.
    pub snat_services: u16,
}
const _: () = assert!(core::mem::size_of::<Vip>() == 4);

/// Value of [`crate::maps::MAP_LEASES`], keyed by a VRRP virtual
/// address: this node answers ARP and neighbour solicitations for the
/// address only while its agent, as VRRP master, keeps renewing the lease.
/// An agent killed with the address still on its interface stops claiming
/// it once the lease runs out, as the backup takes over.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns) until which it holds.
    pub expires_ns: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: a single integer field.
    unsafe impl aya::Pod for super::Lease {}
    // SAFETY: repr(C), integer fields and explicit padding only.
    unsafe impl aya::Pod for super::ServiceKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Service {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::VipKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Vip {}
}
