//! The flow table as sync sees it: install a peer's flow into this node's
//! flow and NAT maps, exactly as this node's datapath would have written
//! it, and dump every live flow for a peer's bulk resync.
//!
//! Peers name backends by address; the [`Directory`] turns them into this
//! node's ids, and says through which interface replies reach clients.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Duration,
};

use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use halb_common::{
    backend::Backend,
    flow::{FLOW_CLOSING, FLOW_OPEN, Flow, FlowKey, NatEntry},
    maps::{MAP_BACKENDS, MAP_FLOWS, MAP_NAT, MAP_SERVICES},
    service::{MODE_DSR, SERVICE_F_KEEP_CLIENT_ADDR, Service, ServiceKey},
};

use super::wire::{FlowMode, FlowRecord, RecordKind};
use crate::dataplane::{
    clock,
    maps::{MapsError, addr_be, ip_from_be, open_pinned_as},
    sync::AppliedService,
};

/// bpf(2)'s update flag: only if the key is absent.
const BPF_NOEXIST: u64 = 1;

/// Where a service's replies leave towards clients: the interface and
/// this node's MAC on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Egress {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

#[derive(Debug, Clone, Default)]
pub struct LocalService {
    pub backends: HashMap<SocketAddr, u32>,
    pub egress: Option<Egress>,
}

/// This node's services and backend ids, rebuilt on every reload.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub services: HashMap<ServiceKey, LocalService>,
    /// `HALB_EPOCH_SHIFT`: installed flows count as reported in the
    /// current epoch, so this node's datapath does not echo them back.
    pub epoch_shift: u8,
    pub tcp_timeout: Duration,
    pub udp_timeout: Duration,
}

impl Directory {
    /// From the services as programmed; `egress` says, for a VIP, where
    /// its clients are.
    pub fn build<'a>(
        services: impl Iterator<Item = &'a AppliedService>,
        egress: impl Fn(IpAddr) -> Option<Egress>,
        epoch_shift: u8,
        tcp_timeout: Duration,
        udp_timeout: Duration,
    ) -> Self {
        let services = services
            .map(|s| {
                let backends = s
                    .backends
                    .iter()
                    .map(|b| (SocketAddr::new(b.config.address, b.config.port), b.id))
                    .collect();
                (
                    s.key,
                    LocalService {
                        backends,
                        egress: egress(s.config.vip),
                    },
                )
            })
            .collect();
        Self {
            services,
            epoch_shift,
            tcp_timeout,
            udp_timeout,
        }
    }

    fn epoch(&self, now_ns: u64) -> u8 {
        (now_ns >> (self.epoch_shift & 63)) as u8
    }
}

/// Why a peer's flow was not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no such service here")]
    NoService,
    #[error("no such backend in the service here")]
    NoBackend,
    #[error("the service has no interface to reach clients")]
    NoEgress,
    #[error("a map update failed")]
    Map,
}

/// Where flows are installed and dumped from: the pinned maps, or a test's.
pub trait FlowTable {
    fn install(&mut self, record: &FlowRecord, directory: &Directory) -> Result<(), Refused>;
    /// Every live flow, as records of `kind` ([`RecordKind::Table`] or
    /// [`RecordKind::Offer`]).
    fn dump(&mut self, directory: &Directory, kind: RecordKind) -> Vec<FlowRecord>;
}

/// The datapath's own maps, opened from their pins.
pub struct PinnedTable {
    flows: BpfHashMap<MapData, FlowKey, Flow>,
    nat: BpfHashMap<MapData, FlowKey, NatEntry>,
    services: BpfHashMap<MapData, ServiceKey, Service>,
    backends: Array<MapData, Backend>,
}

impl PinnedTable {
    pub fn open(pin_dir: &Path) -> Result<Self, MapsError> {
        Ok(Self {
            flows: open_pinned_as(pin_dir, MAP_FLOWS)?,
            nat: open_pinned_as(pin_dir, MAP_NAT)?,
            services: open_pinned_as(pin_dir, MAP_SERVICES)?,
            backends: open_pinned_as(pin_dir, MAP_BACKENDS)?,
        })
    }
}

/// The map entries a record stands for on this node.
pub struct Entries {
    pub flow_key: FlowKey,
    pub flow: Flow,
    /// The reply's key and entry (NAT modes).
    pub nat: Option<(FlowKey, NatEntry)>,
}

fn sock_be(addr: SocketAddr) -> (halb_common::addr::AddrBe, u16, u8) {
    let (a, family) = addr_be(addr.ip());
    (a, addr.port().to_be(), family)
}

/// Translates `record` into this node's entries, seen at `now_ns`
/// (CLOCK_MONOTONIC_COARSE).
pub fn entries(
    record: &FlowRecord,
    directory: &Directory,
    now_ns: u64,
) -> Result<Entries, Refused> {
    let (vip_be, vip_port_be, family) = sock_be(record.vip);
    let (client_be, client_port_be, _) = sock_be(record.client);
    let service_key = ServiceKey {
        addr_be: vip_be,
        port_be: vip_port_be,
        proto: record.proto,
        family,
    };
    let service = directory
        .services
        .get(&service_key)
        .ok_or(Refused::NoService)?;
    let backend_id = *service
        .backends
        .get(&record.backend)
        .ok_or(Refused::NoBackend)?;
    let last_seen_ns = now_ns.saturating_sub(u64::from(record.age_ms) * 1_000_000);
    let state = if record.closing {
        FLOW_CLOSING
    } else {
        FLOW_OPEN
    };
    let flow_key = FlowKey {
        src_be: client_be,
        dst_be: vip_be,
        sport_be: client_port_be,
        dport_be: vip_port_be,
        proto: record.proto,
        family,
        _pad: [0; 2],
    };
    let nat_port_be = match record.mode {
        FlowMode::FullNat { snat } => snat.port().to_be(),
        _ => 0,
    };
    let flow = Flow {
        last_seen_ns,
        backend_id,
        // No cached hop: the first packet here looks the route up.
        hop_ifindex: 0,
        hop_dst_mac: [0; 6],
        hop_src_mac: [0; 6],
        nat_port_be,
        state,
        reported_epoch: directory.epoch(now_ns),
    };
    let (backend_be, backend_port_be, backend_family) = sock_be(record.backend);
    let reply_to = match record.mode {
        FlowMode::FullNat { snat } => Some(sock_be(snat)),
        FlowMode::KeepClient => Some((client_be, client_port_be, family)),
        FlowMode::Dsr => None,
    };
    let nat = match reply_to {
        None => None,
        Some((dst_be, dport_be, _)) => {
            let egress = service.egress.ok_or(Refused::NoEgress)?;
            let key = FlowKey {
                src_be: backend_be,
                dst_be,
                sport_be: backend_port_be,
                dport_be,
                proto: record.proto,
                family: backend_family,
                _pad: [0; 2],
            };
            let entry = NatEntry {
                last_seen_ns,
                client_be,
                vip_be,
                client_port_be,
                vip_port_be,
                backend_id,
                client_ifindex: egress.ifindex,
                client_mac: record.client_mac,
                balancer_mac: egress.mac,
                state,
                _pad: [0; 7],
            };
            Some((key, entry))
        }
    };
    Ok(Entries {
        flow_key,
        flow,
        nat,
    })
}

impl FlowTable for PinnedTable {
    fn install(&mut self, record: &FlowRecord, directory: &Directory) -> Result<(), Refused> {
        let e = entries(record, directory, clock::coarse_ns())?;
        if record.kind == RecordKind::Offer {
            // Only where this node knows nothing of the flow: what it has
            // is newer than a starting peer's pinned copy.
            if self.flows.get(&e.flow_key, 0).is_ok() {
                return Ok(());
            }
            let _ = self.flows.insert(e.flow_key, e.flow, BPF_NOEXIST);
            if let Some((key, entry)) = e.nat {
                let _ = self.nat.insert(key, entry, BPF_NOEXIST);
            }
            return Ok(());
        }
        // The reply's entry first: the flow's first packet here must find
        // the way back already in place.
        if let Some((key, entry)) = e.nat {
            self.nat.insert(key, entry, 0).map_err(|_| Refused::Map)?;
        }
        self.flows
            .insert(e.flow_key, e.flow, 0)
            .map_err(|_| Refused::Map)
    }

    fn dump(&mut self, directory: &Directory, kind: RecordKind) -> Vec<FlowRecord> {
        let now = clock::coarse_ns();
        let mut backends: HashMap<u32, Option<Backend>> = HashMap::new();
        let mut services: HashMap<ServiceKey, Option<Service>> = HashMap::new();
        let flows: Vec<(FlowKey, Flow)> = self.flows.iter().filter_map(Result::ok).collect();
        let mut out = Vec::with_capacity(flows.len());
        for (key, flow) in flows {
            let age = Duration::from_nanos(now.saturating_sub(flow.last_seen_ns));
            let timeout = if key.proto == libc::IPPROTO_TCP as u8 {
                directory.tcp_timeout
            } else {
                directory.udp_timeout
            };
            if age > timeout {
                continue;
            }
            let Some(backend) = *backends
                .entry(flow.backend_id)
                .or_insert_with(|| self.backends.get(&flow.backend_id, 0).ok())
            else {
                continue;
            };
            let service_key = ServiceKey {
                addr_be: key.dst_be,
                port_be: key.dport_be,
                proto: key.proto,
                family: key.family,
            };
            let Some(service) = *services
                .entry(service_key)
                .or_insert_with(|| self.services.get(&service_key, 0).ok())
            else {
                continue;
            };
            let backend_addr = SocketAddr::new(
                ip_from_be(&backend.addr_be, backend.family),
                u16::from_be(backend.port_be),
            );
            let mode = if service.mode == MODE_DSR {
                FlowMode::Dsr
            } else if service.flags & SERVICE_F_KEEP_CLIENT_ADDR != 0 {
                FlowMode::KeepClient
            } else {
                FlowMode::FullNat {
                    snat: SocketAddr::new(
                        ip_from_be(&service.snat_addr_be, backend.family),
                        u16::from_be(flow.nat_port_be),
                    ),
                }
            };
            let client = SocketAddr::new(
                ip_from_be(&key.src_be, key.family),
                u16::from_be(key.sport_be),
            );
            let reply_key = |dst_be, dport_be| FlowKey {
                src_be: backend.addr_be,
                dst_be,
                sport_be: backend.port_be,
                dport_be,
                proto: key.proto,
                family: backend.family,
                _pad: [0; 2],
            };
            let client_mac = match mode {
                FlowMode::FullNat { .. } => self
                    .nat
                    .get(&reply_key(service.snat_addr_be, flow.nat_port_be), 0)
                    .ok()
                    .map(|n| n.client_mac),
                FlowMode::KeepClient => self
                    .nat
                    .get(&reply_key(key.src_be, key.sport_be), 0)
                    .ok()
                    .map(|n| n.client_mac),
                FlowMode::Dsr => Some([0; 6]),
            };
            // A NAT flow without its reply entry cannot be forwarded anyway.
            let Some(client_mac) = client_mac else {
                continue;
            };
            out.push(FlowRecord {
                kind,
                mode,
                closing: flow.state == FLOW_CLOSING,
                proto: key.proto,
                client,
                vip: SocketAddr::new(
                    ip_from_be(&key.dst_be, key.family),
                    u16::from_be(key.dport_be),
                ),
                backend: backend_addr,
                client_mac,
                age_ms: age.as_millis().min(u32::MAX as u128) as u32,
            });
        }
        out
    }
}
