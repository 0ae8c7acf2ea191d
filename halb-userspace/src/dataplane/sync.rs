//! Makes the maps say what the config says: services, their backends and
//! their Maglev rings. Changes are applied as differences, so services and
//! backends that stay keep their ids, their counters and their flows.
//!
//! Ids outlive the agent: at start the sync adopts what the pinned maps
//! hold (service ids by service key, backend ids by owning service and
//! address, both rings' contents), so neither a reload nor a restart
//! renumbers anything a tracked flow points at. A freed id is reused last.
//!
//! A ring is never edited while the XDP program reads it: the new table is
//! written into the service's spare ring (only the slots where the spare
//! differs, in one batch), then the service entry, one map element updated
//! atomically, switches to it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use halb_common::{
    addr::{AddrBe, PROTO_TCP, PROTO_UDP},
    backend::{BACKEND_DOWN, BACKEND_DRAINING, BACKEND_UP, Backend},
    maps::{MAX_BACKENDS, MAX_SERVICES},
    service::{
        MODE_DSR, MODE_NAT, SERVICE_F_KEEP_CLIENT_ADDR, SERVICE_F_LAYER7,
        SERVICE_F_RESET_WHEN_DOWN, SERVICE_F_SOURCE_AFFINITY, Service, ServiceKey, Vip, VipKey,
    },
};

use super::{
    maglev,
    maps::{MapsError, addr_be, ip_from_be},
    writer::{MapOp, MapWriter, Recorder},
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// In the ring: new and existing flows.
    Up,
    /// Out of the ring; existing flows stay.
    Draining,
    /// Out of the ring; existing flows move elsewhere.
    Down,
}

impl BackendState {
    /// As `halb status` prints it.
    pub fn name(self) -> &'static str {
        match self {
            BackendState::Up => "up",
            BackendState::Draining => "draining",
            BackendState::Down => "down",
        }
    }

    fn raw(self) -> u8 {
        match self {
            BackendState::Up => BACKEND_UP,
            BackendState::Draining => BACKEND_DRAINING,
            BackendState::Down => BACKEND_DOWN,
        }
    }

    fn from_raw(raw: u8) -> Self {
        match raw {
            BACKEND_DRAINING => BackendState::Draining,
            BACKEND_DOWN => BackendState::Down,
            _ => BackendState::Up,
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
    /// The table the live ring holds.
    table: Vec<u32>,
    /// What the spare ring holds, when known: only slots that differ from
    /// it are written when it becomes the live one.
    spare: Option<Vec<u32>>,
    /// [`table_digest`] of the live table.
    pub digest: String,
}

#[derive(Debug, Clone)]
pub struct AppliedBackend {
    pub id: u32,
    pub config: BackendConfig,
    pub state: BackendState,
}

/// A service a previous agent left in the pinned maps, not yet matched
/// with the config.
#[derive(Debug, Clone)]
struct Adopted {
    value: Service,
    backends: Vec<(u32, Backend)>,
    table: Vec<u32>,
    spare: Vec<u32>,
}

/// The agent's record of what it wrote into the maps.
#[derive(Clone)]
pub struct Sync {
    ring_size: u32,
    services: BTreeMap<String, AppliedService>,
    adopted: HashMap<ServiceKey, Adopted>,
    /// Where the search for a free backend id starts: just past the last
    /// one given out, so an id freed by a reload is reused last.
    next_backend_id: u32,
}

impl Sync {
    /// A sync for empty maps.
    pub fn new(ring_size: u32) -> Self {
        Self {
            ring_size,
            services: BTreeMap::new(),
            adopted: HashMap::new(),
            next_backend_id: 0,
        }
    }

    /// A sync that starts from what `maps` already hold (pinned by a
    /// previous agent): the next [`Sync::apply`] keeps every id, ring and
    /// backend state that the config still names.
    pub fn adopt(maps: &impl MapWriter, ring_size: u32) -> Result<Self, SyncError> {
        let mut sync = Self::new(ring_size);
        let backends = maps.backends()?;
        sync.next_backend_id =
            backends.iter().map(|(id, _)| id + 1).max().unwrap_or(0) % MAX_BACKENDS;
        for (key, value) in maps.services()? {
            let live = value.ring_id;
            let spare = if live == 2 * value.id {
                live + 1
            } else {
                2 * value.id
            };
            let adopted = Adopted {
                value,
                backends: backends
                    .iter()
                    .filter(|(_, b)| u32::from(b.service_id) == value.id)
                    .copied()
                    .collect(),
                table: maps.ring(live, ring_size)?,
                spare: maps.ring(spare, ring_size)?,
            };
            sync.adopted.insert(key, adopted);
        }
        Ok(sync)
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
        maps: &mut impl MapWriter,
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
        // What a previous agent left that the config no longer names.
        for (key, adopted) in std::mem::take(&mut self.adopted) {
            maps.remove_service(&key)?;
            for (id, _) in adopted.backends {
                maps.set_backend(id, Backend::default())?;
            }
        }
        let live: HashSet<ServiceKey> = self.services.values().map(|s| s.key).collect();
        for (key, _) in maps.services()? {
            if !live.contains(&key) {
                maps.remove_service(&key)?;
            }
        }
        self.write_vips(maps)
    }

    /// Works out what [`Sync::apply`] would write for `wanted`, writing
    /// nothing: everything that can refuse (ids) refuses here.
    pub fn prepare(
        &self,
        maps: &impl MapWriter,
        wanted: &[ServiceConfig],
    ) -> Result<PreparedSync, SyncError> {
        let mut next = self.clone();
        let mut recorder = Recorder::new(maps);
        next.apply(&mut recorder, wanted)?;
        Ok(PreparedSync {
            next,
            ops: recorder.ops,
        })
    }

    /// Writes what `prepared` worked out and takes its record as this one.
    pub fn commit(
        &mut self,
        maps: &mut impl MapWriter,
        prepared: PreparedSync,
    ) -> Result<(), SyncError> {
        for op in &prepared.ops {
            op.replay(maps)?;
        }
        *self = prepared.next;
        Ok(())
    }

    /// Sets one backend's state and republishes its service's ring.
    pub fn set_backend_state(
        &mut self,
        maps: &mut impl MapWriter,
        service: &str,
        backend: std::net::SocketAddr,
        state: BackendState,
    ) -> Result<(), SyncError> {
        let ring_size = self.ring_size;
        let applied = self
            .services
            .get_mut(service)
            .ok_or_else(|| SyncError::UnknownService(service.to_owned()))?;
        let service_id = applied.id;
        let b = applied
            .backends
            .iter_mut()
            .find(|b| b.config.address == backend.ip() && b.config.port == backend.port())
            .ok_or_else(|| SyncError::UnknownBackend {
                service: service.to_owned(),
                backend: backend.to_string(),
            })?;
        b.state = state;
        let (id, value) = (b.id, backend_value(&b.config, state, service_id));
        // Never let the live ring name a backend the datapath would refuse:
        // one coming up is marked up before the ring takes it in; one going
        // away leaves the ring before it is marked.
        if state == BackendState::Up {
            maps.set_backend(id, value)?;
            publish_ring(maps, applied, ring_size)
        } else {
            publish_ring(maps, applied, ring_size)?;
            maps.set_backend(id, value)?;
            Ok(())
        }
    }

    /// Backends a previous agent left draining, by service and address:
    /// the operator's drain outlives a restart.
    pub fn draining(&self) -> Vec<(String, std::net::SocketAddr)> {
        self.services
            .values()
            .flat_map(|s| {
                s.backends
                    .iter()
                    .filter(|b| b.state == BackendState::Draining)
                    .map(|b| {
                        (
                            s.config.name.clone(),
                            std::net::SocketAddr::new(b.config.address, b.config.port),
                        )
                    })
            })
            .collect()
    }

    fn upsert(
        &mut self,
        maps: &mut impl MapWriter,
        config: &ServiceConfig,
    ) -> Result<(), SyncError> {
        let ring_size = self.ring_size;
        let key = service_key(config);
        let previous = match self.services.remove(&config.name) {
            Some(p) => Some(p),
            None => self
                .adopted
                .remove(&key)
                .map(|a| adopted_service(a, key, config)),
        };
        let id = match &previous {
            Some(p) => p.id,
            None => self.free_service_id()?,
        };
        // Every id some ring may still name is taken: other services',
        // adopted ones', and this service's own until its ring switches.
        let mut used = self.used_backend_ids();
        if let Some(p) = &previous {
            used.extend(p.backends.iter().map(|b| b.id));
        }
        let mut backends = Vec::new();
        for b in &config.backends {
            let kept = previous.as_ref().and_then(|p| {
                p.backends
                    .iter()
                    .find(|old| old.config.address == b.address && old.config.port == b.port)
            });
            let (bid, state) = match kept {
                Some(old) => (old.id, old.state),
                None => {
                    let bid = free_id(&used, self.next_backend_id, MAX_BACKENDS, "backend")?;
                    self.next_backend_id = (bid + 1) % MAX_BACKENDS;
                    (bid, BackendState::Up)
                }
            };
            used.insert(bid);
            maps.set_backend(bid, backend_value(b, state, id))?;
            backends.push(AppliedBackend {
                id: bid,
                config: b.clone(),
                state,
            });
        }
        // Rings 2*id and 2*id+1 belong to this service; the new table must
        // go into the one packets are not reading.
        let value = Service {
            id,
            ring_id: previous.as_ref().map_or(2 * id, |p| p.value.ring_id),
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
        let (table, spare) = match &previous {
            Some(p) => (p.table.clone(), p.spare.clone()),
            None => (Vec::new(), None),
        };
        let mut applied = AppliedService {
            id,
            config: config.clone(),
            key,
            value,
            backends,
            table,
            spare,
            digest: String::new(),
        };
        publish_ring(maps, &mut applied, ring_size)?;
        // Backends the service no longer has: after the switch, no ring names them.
        if let Some(previous) = previous {
            for old in previous.backends {
                if !applied.backends.iter().any(|b| b.id == old.id) {
                    maps.set_backend(old.id, Backend::default())?;
                }
            }
        }
        self.services.insert(config.name.clone(), applied);
        Ok(())
    }

    fn remove(&mut self, maps: &mut impl MapWriter, name: &str) -> Result<(), SyncError> {
        let Some(service) = self.services.remove(name) else {
            return Ok(());
        };
        maps.remove_service(&service.key)?;
        for b in service.backends {
            maps.set_backend(b.id, Backend::default())?;
        }
        Ok(())
    }

    /// Every VIP, with how many services listen on it, and every full-NAT
    /// source address, with how many services use it.
    fn write_vips(&self, maps: &mut impl MapWriter) -> Result<(), SyncError> {
        let mut counts: HashMap<VipKey, Vip> = HashMap::new();
        let key = |(addr_be, family): (AddrBe, u8)| VipKey {
            addr_be,
            family,
            _pad: [0; 3],
        };
        for s in self.services.values() {
            counts
                .entry(key((s.key.addr_be, s.key.family)))
                .or_default()
                .services += 1;
            if let Mode::Nat { snat_address } = s.config.mode {
                counts
                    .entry(key(addr_be(snat_address)))
                    .or_default()
                    .snat_services += 1;
            }
        }
        for key in maps.vips()?.iter().filter(|k| !counts.contains_key(k)) {
            maps.remove_vip(key)?;
        }
        for (key, vip) in counts {
            maps.set_vip(key, vip)?;
        }
        Ok(())
    }

    fn free_service_id(&self) -> Result<u32, SyncError> {
        let used: BTreeSet<u32> = self
            .services
            .values()
            .map(|s| s.id)
            .chain(self.adopted.values().map(|a| a.value.id))
            .collect();
        free_id(&used, 0, MAX_SERVICES, "service")
    }

    fn used_backend_ids(&self) -> BTreeSet<u32> {
        self.services
            .values()
            .flat_map(|s| s.backends.iter().map(|b| b.id))
            .chain(
                self.adopted
                    .values()
                    .flat_map(|a| a.backends.iter().map(|(id, _)| *id)),
            )
            .collect()
    }
}

/// The writes a reload will make, and the record after them.
pub struct PreparedSync {
    next: Sync,
    ops: Vec<MapOp>,
}

/// An adopted service as if this agent had applied it: its backends that
/// the config still names keep their ids and states.
fn adopted_service(adopted: Adopted, key: ServiceKey, config: &ServiceConfig) -> AppliedService {
    let backends = adopted
        .backends
        .iter()
        .map(|(id, b)| AppliedBackend {
            id: *id,
            // Only the address and port are compared with the config's.
            config: BackendConfig {
                address: ip_from_be(&b.addr_be, b.family),
                port: u16::from_be(b.port_be),
                weight: 0,
                mac: None,
                check: None,
            },
            state: BackendState::from_raw(b.state),
        })
        .collect();
    AppliedService {
        id: adopted.value.id,
        config: config.clone(),
        key,
        value: adopted.value,
        backends,
        table: adopted.table,
        spare: Some(adopted.spare),
        digest: String::new(),
    }
}

/// The first free id from `start` on, wrapping around below `max`.
fn free_id(
    used: &BTreeSet<u32>,
    start: u32,
    max: u32,
    what: &'static str,
) -> Result<u32, SyncError> {
    (start..max)
        .chain(0..start)
        .find(|id| !used.contains(id))
        .ok_or(SyncError::IdsExhausted { what, max })
}

/// Rebuilds the service's Maglev table from its backends that are up; when
/// it differs from the live one, writes it into the spare ring and switches.
/// Always (re)writes the service entry, which carries the live ring.
fn publish_ring(
    maps: &mut impl MapWriter,
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
    if table != service.table || service.digest.is_empty() {
        service.digest = table_digest(&table, &service.backends);
    }
    if table != service.table {
        let live = service.value.ring_id;
        let spare = if live == 2 * service.id {
            live + 1
        } else {
            2 * service.id
        };
        let changed: Vec<(u32, u32)> = match &service.spare {
            Some(old) if old.len() == table.len() => table
                .iter()
                .zip(old)
                .enumerate()
                .filter(|(_, (new, old))| new != old)
                .map(|(slot, (new, _))| (slot as u32, *new))
                .collect(),
            _ => table
                .iter()
                .enumerate()
                .map(|(slot, id)| (slot as u32, *id))
                .collect(),
        };
        if !changed.is_empty() {
            maps.set_ring_slots(spare, ring_size, &changed)?;
        }
        service.value.ring_id = spare;
        service.spare = Some(std::mem::replace(&mut service.table, table));
    }
    maps.set_service(service.key, service.value)?;
    Ok(())
}

/// A digest of a Maglev table by what each slot names (the backend's
/// address and port, not its id, which is this node's own): nodes with the
/// same backends up show the same digest, and a flow moved between them
/// keeps its backend. FNV-1a, 64 bits: a comparison, not a signature.
pub fn table_digest(table: &[u32], backends: &[AppliedBackend]) -> String {
    let identities: HashMap<u32, Vec<u8>> = backends
        .iter()
        .map(|b| {
            let mut bytes = addr_bytes(&b.config);
            bytes.extend_from_slice(&b.config.port.to_be_bytes());
            (b.id, bytes)
        })
        .collect();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for id in table {
        match identities.get(id) {
            Some(identity) => eat(identity),
            None => eat(&[0xff]),
        }
    }
    format!("{hash:016x}")
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

fn backend_value(config: &BackendConfig, state: BackendState, service_id: u32) -> Backend {
    let (addr_be, family) = addr_be(config.address);
    Backend {
        addr_be,
        port_be: config.port.to_be(),
        family,
        state: state.raw(),
        mac: config.mac.unwrap_or([0; 6]),
        service_id: service_id as u16,
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
