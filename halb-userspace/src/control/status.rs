//! What `halb status` shows: services, their backends with health, admin
//! state, weight and counters with per-second rates, and the datapath's
//! verdicts. Serialisable for `--json`, printable as a table.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
};

use serde::{Deserialize, Serialize};

use crate::{backends::Admin, dataplane::sync::BackendState, health::Health};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub services: Vec<ServiceStatus>,
    /// Packets by verdict reason since the datapath was loaded.
    pub verdicts: BTreeMap<String, u64>,
    /// VRRP instances.
    #[serde(default)]
    pub vrrp: Vec<VrrpStatus>,
    /// Layer-7 services served by the HTTP proxy.
    #[serde(default)]
    pub http: Vec<HttpServiceStatus>,
    /// Connection sync with the peers (`[sync]`).
    #[serde(default)]
    pub sync: Option<crate::connsync::SyncStatus>,
    /// The VIPs announced through BIRD (`[bgp]`).
    #[serde(default)]
    pub bgp: Option<Box<crate::bgp::BgpStatus>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpServiceStatus {
    pub name: String,
    pub listen: SocketAddr,
    /// Client connections open now, and requests waiting under maxconn.
    pub connections: usize,
    pub queued: usize,
    pub pools: Vec<HttpPoolStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpPoolStatus {
    pub name: String,
    pub balance: String,
    pub backends: Vec<HttpBackendStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpBackendStatus {
    pub address: SocketAddr,
    pub weight: u32,
    pub health: Health,
    pub admin: Admin,
    /// Requests in flight now.
    pub active: usize,
    pub responses: u64,
    pub connect_failures: u64,
}

/// A VRRP instance's state as shown: the RFC's three, and halb's own
/// fault (tracking says it must not take part).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VrrpState {
    #[default]
    Initialize,
    Backup,
    Master,
    Fault,
}

impl VrrpState {
    /// As logs, notify commands and `halb status --json` spell it.
    pub fn name(self) -> &'static str {
        match self {
            VrrpState::Initialize => "initialize",
            VrrpState::Backup => "backup",
            VrrpState::Master => "master",
            VrrpState::Fault => "fault",
        }
    }

    /// The value of the `halb_vrrp_state` metric.
    pub fn number(self) -> u8 {
        match self {
            VrrpState::Initialize => 0,
            VrrpState::Backup => 1,
            VrrpState::Master => 2,
            VrrpState::Fault => 3,
        }
    }
}

/// One VRRP instance as it stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VrrpStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub version: u8,
    pub state: VrrpState,
    /// The priority advertised now, after tracking.
    pub priority: u8,
    pub configured_priority: u8,
    /// This router's address on the link (the source of its adverts).
    pub address: Option<IpAddr>,
    /// The current master's address, as far as this router knows.
    pub master: Option<IpAddr>,
    /// Why the instance is in fault, when it is.
    pub fault: Option<String>,
    pub transitions: u64,
    /// The last change, e.g. "backup -> master".
    pub last_transition: Option<String>,
    /// Seconds since the Unix epoch of the last change.
    pub last_transition_at: Option<f64>,
    pub adverts_sent: u64,
    /// Adverts that passed every check.
    pub adverts_received: u64,
    /// Ignored messages by reason.
    pub rejected: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub vip: String,
    pub port: u16,
    pub protocol: String,
    pub mode: String,
    /// A digest of the Maglev table by backend address: the same on every
    /// node with the same backends up.
    #[serde(default)]
    pub table_digest: String,
    pub traffic: Traffic,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendStatus {
    pub address: SocketAddr,
    pub weight: u32,
    /// From the health checks ("up" when unchecked).
    pub health: Health,
    pub admin: Admin,
    /// What the datapath does with it.
    pub state: BackendState,
    /// Why it is down when the health checks are not the reason (no route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub traffic: Traffic,
}

/// Counters since the datapath was loaded, and their rates over the last
/// sampling period (about a second).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    pub packets_per_sec: f64,
    pub bytes_per_sec: f64,
    pub new_flows_per_sec: f64,
}

impl Status {
    /// The human-readable form.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for s in &self.services {
            let _ = writeln!(
                out,
                "service {} {}:{}/{} mode {} table {}   {} pkts ({:.0}/s)  {} ({}/s)  {} new flows ({:.0}/s)",
                s.name,
                s.vip,
                s.port,
                s.protocol,
                s.mode,
                s.table_digest,
                s.traffic.packets,
                s.traffic.packets_per_sec,
                bytes(s.traffic.bytes as f64),
                bytes(s.traffic.bytes_per_sec),
                s.traffic.new_flows,
                s.traffic.new_flows_per_sec
            );
            let _ = writeln!(
                out,
                "  {:<40} {:>6} {:>6} {:>8} {:>9} {:>12} {:>10} {:>10} {:>9}",
                "backend",
                "weight",
                "health",
                "admin",
                "state",
                "packets",
                "pkts/s",
                "new flows",
                "flows/s"
            );
            for b in &s.backends {
                let _ = writeln!(
                    out,
                    "  {:<40} {:>6} {:>6} {:>8} {:>9} {:>12} {:>10.0} {:>10} {:>9.0}",
                    b.address.to_string(),
                    b.weight,
                    b.health.name(),
                    b.admin.name(),
                    b.state.name(),
                    b.traffic.packets,
                    b.traffic.packets_per_sec,
                    b.traffic.new_flows,
                    b.traffic.new_flows_per_sec
                );
                if let Some(reason) = &b.reason {
                    let _ = writeln!(out, "    ({reason})");
                }
            }
        }
        let reasons: Vec<String> = self
            .verdicts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(out, "datapath: {}", reasons.join(", "));
        for h in &self.http {
            let _ = writeln!(
                out,
                "http service {} on {}   {} connections, {} queued",
                h.name, h.listen, h.connections, h.queued
            );
            for p in &h.pools {
                let _ = writeln!(
                    out,
                    "  pool {} ({})\n  {:<40} {:>6} {:>6} {:>8} {:>7} {:>10} {:>9}",
                    p.name,
                    p.balance,
                    "backend",
                    "weight",
                    "health",
                    "admin",
                    "active",
                    "responses",
                    "failures"
                );
                for b in &p.backends {
                    let _ = writeln!(
                        out,
                        "  {:<40} {:>6} {:>6} {:>8} {:>7} {:>10} {:>9}",
                        b.address.to_string(),
                        b.weight,
                        b.health.name(),
                        b.admin.name(),
                        b.active,
                        b.responses,
                        b.connect_failures
                    );
                }
            }
        }
        for v in &self.vrrp {
            let ago = v.last_transition_at.map(|at| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                format!(" {:.0}s ago", (now - at).max(0.0))
            });
            let rejected: Vec<String> = v
                .rejected
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "vrrp {} on {} vrid {} v{}: {} priority {} (configured {}) master {}{}\n  last transition {}{} ({} in all); adverts sent {} received {}; rejected: {}",
                v.name,
                v.interface,
                v.vrid,
                v.version,
                v.state.name().to_uppercase(),
                v.priority,
                v.configured_priority,
                v.master.map_or("unknown".to_owned(), |m| m.to_string()),
                v.fault
                    .as_ref()
                    .map_or(String::new(), |f| format!(" fault: {f}")),
                v.last_transition.as_deref().unwrap_or("none"),
                ago.unwrap_or_default(),
                v.transitions,
                v.adverts_sent,
                v.adverts_received,
                if rejected.is_empty() {
                    "none".to_owned()
                } else {
                    rejected.join(", ")
                }
            );
        }
        if let Some(sync) = &self.sync {
            sync_table(&mut out, sync);
        }
        if let Some(bgp) = &self.bgp {
            bgp_table(&mut out, bgp);
        }
        out
    }
}

/// `halb status`'s lines for BGP: BIRD, what is announced, each session.
fn bgp_table(out: &mut String, bgp: &crate::bgp::BgpStatus) {
    let announced: Vec<String> = bgp.announced.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "bgp through {} ({}): {}{}{}",
        bgp.bird.as_deref().unwrap_or("BIRD, not answering"),
        bgp.include.display(),
        if announced.is_empty() {
            "nothing announced".to_owned()
        } else {
            format!("announcing {}", announced.join(", "))
        },
        if bgp.draining {
            " with GRACEFUL_SHUTDOWN"
        } else {
            ""
        },
        match (&bgp.error, bgp.applied) {
            (Some(error), _) => format!("\n  ERROR: {error}"),
            (None, false) => " (not applied yet)".to_owned(),
            (None, true) => String::new(),
        }
    );
    for s in &bgp.sessions {
        let _ = writeln!(
            out,
            "  session {} with {}: {} {}{}",
            s.name,
            s.neighbor,
            s.state,
            s.info,
            s.bfd
                .as_deref()
                .map_or(String::new(), |b| format!("; BFD {b}"))
        );
    }
}

/// `halb status`'s lines for connection sync: one header, then per peer.
fn sync_table(out: &mut String, sync: &crate::connsync::SyncStatus) {
    let _ = writeln!(
        out,
        "sync on {}: {}{}",
        sync.listen.map_or("-".to_owned(), |a| a.to_string()),
        if sync.ready {
            "ready"
        } else {
            "waiting for the peers' tables (no preemption)"
        },
        if sync.unknown_sender > 0 {
            format!("; {} datagrams from unknown senders", sync.unknown_sender)
        } else {
            String::new()
        }
    );
    for p in &sync.peers {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} ms"));
        let rejected: Vec<String> = p.rejected.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let resync = match p.resync {
            crate::connsync::peer::ResyncStatus::NotAsked => "not asked".to_owned(),
            crate::connsync::peer::ResyncStatus::Requested => "requested".to_owned(),
            crate::connsync::peer::ResyncStatus::Done { flows, millis } => {
                format!("{flows} flows in {millis} ms")
            }
        };
        let _ = writeln!(
            out,
            "  peer {}: {}{}\n    flows sent {} received {} refused {}; messages sent {} received {} lost {} resent {} dropped {}; unacked {}\n    lag p50 {} p99 {} max {} ({} flows); table from it: {resync}; rejected: {}",
            p.address,
            if p.connected {
                "CONNECTED"
            } else {
                "DISCONNECTED"
            },
            if p.stalled {
                " STALLED (a message unacknowledged for over 1 s)"
            } else {
                ""
            },
            p.flows_sent,
            p.flows_received,
            p.flows_refused,
            p.messages_sent,
            p.messages_received,
            p.messages_lost,
            p.messages_resent,
            p.messages_dropped,
            p.unacked,
            ms(p.lag.p50_ms),
            ms(p.lag.p99_ms),
            ms(p.lag.max_ms),
            p.lag.samples,
            if rejected.is_empty() {
                "none".to_owned()
            } else {
                rejected.join(", ")
            }
        );
    }
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut n = n;
    let mut unit = 0;
    while n >= 1024.0 && unit < UNITS.len() - 1 {
        n /= 1024.0;
        unit += 1;
    }
    format!("{n:.1} {}", UNITS[unit])
}
