//! Backends, indexed by a small id that Maglev rings hold.

use crate::addr::AddrBe;

/// `Backend::state`.
/// Slot not in use.
pub const BACKEND_UNUSED: u8 = 0;
/// Takes new and existing flows.
pub const BACKEND_UP: u8 = 1;
/// Out of the ring: no new flows; existing flows keep it.
pub const BACKEND_DRAINING: u8 = 2;
/// Failed: existing flows are moved to another backend.
pub const BACKEND_DOWN: u8 = 3;

/// Value of [`crate::maps::MAP_BACKENDS`] (an array indexed by backend id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub addr_be: AddrBe,
    pub port_be: u16,
    pub family: u8,
    pub state: u8,
    /// DSR: the backend's MAC, when configured; all zero means "ask the
    /// kernel's neighbour table".
    pub mac: [u8; 6],
    /// Id of the service this backend belongs to (a backend id is never
    /// shared by two services), so that a restarted agent can adopt the
    /// ids a previous one gave out instead of renumbering.
    pub service_id: u16,
}
const _: () = assert!(core::mem::size_of::<Backend>() == 28);

#[cfg(feature = "user")]
// SAFETY: repr(C), integer fields and explicit padding only.
unsafe impl aya::Pod for Backend {}
