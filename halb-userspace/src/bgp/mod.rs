//! `[bgp]`: each VIP announced through the local BIRD 2 while this node can
//! serve it (the datapath attached, a backend of one of its services
//! usable), withdrawn otherwise; on a planned stop, announced with the
//! GRACEFUL_SHUTDOWN community first, so routers move traffic away before
//! the routes go. halb writes BIRD's include file and reconfigures BIRD;
//! the sessions, BFD and best-path choice stay BIRD's.
//!
//! The announcer runs in a task of its own: the agent only hands it the
//! set of VIPs, and reads its status, so a BIRD that hangs or is gone holds
//! up nothing but the announcement (which it retries every poll).

pub mod birdc;
pub mod render;

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::validate::BgpConfig;
use render::{Announcement, render, session_name};

/// How often BIRD's sessions are looked at (and a failed reconfigure retried).
const POLL: Duration = Duration::from_secs(1);

/// What `halb status` shows of the announcer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpStatus {
    pub include: PathBuf,
    /// BIRD's version, as it last answered.
    pub bird: Option<String>,
    /// Why BIRD may not announce what halb wants: it is not running, or it
    /// refused the config. None when it took the last include.
    pub error: Option<String>,
    /// The VIPs in the include file.
    pub announced: Vec<IpAddr>,
    /// A planned stop: the routes carry GRACEFUL_SHUTDOWN.
    pub draining: bool,
    /// BIRD runs the include as written.
    pub applied: bool,
    pub sessions: Vec<SessionStatus>,
}

/// One BGP session halb configured, as BIRD reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    pub name: String,
    pub neighbor: IpAddr,
    /// BIRD's protocol state (`up`, `start`...) and its info (`Established`...).
    pub state: String,
    pub info: String,
    /// The BFD session's state (`Up`, `Down`, `Init`), when BFD runs.
    pub bfd: Option<String>,
}

/// The running announcer.
pub struct Bgp {
    /// The VIPs to announce: the latest set wins, none is ever queued
    /// behind a BIRD that hangs. None until the agent knows what it can
    /// serve.
    wanted: watch::Sender<Option<BTreeSet<IpAddr>>>,
    /// Drain, wait the grace time, withdraw everything; then answer.
    stop: mpsc::Sender<oneshot::Sender<()>>,
    status: Arc<Mutex<BgpStatus>>,
    grace: Duration,
}

impl Bgp {
    /// Starts the announcer; it writes nothing until [`Bgp::announce`].
    pub fn start(config: &BgpConfig) -> Self {
        let (wanted, wanted_rx) = watch::channel(None);
        let (stop, stop_rx) = mpsc::channel(1);
        let status = Arc::new(Mutex::new(BgpStatus {
            include: config.include.clone(),
            ..BgpStatus::default()
        }));
        tokio::spawn(Announcer::new(config.clone(), Arc::clone(&status)).run(wanted_rx, stop_rx));
        Self {
            wanted,
            stop,
            status,
            grace: config.shutdown_grace,
        }
    }

    /// Announces exactly `vips` (the others are withdrawn).
    pub fn announce(&mut self, vips: BTreeSet<IpAddr>) {
        self.wanted.send_if_modified(|wanted| {
            let changed = wanted.as_ref() != Some(&vips);
            *wanted = Some(vips);
            changed
        });
    }

    /// The planned stop: GRACEFUL_SHUTDOWN for the grace time, then every
    /// route withdrawn (retried until BIRD takes it). Returns once BIRD
    /// has withdrawn them, or after the grace time and a few of BIRD's
    /// deadlines.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        let bound = self.grace + SHUTDOWN_SLACK;
        let _ = tokio::time::timeout(bound, async {
            if self.stop.send(done).await.is_ok() {
                let _ = wait.await;
            }
        })
        .await;
    }

    pub fn status(&self) -> BgpStatus {
        self.status.lock().expect("bgp status lock").clone()
    }
}

/// What a stop may take beyond the grace time: the announcer finishing an
/// exchange in flight, then the drain and the withdrawal, each within
/// BIRD's deadline, with retries.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(20);

struct Announcer {
    config: BgpConfig,
    status: Arc<Mutex<BgpStatus>>,
    /// None until the agent's first announcement: a restarted agent does
    /// not withdraw what the last one announced.
    want: Option<Announcement>,
    /// The include file's text as last written.
    written: Option<String>,
    applied: bool,
}

impl Announcer {
    fn new(config: BgpConfig, status: Arc<Mutex<BgpStatus>>) -> Self {
        Self {
            config,
            status,
            want: None,
            written: None,
            applied: false,
        }
    }

    async fn run(
        mut self,
        mut wanted: watch::Receiver<Option<BTreeSet<IpAddr>>>,
        mut stop: mpsc::Receiver<oneshot::Sender<()>>,
    ) {
        let mut poll = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                biased;
                done = stop.recv() => {
                    if let Some(done) = done {
                        self.shut_down().await;
                        let _ = done.send(());
                    }
                    return;
                }
                changed = wanted.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let vips = wanted.borrow_and_update().clone();
                    if let Some(vips) = vips {
                        self.want = Some(Announcement { vips, draining: false });
                        self.apply().await;
                    }
                }
                _ = poll.tick() => {
                    if self.want.is_some() && !self.applied {
                        self.apply().await;
                    }
                    self.observe().await;
                }
            }
        }
    }

    async fn shut_down(&mut self) {
        let Some(want) = &mut self.want else {
            // Nothing written yet: what BIRD has is the last agent's; leave it.
            return;
        };
        if !want.vips.is_empty() {
            want.draining = true;
            if self.apply().await {
                tracing::info!(grace = ?self.config.shutdown_grace, "VIPs announced with GRACEFUL_SHUTDOWN before they are withdrawn");
                tokio::time::sleep(self.config.shutdown_grace).await;
            }
        }
        self.want = Some(Announcement::default());
        // The withdrawal matters most: retried until BIRD takes it (the
        // agent bounds the whole stop).
        while !self.apply().await {
            tokio::time::sleep(POLL).await;
        }
        tracing::info!("VIPs withdrawn from BGP");
    }

    /// Writes the include for what is wanted (when it changed) and has BIRD
    /// read it; says whether BIRD took it.
    async fn apply(&mut self) -> bool {
        let Some(want) = &self.want else {
            return false;
        };
        let text = render(&self.config, want);
        if self.written.as_ref() != Some(&text) {
            if let Err(e) = write_atomically(&self.config.include, &text) {
                let error = format!("cannot write {}: {e}", self.config.include.display());
                tracing::error!(%error, "BGP announcement not changed");
                self.set_error(Some(error), false);
                return false;
            }
            self.written = Some(text);
            self.applied = false;
        }
        if self.applied {
            return true;
        }
        match birdc::command(&self.config.bird_socket, "configure").await {
            Ok(_) => {
                tracing::info!(vips = ?want.vips, draining = want.draining, "BIRD reconfigured");
                self.set_error(None, true);
                true
            }
            Err(e) => {
                let error = e.to_string();
                let was = self.status.lock().expect("bgp status lock").error.clone();
                if was.as_deref() != Some(error.as_str()) {
                    tracing::error!(%error, "BGP announcement not applied; retrying every second");
                }
                self.set_error(Some(error), false);
                false
            }
        }
    }

    fn set_error(&mut self, error: Option<String>, applied: bool) {
        self.applied = applied;
        let mut status = self.status.lock().expect("bgp status lock");
        status.error = error;
        status.applied = applied;
        if let Some(want) = &self.want {
            status.announced = want.vips.iter().copied().collect();
            status.draining = want.draining;
        }
    }

    /// Reads BIRD's version, the sessions halb configured and their BFD.
    async fn observe(&mut self) {
        let socket = &self.config.bird_socket;
        let version = match birdc::command(socket, "show status").await {
            Ok(version) => version,
            Err(e) => {
                self.bird_gone(e.to_string());
                return;
            }
        };
        let protocols = birdc::command(socket, "show protocols").await.ok();
        let bfd = if self.config.neighbors.iter().any(|n| n.bfd) {
            birdc::command(socket, "show bfd sessions").await.ok()
        } else {
            None
        };
        let sessions = self
            .config
            .neighbors
            .iter()
            .map(|n| {
                let name = session_name(n);
                let (state, info) = protocols
                    .as_ref()
                    .and_then(|p| protocol_row(p, &name))
                    .unwrap_or_else(|| ("missing".to_owned(), String::new()));
                SessionStatus {
                    bfd: bfd.as_ref().and_then(|b| bfd_state(b, n.address)),
                    name,
                    neighbor: n.address,
                    state,
                    info,
                }
            })
            .collect();
        let mut status = self.status.lock().expect("bgp status lock");
        status.bird = version.with_code(1000).next().map(str::to_owned);
        status.sessions = sessions;
    }

    /// BIRD does not answer: what it runs is unknown, and it is configured
    /// again once back (a BIRD restarted with another include, say).
    fn bird_gone(&mut self, error: String) {
        self.applied = false;
        let mut status = self.status.lock().expect("bgp status lock");
        status.bird = None;
        status.applied = false;
        status.error = Some(error);
        for session in &mut status.sessions {
            session.state = "unknown".to_owned();
            session.bfd = None;
        }
    }
}

/// The state and info of protocol `name` in a `show protocols` reply:
/// `name proto table state since... info`, where since is a time (and
/// maybe a date) and info may hold spaces.
fn protocol_row(reply: &birdc::Reply, name: &str) -> Option<(String, String)> {
    let row = reply
        .lines
        .iter()
        .map(|l| l.text.as_str())
        .find(|t| t.split_whitespace().next() == Some(name))?;
    let mut words = row.split_whitespace().skip(3);
    let state = words.next()?.to_owned();
    let info: Vec<&str> = words
        .skip_while(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    Some((state, info.join(" ")))
}

/// The state of the BFD session with `neighbor` in a `show bfd sessions`
/// reply: rows `address interface state since interval timeout`.
fn bfd_state(reply: &birdc::Reply, neighbor: IpAddr) -> Option<String> {
    reply.lines.iter().find_map(|l| {
        let mut words = l.text.split_whitespace();
        let address: IpAddr = words.next()?.parse().ok()?;
        (address == neighbor).then(|| words.nth(1).map(str::to_owned))?
    })
}

/// Writes `text` to `path` through a temporary file and a rename, so that
/// BIRD never reads half a file.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("halb-new");
    std::fs::write(&temporary, text)?;
    // Readable by BIRD's own user whatever halb's umask.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> birdc::Reply {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        birdc::parse(&lines).expect("a whole reply")
    }

    #[test]
    fn sessions_and_bfd_are_read_from_birds_tables() {
        let protocols = reply(
            "2002-Name       Proto      Table      State  Since         Info\n\
             1002-halb_198_18_1_1 BGP        ---        up     14:02:11.123  Established\n \
             halb_vips4 Static     master4    up     14:02:10.000\n \
             halb_198_18_2_1 BGP        ---        start  2026-12-01 14:02:11  Active        Socket: Connection refused\n\
             0000 ",
        );
        assert_eq!(
            protocol_row(&protocols, "halb_198_18_1_1"),
            Some(("up".to_owned(), "Established".to_owned()))
        );
        assert_eq!(
            protocol_row(&protocols, "halb_198_18_2_1"),
            Some((
                "start".to_owned(),
                "Active Socket: Connection refused".to_owned()
            ))
        );
        assert_eq!(protocol_row(&protocols, "halb_nobody"), None);
        let bfd = reply(
            "1020-halb_bfd:\n \
             IP address                Interface  State      Since         Interval  Timeout\n \
             198.18.1.1                eth0       Up         14:02:11.123    0.100    0.300\n\
             0000 ",
        );
        assert_eq!(
            bfd_state(&bfd, "198.18.1.1".parse().unwrap()).as_deref(),
            Some("Up")
        );
        assert_eq!(bfd_state(&bfd, "198.18.1.9".parse().unwrap()), None);
    }
}
