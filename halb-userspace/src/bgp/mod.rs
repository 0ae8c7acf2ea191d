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
use tokio::sync::{mpsc, oneshot};

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

enum Command {
    Announce(BTreeSet<IpAddr>),
    /// Drain, wait the grace time, withdraw everything; then answer.
    Shutdown(oneshot::Sender<()>),
}

/// The running announcer.
pub struct Bgp {
    commands: mpsc::Sender<Command>,
    status: Arc<Mutex<BgpStatus>>,
    /// The last set handed over, so that only changes are sent.
    last: Option<BTreeSet<IpAddr>>,
    grace: Duration,
}

impl Bgp {
    /// Starts the announcer with nothing announced yet.
    pub fn start(config: &BgpConfig) -> Self {
        let (commands, rx) = mpsc::channel(16);
        let status = Arc::new(Mutex::new(BgpStatus {
            include: config.include.clone(),
            ..BgpStatus::default()
        }));
        tokio::spawn(Announcer::new(config.clone(), Arc::clone(&status)).run(rx));
        Self {
            commands,
            status,
            last: None,
            grace: config.shutdown_grace,
        }
    }

    /// Announces exactly `vips` (the others are withdrawn).
    pub fn announce(&mut self, vips: BTreeSet<IpAddr>) {
        if self.last.as_ref() == Some(&vips) {
            return;
        }
        self.last = Some(vips.clone());
        if self.commands.try_send(Command::Announce(vips)).is_err() {
            tracing::warn!("BGP announcer is busy; the next change carries this one");
            self.last = None;
        }
    }

    /// The planned stop: GRACEFUL_SHUTDOWN for the grace time, then every
    /// route withdrawn. Returns once BIRD has withdrawn them, or gave up.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).await.is_ok() {
            // The grace time, and each of the two reconfigures' deadline.
            let bound = self.grace + 2 * birdc::DEADLINE + POLL;
            let _ = tokio::time::timeout(bound, wait).await;
        }
    }

    pub fn status(&self) -> BgpStatus {
        self.status.lock().expect("bgp status lock").clone()
    }
}

struct Announcer {
    config: BgpConfig,
    status: Arc<Mutex<BgpStatus>>,
    want: Announcement,
    /// The include file's text as last written.
    written: Option<String>,
    applied: bool,
}

impl Announcer {
    fn new(config: BgpConfig, status: Arc<Mutex<BgpStatus>>) -> Self {
        Self {
            config,
            status,
            want: Announcement::default(),
            written: None,
            applied: false,
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // Nothing is written until the agent says what it can serve: a
        // restarted agent does not withdraw what the last one announced.
        let mut poll = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Announce(vips)) => {
                        self.want.vips = vips;
                        self.apply().await;
                    }
                    Some(Command::Shutdown(done)) => {
                        self.shut_down().await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                _ = poll.tick() => {
                    if !self.applied {
                        self.apply().await;
                    }
                    self.observe().await;
                }
            }
        }
    }

    async fn shut_down(&mut self) {
        if !self.want.vips.is_empty() {
            self.want.draining = true;
            self.apply().await;
            tracing::info!(grace = ?self.config.shutdown_grace, "VIPs announced with GRACEFUL_SHUTDOWN before they are withdrawn");
            tokio::time::sleep(self.config.shutdown_grace).await;
        }
        self.want = Announcement::default();
        self.apply().await;
        tracing::info!("VIPs withdrawn from BGP");
    }

    /// Writes the include for what is wanted (when it changed) and has BIRD
    /// read it.
    async fn apply(&mut self) {
        let text = render(&self.config, &self.want);
        if self.written.as_ref() != Some(&text) {
            if let Err(e) = write_atomically(&self.config.include, &text) {
                let error = format!("cannot write {}: {e}", self.config.include.display());
                tracing::error!(%error, "BGP announcement not changed");
                self.set_error(Some(error), false);
                return;
            }
            self.written = Some(text);
            self.applied = false;
        }
        if self.applied {
            return;
        }
        match birdc::command(&self.config.bird_socket, "configure").await {
            Ok(_) => {
                tracing::info!(vips = ?self.want.vips, draining = self.want.draining, "BIRD reconfigured");
                self.set_error(None, true);
            }
            Err(e) => {
                let error = e.to_string();
                let was = self.status.lock().expect("bgp status lock").error.clone();
                if was.as_deref() != Some(error.as_str()) {
                    tracing::error!(%error, "BGP announcement not applied; retrying every second");
                }
                self.set_error(Some(error), false);
            }
        }
    }

    fn set_error(&mut self, error: Option<String>, applied: bool) {
        self.applied = applied;
        let mut status = self.status.lock().expect("bgp status lock");
        status.error = error;
        status.applied = applied;
        status.announced = self.want.vips.iter().copied().collect();
        status.draining = self.want.draining;
    }

    /// Reads BIRD's version, the sessions halb configured and their BFD.
    async fn observe(&mut self) {
        let socket = &self.config.bird_socket;
        let Ok(version) = birdc::command(socket, "show status").await else {
            let mut status = self.status.lock().expect("bgp status lock");
            status.bird = None;
            for session in &mut status.sessions {
                session.state = "unknown".to_owned();
                session.bfd = None;
            }
            return;
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
