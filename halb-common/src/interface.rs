//! The interfaces the XDP program is attached to, as it needs to know them.

/// Value of [`crate::maps::MAP_INTERFACES`], keyed by ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    /// The interface's own MAC: a unicast frame addressed to another MAC
    /// (a switch floods those while it relearns a MAC, as in a failover)
    /// is not this node's to forward.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Interface>() == 8);

#[cfg(feature = "user")]
// SAFETY: repr(C), integer fields and explicit padding only.
unsafe impl aya::Pod for Interface {}
