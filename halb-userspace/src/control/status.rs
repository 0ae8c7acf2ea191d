//! What `halb status` shows: services, their backends with health, admin
//! state, weight and counters with per-second rates, and the datapath's
//! verdicts. Serialisable for `--json`, printable as a table.

use std::{collections::BTreeMap, fmt::Write as _, net::SocketAddr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub services: Vec<ServiceStatus>,
    /// Packets by verdict reason since the datapath was loaded.
    pub verdicts: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub vip: String,
    pub port: u16,
    pub protocol: String,
    pub mode: String,
    pub traffic: Traffic,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendStatus {
    pub address: SocketAddr,
    pub weight: u32,
    /// "up" or "down", from the health checks ("up" when unchecked).
    pub health: String,
    /// "enabled" or "drained".
    pub admin: String,
    /// What the datapath does with it: "up", "draining" or "down".
    pub state: String,
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
                "service {} {}:{}/{} mode {}   {} pkts ({:.0}/s)  {} ({}/s)  {} new flows ({:.0}/s)",
                s.name,
                s.vip,
                s.port,
                s.protocol,
                s.mode,
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
                    b.health,
                    b.admin,
                    b.state,
                    b.traffic.packets,
                    b.traffic.packets_per_sec,
                    b.traffic.new_flows,
                    b.traffic.new_flows_per_sec
                );
            }
        }
        let reasons: Vec<String> = self
            .verdicts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(out, "datapath: {}", reasons.join(", "));
        out
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
