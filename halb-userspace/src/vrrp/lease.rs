//! The leases of VRRP virtual addresses in the datapath (see the XDP
//! program's lease.rs): a master renews them with every advertisement, so
//! an agent that dies with its addresses still on the interface stops
//! claiming them (its kernel's ARP and neighbour answers are dropped)
//! once the lease runs out, as the backup takes over.

use std::{
    net::IpAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::maps::{HashMap, MapData};
use halb_common::{
    maps::MAP_LEASES,
    service::{Lease, VipKey},
};

use crate::dataplane::{
    clock::monotonic_ns,
    maps::{MapsError, addr_be, open_pinned_as},
};

/// A handle on the pinned lease map, shared by the VRRP instances.
#[derive(Clone)]
pub struct Leases(Arc<Mutex<HashMap<MapData, VipKey, Lease>>>);

impl Leases {
    /// Opens the lease map pinned under `pin_dir`.
    pub fn open(pin_dir: &Path) -> Result<Self, MapsError> {
        let map = open_pinned_as(pin_dir, MAP_LEASES)?;
        Ok(Self(Arc::new(Mutex::new(map))))
    }

    /// Holds `addresses` for `duration` from now.
    pub fn renew(&self, addresses: &[IpAddr], duration: Duration) {
        let lease = Lease {
            expires_ns: monotonic_ns().saturating_add(duration.as_nanos() as u64),
        };
        let mut map = self.0.lock().expect("lease map lock");
        for addr in addresses {
            if let Err(e) = map.insert(key(*addr), lease, 0) {
                tracing::warn!(%addr, error = %e, "cannot renew the address's lease");
            }
        }
    }

    /// Gives `addresses` up: nothing answers for them here any more.
    pub fn end(&self, addresses: &[IpAddr]) {
        let expired = Lease { expires_ns: 0 };
        let mut map = self.0.lock().expect("lease map lock");
        for addr in addresses {
            // Kept as expired, not removed: the kernel still has the
            // address until it is removed, and must not answer for it.
            let _ = map.insert(key(*addr), expired, 0);
        }
    }

    /// A starting agent's view: each of `virtual_addresses` holds no lease
    /// until its instance, as master, takes one (a crashed predecessor's
    /// may still be on the interface, and its kernel must not answer for
    /// them meanwhile), and an address no longer virtual is none of the
    /// datapath's concern. Expired first, then forgotten: there is no
    /// moment in which a virtual address has no entry.
    pub fn reset(&self, virtual_addresses: &[IpAddr]) {
        let expired = Lease { expires_ns: 0 };
        let mut map = self.0.lock().expect("lease map lock");
        let wanted: Vec<VipKey> = virtual_addresses.iter().map(|a| key(*a)).collect();
        for k in &wanted {
            let _ = map.insert(*k, expired, 0);
        }
        let keys: Vec<VipKey> = map.keys().filter_map(Result::ok).collect();
        for k in keys.iter().filter(|k| !wanted.contains(k)) {
            let _ = map.remove(k);
        }
    }
}

fn key(addr: IpAddr) -> VipKey {
    let (addr_be, family) = addr_be(addr);
    VipKey {
        addr_be,
        family,
        _pad: [0; 3],
    }
}
