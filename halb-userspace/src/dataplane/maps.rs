//! Typed handles on every map the XDP program shares with userspace, taken
//! from a freshly loaded program or opened from their pins, so the agent,
//! `halb counters` and the tests all read and write the same live datapath.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray},
};
use halb_common::{
    backend::Backend,
    flow::{Flow, FlowKey, NatEntry},
    interface::Interface,
    maps::{
        MAP_BACKEND_STATS, MAP_BACKENDS, MAP_FLOWS, MAP_INTERFACES, MAP_LEASES, MAP_NAT, MAP_RINGS,
        MAP_SERVICE_STATS, MAP_SERVICES, MAP_STATS, MAP_VERDICTS, MAP_VIPS, STATS_INDEX_RX,
    },
    service::{Lease, Service, ServiceKey, Vip, VipKey},
    stats::{PacketCounters, TrafficCounters, VerdictCounters},
};

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error("map {map} is missing from the XDP object")]
    Missing { map: &'static str },
    #[error("cannot open pinned map {}: {source}", path.display())]
    OpenPin {
        path: PathBuf,
        #[source]
        source: MapError,
    },
    #[error("map {map} is not of the expected type: {source}")]
    WrongType {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("cannot read map {map}: {source}")]
    Read {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("cannot read or write map {map} in a batch: {source}")]
    Batch {
        map: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot update map {map}: {source}")]
    Update {
        map: &'static str,
        #[source]
        source: MapError,
    },
}

/// Path at which the map `name` is pinned under `pin_dir`.
pub fn pin_path(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join(name)
}

/// Every shared map, typed.
pub struct DatapathMaps {
    pub services: HashMap<MapData, ServiceKey, Service>,
    pub vips: HashMap<MapData, VipKey, Vip>,
    pub backends: Array<MapData, Backend>,
    pub rings: Array<MapData, u32>,
    pub flows: HashMap<MapData, FlowKey, Flow>,
    pub nat: HashMap<MapData, FlowKey, NatEntry>,
    pub packet_stats: PerCpuArray<MapData, PacketCounters>,
    pub verdicts: PerCpuArray<MapData, VerdictCounters>,
    pub service_stats: PerCpuArray<MapData, TrafficCounters>,
    pub backend_stats: PerCpuArray<MapData, TrafficCounters>,
    pub interfaces: HashMap<MapData, u32, Interface>,
    pub leases: HashMap<MapData, VipKey, Lease>,
}

impl DatapathMaps {
    /// Takes the maps out of a loaded object (the program keeps using them).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, MapsError> {
        let take = |name: &'static str| ebpf.take_map(name).ok_or(MapsError::Missing { map: name });
        Self::from_maps(take)
    }

    /// Opens the maps a running agent pinned under `pin_dir`.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, MapsError> {
        Self::from_maps(|name| open_pinned(pin_dir, name))
    }

    fn from_maps(
        mut get: impl FnMut(&'static str) -> Result<Map, MapsError>,
    ) -> Result<Self, MapsError> {
        Ok(Self {
            services: typed(MAP_SERVICES, get(MAP_SERVICES)?)?,
            vips: typed(MAP_VIPS, get(MAP_VIPS)?)?,
            backends: typed(MAP_BACKENDS, get(MAP_BACKENDS)?)?,
            rings: typed(MAP_RINGS, get(MAP_RINGS)?)?,
            flows: typed(MAP_FLOWS, get(MAP_FLOWS)?)?,
            nat: typed(MAP_NAT, get(MAP_NAT)?)?,
            packet_stats: typed(MAP_STATS, get(MAP_STATS)?)?,
            verdicts: typed(MAP_VERDICTS, get(MAP_VERDICTS)?)?,
            service_stats: typed(MAP_SERVICE_STATS, get(MAP_SERVICE_STATS)?)?,
            backend_stats: typed(MAP_BACKEND_STATS, get(MAP_BACKEND_STATS)?)?,
            interfaces: typed(MAP_INTERFACES, get(MAP_INTERFACES)?)?,
            leases: typed(MAP_LEASES, get(MAP_LEASES)?)?,
        })
    }

    /// Packets the XDP program received, summed over CPUs.
    pub fn packet_counters(&self) -> Result<PacketCounters, MapsError> {
        let mut total = PacketCounters::default();
        for cpu in read(MAP_STATS, self.packet_stats.get(&STATS_INDEX_RX, 0))?.iter() {
            total.accumulate(cpu);
        }
        Ok(total)
    }

    /// Verdicts by reason, summed over CPUs.
    pub fn verdict_counters(&self) -> Result<VerdictCounters, MapsError> {
        let mut total = VerdictCounters::default();
        for cpu in read(MAP_VERDICTS, self.verdicts.get(&STATS_INDEX_RX, 0))?.iter() {
            total.accumulate(cpu);
        }
        Ok(total)
    }

    /// Traffic of service `id`, summed over CPUs.
    pub fn service_counters(&self, id: u32) -> Result<TrafficCounters, MapsError> {
        sum_traffic(MAP_SERVICE_STATS, &self.service_stats, id)
    }

    /// Traffic of backend `id`, summed over CPUs.
    pub fn backend_counters(&self, id: u32) -> Result<TrafficCounters, MapsError> {
        sum_traffic(MAP_BACKEND_STATS, &self.backend_stats, id)
    }
}

fn sum_traffic(
    map: &'static str,
    array: &PerCpuArray<MapData, TrafficCounters>,
    id: u32,
) -> Result<TrafficCounters, MapsError> {
    let mut total = TrafficCounters::default();
    for cpu in read(map, array.get(&id, 0))?.iter() {
        total.accumulate(cpu);
    }
    Ok(total)
}

/// Turns a read's result into this module's error.
pub fn read<T>(map: &'static str, result: Result<T, MapError>) -> Result<T, MapsError> {
    result.map_err(|source| MapsError::Read { map, source })
}

/// Turns an update's result into this module's error.
pub fn updated(map: &'static str, result: Result<(), MapError>) -> Result<(), MapsError> {
    result.map_err(|source| MapsError::Update { map, source })
}

/// Turns a removal's result into this module's error; a key that was not
/// there is fine (aya reports the kernel's ENOENT as a failed syscall, not
/// as `KeyNotFound`).
pub fn removed(map: &'static str, result: Result<(), MapError>) -> Result<(), MapsError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => updated(map, other),
    }
}

fn open_pinned(pin_dir: &Path, name: &'static str) -> Result<Map, MapsError> {
    let path = pin_path(pin_dir, name);
    let data = MapData::from_pin(&path).map_err(|source| MapsError::OpenPin {
        path: path.clone(),
        source,
    })?;
    Map::from_map_data(data).map_err(|source| MapsError::WrongType { map: name, source })
}

/// The map `name` pinned under `pin_dir`, typed: for a part of the agent
/// that keeps its own handle on one map (VRRP leases, connection sync).
pub fn open_pinned_as<T>(pin_dir: &Path, name: &'static str) -> Result<T, MapsError>
where
    T: TryFrom<Map, Error = MapError>,
{
    typed(name, open_pinned(pin_dir, name)?)
}

fn typed<T>(map: &'static str, raw: Map) -> Result<T, MapsError>
where
    T: TryFrom<Map, Error = MapError>,
{
    T::try_from(raw).map_err(|source| MapsError::WrongType { map, source })
}

/// An address as the maps hold it (network order words) and its family.
pub fn addr_be(ip: std::net::IpAddr) -> (halb_common::addr::AddrBe, u8) {
    use halb_common::addr::{FAMILY_IPV4, FAMILY_IPV6};
    match ip {
        std::net::IpAddr::V4(v4) => ([u32::from_ne_bytes(v4.octets()), 0, 0, 0], FAMILY_IPV4),
        std::net::IpAddr::V6(v6) => {
            let o = v6.octets();
            let word = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([word(0), word(4), word(8), word(12)], FAMILY_IPV6)
        }
    }
}

/// The inverse of [`addr_be`].
pub fn ip_from_be(addr: &halb_common::addr::AddrBe, family: u8) -> std::net::IpAddr {
    if family == halb_common::addr::FAMILY_IPV4 {
        std::net::Ipv4Addr::from(addr[0].to_ne_bytes()).into()
    } else {
        let mut o = [0u8; 16];
        for (i, w) in addr.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        std::net::Ipv6Addr::from(o).into()
    }
}
