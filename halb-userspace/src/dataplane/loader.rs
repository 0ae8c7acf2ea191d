//! Loads the embedded XDP object, pins its maps, forwards its log lines to
//! tracing and attaches it to the configured interfaces.

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    programs::{ProgramError, Xdp, XdpMode as AyaXdpMode, xdp::XdpLinkId},
};
use aya_log::EbpfLogger;
use halb_common::maps::{PINNED_MAPS, PROGRAM_XDP};
use tokio::io::{Interest, unix::AsyncFd};

use super::{bpffs, maps::pin_path};
use crate::config::validate::{Datapath, XdpMode};

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
    #[error("cannot read the XDP program's log ring buffer: {0}")]
    Logger(String),
    #[error("cannot remove pinned map {}: {source}", path.display())]
    Unpin {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A loaded XDP program attached to interfaces, with its maps pinned.
pub struct AttachedDatapath {
    ebpf: Ebpf,
    links: Vec<(String, XdpLinkId)>,
    pin_dir: PathBuf,
    created_pin_dir: bool,
}

impl AttachedDatapath {
    /// Loads the datapath and attaches it to every interface in `config`.
    ///
    /// Maps already pinned under `config.pin_dir` are adopted rather than
    /// created, so a restarted agent keeps the datapath's state.
    pub fn load_and_attach(config: &Datapath) -> Result<(Self, LogPump), DataplaneError> {
        if XDP_OBJECT.is_empty() {
            return Err(DataplaneError::NoObject);
        }
        bpffs::ensure_mounted()?;
        let created_pin_dir = prepare_pin_dir(&config.pin_dir)?;

        let pins: Vec<(&str, PathBuf)> = PINNED_MAPS
            .iter()
            .map(|name| (*name, pin_path(&config.pin_dir, name)))
            .collect();
        let log_level = config.log_level as u8;
        let mut loader = EbpfLoader::new();
        loader.override_global(aya_log::LEVEL, &log_level, true);
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .load(XDP_OBJECT)
            .map_err(|e| DataplaneError::Load(Box::new(e)))?;

        let logger =
            EbpfLogger::init(&mut ebpf).map_err(|e| DataplaneError::Logger(e.to_string()))?;
        // SAFETY: the logger owns its ring buffer's fd, which stays open and
        // unchanged until the logger (moved into the AsyncFd) is dropped.
        let logger = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
            .map_err(|e| DataplaneError::Logger(e.to_string()))?;
        let pump = LogPump(logger);

        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_XDP)
            .ok_or(DataplaneError::MissingProgram)?
            .try_into()
            .map_err(DataplaneError::LoadProgram)?;
        program.load().map_err(DataplaneError::LoadProgram)?;

        let mode = match config.xdp_mode {
            XdpMode::Native => AyaXdpMode::Driver,
            XdpMode::Generic => AyaXdpMode::Skb,
        };
        let mut links = Vec::new();
        for interface in &config.interfaces {
            let link =
                program
                    .attach(interface, mode)
                    .map_err(|source| DataplaneError::Attach {
                        interface: interface.clone(),
                        mode: config.xdp_mode,
                        source,
                    })?;
            tracing::info!(interface, mode = ?config.xdp_mode, "XDP attached");
            links.push((interface.clone(), link));
        }
        Ok((
            Self {
                ebpf,
                links,
                pin_dir: config.pin_dir.clone(),
                created_pin_dir,
            },
            pump,
        ))
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Detaches from every interface, then removes the pins so nothing of
    /// the datapath outlives the agent.
    pub fn detach_and_unpin(mut self) -> Result<(), DataplaneError> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM_XDP)
            .ok_or(DataplaneError::MissingProgram)?
            .try_into()
            .map_err(DataplaneError::LoadProgram)?;
        for (interface, link) in self.links.drain(..) {
            match program.detach(link) {
                Ok(()) => tracing::info!(interface, "XDP detached"),
                // The interface may be gone already (its namespace deleted):
                // then so is the attachment.
                Err(error) => tracing::warn!(interface, %error, "XDP detach failed"),
            }
        }
        for name in PINNED_MAPS {
            let path = pin_path(&self.pin_dir, name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(DataplaneError::Unpin { path, source }),
            }
        }
        if self.created_pin_dir {
            // Only removes it when empty: anything else pinned there is not ours.
            let _ = std::fs::remove_dir(&self.pin_dir);
        }
        Ok(())
    }
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
