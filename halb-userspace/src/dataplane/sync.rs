//! Makes the maps say what the config says: services, their backends and
//! their Maglev rings. Changes are applied as differences, so services and
//! backends that stay keep their ids, their counters and their flows.
//!
//! A ring is never edited while the XDP program reads it: the new table is
//! written into the service's spare ring, then the service entry, one map
//! element updated atomically, switches to it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use halb_common::{
    addr::{PROTO_TCP, PROTO_UDP},
    backend::{BACKEND_DOWN, BACKEND_DRAINING, BACKEND_UNUSED, BACKEND_UP, Backend},
    maps::{MAP_BACKENDS, MAP_RINGS, MAP_SERVICES, MAP_VIPS, MAX_BACKENDS, MAX_SERVICES},
    service::{
        MODE_DSR, MODE_NAT, SERVICE_F_KEEP_CLIENT_ADDR, SERVICE_F_LAYER7,
        SERVICE_F_RESET_WHEN_DOWN, SERVICE_F_SOURCE_AFFINITY, Service, ServiceKey, Vip, VipKey,
    },
};

use super::{
    maglev,
    maps::{DatapathMaps, MapsError, addr_be, updated},
};
use crate::config::validate::{Affinity, AllDown, BackendConfig, Mode, Protocol, ServiceConfig};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error("no free {what} id: at most {max}")]
    IdsExhausted { what: &'static str, max: u32 },
    #[error("no service named {0:?}")]
    UnknownService(String),
    #[error("service {service:?} has no backend {backend}")]
    UnknownBackend { service: String, backend: String },
}

/// Health and admin state of a backend, as the datapath sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    /// In the ring: new and existing flows.
    Up,
    /// Out of the ring; existing flows stay.
    Draining,
    /// Out of the ring; existing flows move elsewhere.
    Down,
}

impl BackendState {
    fn raw(self) -> u8 {
        match self {
            BackendState::Up => BACKEND_UP,
            BackendState::Draining => BACKEND_DRAINING,
            BackendState::Down => BACKEND_DOWN,
        }
    }
}

/// What is in the maps for one service.
#[derive(Debug, Clone)]
pub struct AppliedService {
    pub id: u32,
    pub config: ServiceConfig,
    pub key: ServiceKey,
    pub value: Service,
    pub backends: Vec<AppliedBackend>,
    table: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct AppliedBackend {
    pub id: u32,
    pub config: BackendConfig,
    pub state: BackendState,
}

/// The agent's record of what it wrote into the maps.
pub struct Sync {
    ring_size: u32,
    services: BTreeMap<String, AppliedService>,
}

impl Sync {
    pub fn new(ring_size: u32) -> Self {
        Self {
            ring_size,
            services: BTreeMap::new(),
        }
    }

    pub fn services(&self) -> impl Iterator<Item = &AppliedService> {
        self.services.values()
    }

    pub fn service(&self, name: &str) -> Option<&AppliedService> {
        self.services.get(name)
    }

    /// Brings the maps to `wanted`: adds, changes and removes services and
    /// backends, rebuilding only the rings whose backend set changed.
    pub fn apply(
        &mut self,
        maps: &mut DatapathMaps,
        wanted: &[ServiceConfig],
    ) -> Result<(), SyncError> {
        let wanted_names: BTreeSet<&str> = wanted.iter().map(|s| s.name.as_str()).collect();
        let removed: Vec<String> = self
            .services
            .keys()
            .filter(|name| !wanted_names.contains(name.as_str()))
            .cloned()
            .collect();
        for name in removed {
            self.remove(maps, &name)?;
        }
        for config in wanted {
            let changed_key = self
                .services
                .get(&config.name)
                .is_some_and(|s| s.key != service_key(config));
            if changed_key {
                // Another VIP, port or protocol: a different service.
                self.remove(maps, &config.name)?;
            }
            self.upsert(maps, config)?;
        }
        // Entries no longer configured (e.g. left by a previous agent).
        let keys: Vec<ServiceKey> = maps.services.keys().filter_map(Result::ok).collect();
        let live: HashSet<ServiceKey> = self.services.values().map(|s| s.key).collect();
        for key in keys.into_iter().filter(|k| !live.contains(k)) {
            updated(MAP_SERVICES, maps.services.remove(&key))?;
        }
        self.write_vips(maps)
    }

    /// Sets one backend's state and republishes its service's ring.
    pub fn set_backend_state(
        &mut self,
        maps: &mut DatapathMaps,
        service: &str,
        backend: std::net::SocketAddr,
        state: BackendState,
    ) -> Result<(), SyncError> {
        let ring_size = self.ring_size;
        let applied = self
            .services
            .get_mut(service)
            .ok_or_else(|| SyncError::UnknownService(service.to_owned()))?;
        let b = applied
            .backends
            .iter_mut()
            .find(|b| b.config.address == backend.ip() && b.config.port == backend.port())
            .ok_or_else(|| SyncError::UnknownBackend {
                service: service.to_owned(),
                backend: backend.to_string(),
            })?;
        b.state = state;
        let (id, value) = (b.id, backend_value(&b.config, state));
        // Never let the live ring name a backend the datapath would refuse:
        // one coming up is marked up before the ring takes it in; one going
        // away leaves the ring before it is marked.
        if state == BackendState::Up {
            updated(MAP_BACKENDS, maps.backends.set(id, value, 0))?;
            publish_ring(maps, applied, ring_size)
        } else {
            publish_ring(maps, applied, ring_size)?;
            updated(MAP_BACKENDS, maps.backends.set(id, value, 0))?;
            Ok(())
        }
    }

    fn upsert(&mut self, maps: &mut DatapathMaps, config: &ServiceConfig) -> Result<(), SyncError> {
        let ring_size = self.ring_size;
        let id = match self.services.get(&config.name) {
            Some(s) => s.id,
            None => self.free_service_id()?,
        };
        let previous = self.services.remove(&config.name);
        let mut used = self.used_backend_ids();
        let mut backends = Vec::new();
        for b in &config.backends {
            let kept = previous.as_ref().and_then(|p| {
                p.backends
                    .iter()
                    .find(|old| old.config.address == b.address && old.config.port == b.port)
            });
            let (bid, state) = match kept {
                Some(old) => (old.id, old.state),
                None => (
                    free_id(&mut used, MAX_BACKENDS, "backend")?,
                    BackendState::Up,
                ),
            };
            used.insert(bid);
            updated(
                MAP_BACKENDS,
                maps.backends.set(bid, backend_value(b, state), 0),
            )?;
            backends.push(AppliedBackend {
                id: bid,
                config: b.clone(),
                state,
            });
        }
        let key = service_key(config);
        // Rings 2*id and 2*id+1 belong to this service; keep the live one,
        // also when it was a previous agent's (adopted maps): the new table
        // must go into the ring packets are not reading.
        let live_ring = match &previous {
            Some(p) => p.value.ring_id,
            None => match maps.services.get(&key, 0) {
                Ok(existing) if existing.ring_id / 2 == id => existing.ring_id,
                _ => 2 * id,
            },
        };
        let value = Service {
            id,
            ring_id: live_ring,
            mode: match config.mode {
                Mode::Dsr => MODE_DSR,
                Mode::Nat { .. } | Mode::NatKeepClient => MODE_NAT,
            },
            flags: service_flags(config),
            _pad: [0; 2],
            snat_addr_be: match config.mode {
                Mode::Nat { snat_address } => addr_be(snat_address).0,
                _ => [0; 4],
            },
        };
        let mut applied = AppliedService {
            id,
            config: config.clone(),
            key,
            value,
            backends,
            table: previous
                .as_ref()
                .map(|p| p.table.clone())
                .unwrap_or_default(),
        };
        publish_ring(maps, &mut applied, ring_size)?;
        // Backends the service no longer has: after the switch, no ring names them.
        if let Some(previous) = previous {
            for old in previous.backends {
                if !applied.backends.iter().any(|b| b.id == old.id) {
                    let unused = Backend {
                        state: BACKEND_UNUSED,
                        ..Backend::default()
                    };
                    updated(MAP_BACKENDS, maps.backends.set(old.id, unused, 0))?;
                }
            }
        }
        self.services.insert(config.name.clone(), applied);
        Ok(())
    }

    fn remove(&mut self, maps: &mut DatapathMaps, name: &str) -> Result<(), SyncError> {
        let Some(service) = self.services.remove(name) else {
            return Ok(());
        };
        match maps.services.remove(&service.key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(source) => {
                return Err(MapsError::Update {
                    map: MAP_SERVICES,
                    source,
                }
                .into());
            }
        }
        for b in service.backends {
            let unused = Backend::default();
            updated(MAP_BACKENDS, maps.backends.set(b.id, unused, 0))?;
        }
        Ok(())
    }

    fn write_vips(&self, maps: &mut DatapathMaps) -> Result<(), SyncError> {
        let mut counts: HashMap<VipKey, u32> = HashMap::new();
        for s in self.services.values() {
            let key = VipKey {
                addr_be: s.key.addr_be,
                family: s.key.family,
                _pad: [0; 3],
            };
            *counts.entry(key).or_default() += 1;
        }
        let existing: Vec<VipKey> = maps.vips.keys().filter_map(Result::ok).collect();
        for key in existing.iter().filter(|k| !counts.contains_key(k)) {
            updated(MAP_VIPS, maps.vips.remove(key))?;
        }
        for (key, services) in counts {
            updated(MAP_VIPS, maps.vips.insert(key, Vip { services }, 0))?;
        }
        Ok(())
    }

    fn free_service_id(&self) -> Result<u32, SyncError> {
        let mut used: BTreeSet<u32> = self.services.values().map(|s| s.id).collect();
        free_id(&mut used, MAX_SERVICES, "service")
    }

    fn used_backend_ids(&self) -> BTreeSet<u32> {
        self.services
            .values()
            .flat_map(|s| s.backends.iter().map(|b| b.id))
            .collect()
    }
}

fn free_id(used: &mut BTreeSet<u32>, max: u32, what: &'static str) -> Result<u32, SyncError> {
    let id = (0..max)
        .find(|id| !used.contains(id))
        .ok_or(SyncError::IdsExhausted { what, max })?;
    used.insert(id);
    Ok(id)
}

/// Rebuilds the service's Maglev table from its backends that are up; when
/// it differs from the live one, writes it into the spare ring and switches.
/// Always (re)writes the service entry, which carries the live ring.
fn publish_ring(
    maps: &mut DatapathMaps,
    service: &mut AppliedService,
    ring_size: u32,
) -> Result<(), SyncError> {
    let entries: Vec<maglev::Entry> = service
        .backends
        .iter()
        .filter(|b| b.state == BackendState::Up)
        .map(|b| maglev::Entry {
            identity: maglev::identity(&addr_bytes(&b.config), b.config.port),
            weight: b.config.weight,
            id: b.id,
        })
        .collect();
    let table = maglev::build(&entries, ring_size);
    if table != service.table {
        let live = service.value.ring_id;
        let spare = if live == 2 * service.id {
            live + 1
        } else {
            2 * service.id
        };
        let base = spare * ring_size;
        for (slot, backend_id) in table.iter().enumerate() {
            updated(
                MAP_RINGS,
                maps.rings.set(base + slot as u32, *backend_id, 0),
            )?;
        }
        service.value.ring_id = spare;
        service.table = table;
    }
    updated(
        MAP_SERVICES,
        maps.services.insert(service.key, service.value, 0),
    )?;
    Ok(())
}

fn addr_bytes(b: &BackendConfig) -> Vec<u8> {
    match b.address {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn service_key(config: &ServiceConfig) -> ServiceKey {
    let (addr_be, family) = addr_be(config.vip);
    ServiceKey {
        addr_be,
        port_be: config.port.to_be(),
        proto: match config.protocol {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        },
        family,
    }
}

fn service_flags(config: &ServiceConfig) -> u8 {
    let mut flags = 0;
    if config.affinity == Affinity::Source {
        flags |= SERVICE_F_SOURCE_AFFINITY;
    }
    if config.mode == Mode::NatKeepClient {
        flags |= SERVICE_F_KEEP_CLIENT_ADDR;
    }
    if config.when_all_down == AllDown::Reset {
        flags |= SERVICE_F_RESET_WHEN_DOWN;
    }
    if config.http.is_some() {
        // The XDP program passes its packets to the kernel, where the
        // HTTP proxy listens.
        flags |= SERVICE_F_LAYER7;
    }
    flags
}

fn backend_value(config: &BackendConfig, state: BackendState) -> Backend {
    let (addr_be, family) = addr_be(config.address);
    Backend {
        addr_be,
        port_be: config.port.to_be(),
        family,
        state: state.raw(),
        mac: config.mac.unwrap_or([0; 6]),
        _pad: [0; 2],
    }
}
