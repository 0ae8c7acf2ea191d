//! Loads the embedded XDP object with the agent's settings, pins its maps
//! (adopting maps already pinned), and attaches it to interfaces.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::MapError,
    programs::{
        ProgramError, Xdp, XdpMode as AyaXdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use aya_log::EbpfLogger;
use halb_common::event::{MAX_EPOCH_SHIFT, MIN_EPOCH_SHIFT};
use halb_common::interface::Interface;
use halb_common::maps::{
    GLOBAL_EPOCH_SHIFT, GLOBAL_FLOW_EVENTS, GLOBAL_NAT_PORT_MAX, GLOBAL_NAT_PORT_MIN,
    GLOBAL_NAT_SHARED_MAX, GLOBAL_NAT_SHARED_MIN, GLOBAL_RING_SIZE, GLOBAL_TCP_CLOSING_TIMEOUT_NS,
    GLOBAL_TCP_TIMEOUT_NS, GLOBAL_UDP_TIMEOUT_NS, MAP_FLOW_EVENTS, MAP_INTERFACES, MAP_RINGS,
    MAX_RINGS, PINNED_MAPS, PROGRAM_XDP,
};
use tokio::io::{Interest, unix::AsyncFd};

use super::{
    bpffs,
    maps::{DatapathMaps, MapsError, pin_path, updated},
};
use crate::config::validate::{Datapath, DatapathLogLevel, SyncConfig, XdpMode};

/// The XDP object halb-userspace's build.rs built from halb-ebpf.
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/halb-xdp"));

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "this halb was built without its XDP program (AYA_BUILD_SKIP): rebuild with `cargo xtask run`"
    )]
    NoObject,
    #[error(transparent)]
    Bpffs(#[from] bpffs::BpffsError),
    #[error("pin_dir {} is not on bpffs: put it under {}", path.display(), bpffs::BPFFS_ROOT)]
    PinDirNotBpffs { path: PathBuf },
    #[error("cannot create pin_dir {}: {source}", path.display())]
    CreatePinDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot load the XDP object: {0}")]
    Load(#[source] Box<EbpfError>),
    #[error(
        "the maps pinned in {} were made for maglev_table_size {found}, not {wanted}: stop halb and remove that folder, or set maglev_table_size = {found}",
        pin_dir.display()
    )]
    RingSizeChanged {
        pin_dir: PathBuf,
        found: u32,
        wanted: u32,
    },
    #[error("cannot read map information: {0}")]
    MapInfo(#[source] MapError),
    #[error("program {PROGRAM_XDP} is missing from the XDP object")]
    MissingProgram,
    #[error("cannot load program {PROGRAM_XDP} into the kernel: {0}")]
    LoadProgram(#[source] ProgramError),
    #[error("cannot attach XDP to {interface} in {mode:?} mode: {source}")]
    Attach {
        interface: String,
        mode: XdpMode,
        #[source]
        source: ProgramError,
    },
    #[error("cannot read interface {interface}'s index and MAC: {source}")]
    Describe {
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot manage the XDP link: {0}")]
    Link(String),
    #[error("cannot read the XDP program's log ring buffer: {0}")]
    Logger(String),
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error("cannot remove pinned map {}: {source}", path.display())]
    Unpin {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// How to load the datapath: the `[datapath]` settings the kernel side needs.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Pin (or adopt) the shared maps here; None keeps them private (tests).
    pub pin_dir: Option<PathBuf>,
    pub log_level: DatapathLogLevel,
    pub ring_size: u32,
    pub nat_ports: (u16, u16),
    /// With sync, the NAT ports of all nodes (`nat_ports` is this node's
    /// share); else the same as `nat_ports`.
    pub shared_nat_ports: (u16, u16),
    pub tcp_timeout: Duration,
    pub tcp_closing_timeout: Duration,
    pub udp_timeout: Duration,
    /// Report flow events for connection sync (`[sync]` is set).
    pub flow_events: bool,
}

impl LoadOptions {
    /// The datapath's settings; with sync, this node's share of the NAT
    /// ports and flow events on.
    pub fn from_config(config: &Datapath, sync: Option<&SyncConfig>) -> Self {
        Self {
            pin_dir: Some(config.pin_dir.clone()),
            log_level: config.log_level,
            ring_size: config.maglev_table_size,
            nat_ports: sync.map_or(config.nat_ports, |s| s.nat_ports(config.nat_ports)),
            shared_nat_ports: config.nat_ports,
            tcp_timeout: config.tcp_timeout,
            tcp_closing_timeout: config.tcp_closing_timeout,
            udp_timeout: config.udp_timeout,
            flow_events: sync.is_some(),
        }
    }

    /// The refresh epoch's shift: a synced flow in use is reported at
    /// least four times per idle timeout (the shorter of TCP's and UDP's),
    /// so a peer's copy never expires while the flow lives here.
    pub fn epoch_shift(&self) -> u8 {
        let shortest = self.tcp_timeout.min(self.udp_timeout).as_nanos() as u64 / 4;
        let shift = 63 - shortest.max(1).leading_zeros() as u8;
        shift.clamp(MIN_EPOCH_SHIFT, MAX_EPOCH_SHIFT)
    }
}

/// The XDP program loaded into the kernel, with its maps.
pub struct LoadedDatapath {
    ebpf: Ebpf,
    pub maps: DatapathMaps,
    links: Vec<AttachedLink>,
    pins: Option<Pins>,
}

struct Pins {
    dir: PathBuf,
    created_dir: bool,
}

impl LoadedDatapath {
    /// Loads the program and creates its maps, or adopts those pinned in
    /// `options.pin_dir`, so a restarted agent keeps the datapath's state.
    pub fn load(options: &LoadOptions) -> Result<Self, DataplaneError> {
        if XDP_OBJECT.is_empty() {
            return Err(DataplaneError::NoObject);
        }
        let pins = match &options.pin_dir {
            Some(dir) => {
                bpffs::ensure_mounted()?;
                Some(Pins {
                    created_dir: prepare_pin_dir(dir)?,
                    dir: dir.clone(),
                })
            }
            None => None,
        };

        let log_level = options.log_level as u8;
        let tcp_ns = options.tcp_timeout.as_nanos() as u64;
        let tcp_closing_ns = options.tcp_closing_timeout.as_nanos() as u64;
        let udp_ns = options.udp_timeout.as_nanos() as u64;
        let flow_events = u8::from(options.flow_events);
        let epoch_shift = options.epoch_shift();
        let pin_paths: Vec<(&str, PathBuf)> = match &pins {
            Some(p) => PINNED_MAPS
                .iter()
                .map(|name| (*name, pin_path(&p.dir, name)))
                .collect(),
            None => Vec::new(),
        };
        let mut loader = EbpfLoader::new();
        loader
            .override_global(aya_log::LEVEL, &log_level, true)
            .override_global(GLOBAL_RING_SIZE, &options.ring_size, true)
            .override_global(GLOBAL_NAT_PORT_MIN, &options.nat_ports.0, true)
            .override_global(GLOBAL_NAT_PORT_MAX, &options.nat_ports.1, true)
            .override_global(GLOBAL_NAT_SHARED_MIN, &options.shared_nat_ports.0, true)
            .override_global(GLOBAL_NAT_SHARED_MAX, &options.shared_nat_ports.1, true)
            .override_global(GLOBAL_TCP_TIMEOUT_NS, &tcp_ns, true)
            .override_global(GLOBAL_TCP_CLOSING_TIMEOUT_NS, &tcp_closing_ns, true)
            .override_global(GLOBAL_UDP_TIMEOUT_NS, &udp_ns, true)
            .override_global(GLOBAL_FLOW_EVENTS, &flow_events, true)
            .override_global(GLOBAL_EPOCH_SHIFT, &epoch_shift, true)
            .map_max_entries(MAP_RINGS, MAX_RINGS * options.ring_size);
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .load(XDP_OBJECT)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;

        // An adopted rings map keeps the size it was created with.
        let rings = ebpf
            .map(MAP_RINGS)
            .ok_or(MapsError::Missing { map: MAP_RINGS })?;
        let entries = match rings {
            aya::maps::Map::Array(data) => {
                data.info().map_err(DataplaneError::MapInfo)?.max_entries()
            }
            _ => 0,
        };
        if entries != MAX_RINGS * options.ring_size {
            return Err(DataplaneError::RingSizeChanged {
                pin_dir: options.pin_dir.clone().unwrap_or_default(),
                found: entries / MAX_RINGS,
                wanted: options.ring_size,
            });
        }

        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_XDP)
            .ok_or(DataplaneError::MissingProgram)?
            .try_into()
            .map_err(DataplaneError::LoadProgram)?;
        program.load().map_err(DataplaneError::LoadProgram)?;
        let maps = DatapathMaps::take(&mut ebpf)?;
        Ok(Self {
            ebpf,
            maps,
            links: Vec::new(),
            pins,
        })
    }

    /// The flow events' ring buffer, for the sync task (once).
    pub fn take_flow_events(
        &mut self,
    ) -> Result<aya::maps::RingBuf<aya::maps::MapData>, DataplaneError> {
        let map = self
            .ebpf
            .take_map(MAP_FLOW_EVENTS)
            .ok_or(MapsError::Missing {
                map: MAP_FLOW_EVENTS,
            })?;
        aya::maps::RingBuf::try_from(map).map_err(|source| {
            DataplaneError::Maps(MapsError::WrongType {
                map: MAP_FLOW_EVENTS,
                source,
            })
        })
    }

    /// The loaded program, e.g. to run it on a test packet.
    pub fn program(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM_XDP)
            .and_then(|p| p.try_into().ok())
            .expect("loaded in LoadedDatapath::load")
    }

    /// Starts forwarding the program's log lines; call within a tokio runtime.
    pub fn log_pump(&mut self) -> Result<LogPump, DataplaneError> {
        let logger =
            EbpfLogger::init(&mut self.ebpf).map_err(|e| DataplaneError::Logger(e.to_string()))?;
        // SAFETY: the logger owns its ring buffer's fd, which stays open and
        // unchanged until the logger (moved into the AsyncFd) is dropped.
        let logger = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
            .map_err(|e| DataplaneError::Logger(e.to_string()))?;
        Ok(LogPump(logger))
    }

    /// Attaches the program to every interface, in `mode`. With pins, each
    /// attachment is a bpf_link pinned in `pin_dir`, so it outlives this
    /// process (a crashed agent leaves the datapath forwarding); a link a
    /// previous agent pinned is adopted and switched to this program in one
    /// atomic update (BPF_LINK_UPDATE), so no packet misses the datapath.
    pub fn attach(&mut self, interfaces: &[String], mode: XdpMode) -> Result<(), DataplaneError> {
        let aya_mode = match mode {
            XdpMode::Native => AyaXdpMode::Driver,
            XdpMode::Generic => AyaXdpMode::Skb,
        };
        for interface in interfaces {
            self.describe_interface(interface)?;
            let attach_error = |source| DataplaneError::Attach {
                interface: interface.clone(),
                mode,
                source,
            };
            let pin = self.pins.as_ref().map(|p| link_pin_path(&p.dir, interface));
            let adopted = match &pin {
                Some(path) if path.exists() => Some(
                    PinnedLink::from_pin(path).map_err(|e| DataplaneError::Link(e.to_string()))?,
                ),
                _ => None,
            };
            let id = match adopted {
                Some(pinned) => {
                    let link = XdpLink::try_from(FdLink::from(pinned))
                        .map_err(|e| DataplaneError::Link(e.to_string()))?;
                    let id = self.program().attach_to_link(link).map_err(attach_error)?;
                    tracing::info!(interface, "XDP link adopted: program replaced atomically");
                    id
                }
                None => {
                    let id = self
                        .program()
                        .attach(interface, aya_mode)
                        .map_err(attach_error)?;
                    tracing::info!(interface, ?mode, "XDP attached");
                    id
                }
            };
            let link = self.program().take_link(id).map_err(attach_error)?;
            let fd = FdLink::try_from(link).map_err(|e| DataplaneError::Link(e.to_string()))?;
            let fd =
                match &pin {
                    Some(path) if !path.exists() => FdLink::from(fd.pin(path).map_err(|e| {
                        DataplaneError::Link(format!("pin {}: {e}", path.display()))
                    })?),
                    _ => fd,
                };
            self.links.push(AttachedLink {
                interface: interface.clone(),
                fd,
                pin,
            });
        }
        Ok(())
    }

    /// Tells the program `interface`'s MAC, so that it leaves frames
    /// addressed to other hosts alone.
    fn describe_interface(&mut self, interface: &str) -> Result<(), DataplaneError> {
        let describe_error = |source: io::Error| DataplaneError::Describe {
            interface: interface.to_owned(),
            source,
        };
        let index = crate::net::addr::interface_index(interface)
            .ok_or_else(|| describe_error(io::ErrorKind::NotFound.into()))?;
        let mac = crate::net::iface::mac(interface).map_err(describe_error)?;
        let value = Interface { mac, _pad: [0; 2] };
        updated(MAP_INTERFACES, self.maps.interfaces.insert(index, value, 0))?;
        Ok(())
    }

    pub fn pin_dir(&self) -> Option<&Path> {
        self.pins.as_ref().map(|p| p.dir.as_path())
    }

    /// Leaves the datapath running without this process: links and maps
    /// stay pinned, the next agent adopts them.
    pub fn keep_running(self) {
        for link in &self.links {
            tracing::info!(
                interface = link.interface,
                "XDP left attached (--keep-datapath)"
            );
        }
    }

    /// Detaches from every interface, then removes the pins so nothing of
    /// the datapath outlives the agent.
    pub fn detach_and_unpin(mut self) -> Result<(), DataplaneError> {
        for link in std::mem::take(&mut self.links) {
            if let Some(pin) = &link.pin {
                let _ = std::fs::remove_file(pin);
            }
            // Closing the last reference to the link detaches the program.
            drop(link.fd);
            tracing::info!(interface = link.interface, "XDP detached");
        }
        let Some(pins) = &self.pins else {
            return Ok(());
        };
        for name in PINNED_MAPS {
            let path = pin_path(&pins.dir, name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(DataplaneError::Unpin { path, source }),
            }
        }
        if pins.created_dir {
            // Only removes it when empty: anything else pinned there is not ours.
            let _ = std::fs::remove_dir(&pins.dir);
        }
        Ok(())
    }
}

/// An attachment of the program to one interface.
struct AttachedLink {
    interface: String,
    fd: FdLink,
    /// Where it is pinned, when the agent pins.
    pin: Option<PathBuf>,
}

/// Where the link attaching the program to `interface` is pinned.
pub fn link_pin_path(pin_dir: &Path, interface: &str) -> PathBuf {
    pin_dir.join(format!("link_{interface}"))
}

/// Creates `pin_dir` when missing; says whether it did.
fn prepare_pin_dir(pin_dir: &Path) -> Result<bool, DataplaneError> {
    let existed = pin_dir.exists();
    if !existed {
        std::fs::create_dir_all(pin_dir).map_err(|source| DataplaneError::CreatePinDir {
            path: pin_dir.to_owned(),
            source,
        })?;
    }
    if !bpffs::is_bpffs(pin_dir)? {
        return Err(DataplaneError::PinDirNotBpffs {
            path: pin_dir.to_owned(),
        });
    }
    Ok(!existed)
}

/// Moves the XDP program's aya-log records into `log`, which tracing picks up.
pub struct LogPump(AsyncFd<EbpfLogger<&'static dyn log::Log>>);

impl LogPump {
    /// Forwards records until the task is cancelled.
    pub async fn run(mut self) {
        loop {
            match self.0.readable_mut().await {
                Ok(mut guard) => {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                Err(error) => {
                    tracing::warn!(%error, "XDP log ring buffer unreadable; its lines are lost");
                    return;
                }
            }
        }
    }
}
