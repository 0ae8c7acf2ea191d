//! The seam under the dataplane sync: what it reads from and writes into
//! the maps, as a trait. The agent's implementation is the live maps; unit
//! tests use [`MemoryMaps`], so the sync's logic runs without root.

use std::collections::BTreeMap;

use aya::maps::IterableMap as _;
use halb_common::{
    backend::{BACKEND_UNUSED, Backend},
    maps::{MAP_BACKENDS, MAP_RINGS, MAP_SERVICES, MAP_VIPS, MAX_BACKENDS},
    service::{Service, ServiceKey, Vip, VipKey},
};

use super::{
    batch,
    maps::{DatapathMaps, MapsError, read, removed, updated},
};

/// The map operations the sync needs.
pub trait MapWriter {
    /// Every service entry.
    fn services(&self) -> Result<Vec<(ServiceKey, Service)>, MapsError>;
    fn set_service(&mut self, key: ServiceKey, value: Service) -> Result<(), MapsError>;
    /// Removes a service entry; one that is not there is fine.
    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), MapsError>;
    fn vips(&self) -> Result<Vec<VipKey>, MapsError>;
    fn set_vip(&mut self, key: VipKey, value: Vip) -> Result<(), MapsError>;
    fn remove_vip(&mut self, key: &VipKey) -> Result<(), MapsError>;
    /// Every backend slot in use, with its id.
    fn backends(&self) -> Result<Vec<(u32, Backend)>, MapsError>;
    fn set_backend(&mut self, id: u32, value: Backend) -> Result<(), MapsError>;
    /// Ring `ring`'s `size` slots.
    fn ring(&self, ring: u32, size: u32) -> Result<Vec<u32>, MapsError>;
    /// Writes `(slot, backend id)` pairs into ring `ring`, in one batch.
    fn set_ring_slots(
        &mut self,
        ring: u32,
        size: u32,
        slots: &[(u32, u32)],
    ) -> Result<(), MapsError>;
}

fn io_error(map: &'static str, e: std::io::Error) -> MapsError {
    MapsError::Batch { map, source: e }
}

impl MapWriter for DatapathMaps {
    fn services(&self) -> Result<Vec<(ServiceKey, Service)>, MapsError> {
        self.services
            .iter()
            .map(|r| read(MAP_SERVICES, r))
            .collect()
    }

    fn set_service(&mut self, key: ServiceKey, value: Service) -> Result<(), MapsError> {
        updated(MAP_SERVICES, self.services.insert(key, value, 0))
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), MapsError> {
        removed(MAP_SERVICES, self.services.remove(key))
    }

    fn vips(&self) -> Result<Vec<VipKey>, MapsError> {
        self.vips.keys().map(|r| read(MAP_VIPS, r)).collect()
    }

    fn set_vip(&mut self, key: VipKey, value: Vip) -> Result<(), MapsError> {
        updated(MAP_VIPS, self.vips.insert(key, value, 0))
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<(), MapsError> {
        removed(MAP_VIPS, self.vips.remove(key))
    }

    fn backends(&self) -> Result<Vec<(u32, Backend)>, MapsError> {
        // One pass over the whole array; an unused slot is all zero.
        let mut used = Vec::new();
        for id in 0..MAX_BACKENDS {
            let value = read(MAP_BACKENDS, self.backends.get(&id, 0))?;
            if value.state != BACKEND_UNUSED {
                used.push((id, value));
            }
        }
        Ok(used)
    }

    fn set_backend(&mut self, id: u32, value: Backend) -> Result<(), MapsError> {
        updated(MAP_BACKENDS, self.backends.set(id, value, 0))
    }

    fn ring(&self, ring: u32, size: u32) -> Result<Vec<u32>, MapsError> {
        batch::read_u32s(self.rings.map(), ring * size, size).map_err(|e| io_error(MAP_RINGS, e))
    }

    fn set_ring_slots(
        &mut self,
        ring: u32,
        size: u32,
        slots: &[(u32, u32)],
    ) -> Result<(), MapsError> {
        let keys: Vec<u32> = slots.iter().map(|(slot, _)| ring * size + slot).collect();
        let values: Vec<u32> = slots.iter().map(|(_, id)| *id).collect();
        batch::write_u32s(self.rings.map(), &keys, &values).map_err(|e| io_error(MAP_RINGS, e))
    }
}

/// Maps held in memory, for unit tests of the sync; also counts what was
/// written, so a test can say "only the slots that changed".
#[derive(Debug, Default, Clone)]
pub struct MemoryMaps {
    pub services: BTreeMap<ServiceKey, Service>,
    pub vips: BTreeMap<VipKey, Vip>,
    pub backends: BTreeMap<u32, Backend>,
    pub rings: BTreeMap<u32, u32>,
    pub ring_slots_written: usize,
    pub ring_batches: usize,
}

impl MemoryMaps {
    /// What a packet for `key` would see: the live ring's slots.
    pub fn live_ring(&self, key: &ServiceKey, size: u32) -> Vec<u32> {
        let service = self.services[key];
        self.ring(service.ring_id, size).expect("in memory")
    }
}

impl MapWriter for MemoryMaps {
    fn services(&self) -> Result<Vec<(ServiceKey, Service)>, MapsError> {
        Ok(self.services.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn set_service(&mut self, key: ServiceKey, value: Service) -> Result<(), MapsError> {
        self.services.insert(key, value);
        Ok(())
    }
    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), MapsError> {
        self.services.remove(key);
        Ok(())
    }
    fn vips(&self) -> Result<Vec<VipKey>, MapsError> {
        Ok(self.vips.keys().copied().collect())
    }
    fn set_vip(&mut self, key: VipKey, value: Vip) -> Result<(), MapsError> {
        self.vips.insert(key, value);
        Ok(())
    }
    fn remove_vip(&mut self, key: &VipKey) -> Result<(), MapsError> {
        self.vips.remove(key);
        Ok(())
    }
    fn backends(&self) -> Result<Vec<(u32, Backend)>, MapsError> {
        Ok(self
            .backends
            .iter()
            .filter(|(_, b)| b.state != BACKEND_UNUSED)
            .map(|(id, b)| (*id, *b))
            .collect())
    }
    fn set_backend(&mut self, id: u32, value: Backend) -> Result<(), MapsError> {
        self.backends.insert(id, value);
        Ok(())
    }
    fn ring(&self, ring: u32, size: u32) -> Result<Vec<u32>, MapsError> {
        Ok((0..size)
            .map(|slot| *self.rings.get(&(ring * size + slot)).unwrap_or(&0))
            .collect())
    }
    fn set_ring_slots(
        &mut self,
        ring: u32,
        size: u32,
        slots: &[(u32, u32)],
    ) -> Result<(), MapsError> {
        for (slot, id) in slots {
            self.rings.insert(ring * size + slot, *id);
        }
        self.ring_slots_written += slots.len();
        self.ring_batches += 1;
        Ok(())
    }
}

/// One write the sync wants, recorded by [`Recorder`] to be carried out
/// later: a reload prepares every consumer first and writes only once
/// all of them could prepare.
#[derive(Debug, Clone)]
pub enum MapOp {
    SetService(ServiceKey, Service),
    RemoveService(ServiceKey),
    SetVip(VipKey, Vip),
    RemoveVip(VipKey),
    SetBackend(u32, Backend),
    SetRingSlots {
        ring: u32,
        size: u32,
        slots: Vec<(u32, u32)>,
    },
}

impl MapOp {
    pub fn replay(&self, maps: &mut impl MapWriter) -> Result<(), MapsError> {
        match self {
            MapOp::SetService(k, v) => maps.set_service(*k, *v),
            MapOp::RemoveService(k) => maps.remove_service(k),
            MapOp::SetVip(k, v) => maps.set_vip(*k, *v),
            MapOp::RemoveVip(k) => maps.remove_vip(k),
            MapOp::SetBackend(id, v) => maps.set_backend(*id, *v),
            MapOp::SetRingSlots { ring, size, slots } => maps.set_ring_slots(*ring, *size, slots),
        }
    }
}

/// Reads from the maps under it, records writes instead of making them.
pub struct Recorder<'a, M> {
    maps: &'a M,
    pub ops: Vec<MapOp>,
}

impl<'a, M: MapWriter> Recorder<'a, M> {
    pub fn new(maps: &'a M) -> Self {
        Self {
            maps,
            ops: Vec::new(),
        }
    }
}

impl<M: MapWriter> MapWriter for Recorder<'_, M> {
    fn services(&self) -> Result<Vec<(ServiceKey, Service)>, MapsError> {
        self.maps.services()
    }
    fn set_service(&mut self, key: ServiceKey, value: Service) -> Result<(), MapsError> {
        self.ops.push(MapOp::SetService(key, value));
        Ok(())
    }
    fn remove_service(&mut self, key: &ServiceKey) -> Result<(), MapsError> {
        self.ops.push(MapOp::RemoveService(*key));
        Ok(())
    }
    fn vips(&self) -> Result<Vec<VipKey>, MapsError> {
        self.maps.vips()
    }
    fn set_vip(&mut self, key: VipKey, value: Vip) -> Result<(), MapsError> {
        self.ops.push(MapOp::SetVip(key, value));
        Ok(())
    }
    fn remove_vip(&mut self, key: &VipKey) -> Result<(), MapsError> {
        self.ops.push(MapOp::RemoveVip(*key));
        Ok(())
    }
    fn backends(&self) -> Result<Vec<(u32, Backend)>, MapsError> {
        self.maps.backends()
    }
    fn set_backend(&mut self, id: u32, value: Backend) -> Result<(), MapsError> {
        self.ops.push(MapOp::SetBackend(id, value));
        Ok(())
    }
    fn ring(&self, ring: u32, size: u32) -> Result<Vec<u32>, MapsError> {
        self.maps.ring(ring, size)
    }
    fn set_ring_slots(
        &mut self,
        ring: u32,
        size: u32,
        slots: &[(u32, u32)],
    ) -> Result<(), MapsError> {
        self.ops.push(MapOp::SetRingSlots {
            ring,
            size,
            slots: slots.to_vec(),
        });
        Ok(())
    }
}
