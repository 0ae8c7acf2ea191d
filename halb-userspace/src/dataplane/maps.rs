//! Typed access to the maps the XDP program shares with userspace, opened
//! from their pins so that anything (the agent, `halb counters`, the tests)
//! reads the same live datapath.

use std::path::{Path, PathBuf};

use aya::maps::{Map, MapData, MapError, PerCpuArray};
use halb_common::{
    maps::{MAP_STATS, STATS_INDEX_RX},
    stats::PacketCounters,
};

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
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
}

/// Path at which the map `name` is pinned under `pin_dir`.
pub fn pin_path(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join(name)
}

/// Packets the XDP program received, summed over every CPU.
pub fn read_rx_counters(pin_dir: &Path) -> Result<PacketCounters, MapsError> {
    let path = pin_path(pin_dir, MAP_STATS);
    let data = MapData::from_pin(&path).map_err(|source| MapsError::OpenPin {
        path: path.clone(),
        source,
    })?;
    let stats: PerCpuArray<MapData, PacketCounters> =
        Map::PerCpuArray(data)
            .try_into()
            .map_err(|source| MapsError::WrongType {
                map: MAP_STATS,
                source,
            })?;
    let per_cpu = stats
        .get(&STATS_INDEX_RX, 0)
        .map_err(|source| MapsError::Read {
            map: MAP_STATS,
            source,
        })?;
    let mut total = PacketCounters::default();
    for cpu in per_cpu.iter() {
        total.accumulate(cpu);
    }
    Ok(total)
}
