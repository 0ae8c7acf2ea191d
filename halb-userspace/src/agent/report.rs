//! What the agent reports: `halb status` (and the metrics page built from
//! it), with rates from counters sampled once a second.

use std::{net::SocketAddr, time::Instant};

use super::Agent;
use crate::backends::BackendKey;
use crate::{
    config,
    control::status::{BackendStatus, ServiceStatus, Status, Traffic},
    dataplane::{LoadedDatapath, sync::Sync},
};
use halb_common::stats::{TrafficCounters, VerdictCounters};

impl Agent {
    pub(super) fn status(&self) -> Status {
        let mut status = Status {
            vrrp: self.routers.statuses(),
            http: self.proxy.status(),
            sync: self.conn_sync.as_ref().map(|s| s.status()),
            bgp: self.bgp.as_ref().map(|b| Box::new(b.status())),
            ..Status::default()
        };
        if let Ok(v) = self.datapath.maps.verdict_counters() {
            for (name, value) in VerdictCounters::FIELD_NAMES.iter().zip(v.values()) {
                status.verdicts.insert((*name).to_owned(), value);
            }
        }
        for applied in self.sync.services() {
            let c = &applied.config;
            let backends = applied
                .backends
                .iter()
                .map(|b| {
                    let addr = SocketAddr::new(b.config.address, b.config.port);
                    BackendStatus {
                        address: addr,
                        weight: b.config.weight,
                        health: self.states.health(&BackendKey::service(&c.name, addr)),
                        admin: self.states.admin(&BackendKey::service(&c.name, addr)),
                        state: b.state,
                        reason: self.states.down_reason(addr).map(str::to_owned),
                        traffic: self
                            .rates
                            .backend(b.id, self.datapath.maps.backend_counters(b.id).ok()),
                    }
                })
                .collect();
            status.services.push(ServiceStatus {
                name: c.name.clone(),
                vip: c.vip.to_string(),
                port: c.port,
                protocol: format!("{:?}", c.protocol).to_lowercase(),
                mode: match c.mode {
                    config::validate::Mode::Nat { .. } => "nat",
                    config::validate::Mode::NatKeepClient => "nat-keep-client",
                    config::validate::Mode::Dsr => "dsr",
                }
                .to_owned(),
                table_digest: applied.digest.clone(),
                traffic: self.rates.service(
                    applied.id,
                    self.datapath.maps.service_counters(applied.id).ok(),
                ),
                backends,
            });
        }
        status
    }
}

/// Counters sampled once a second, to give rates.
#[derive(Default)]
pub(super) struct Rates {
    last: Option<Sample>,
    previous: Option<Sample>,
}

struct Sample {
    at: Instant,
    services: std::collections::HashMap<u32, TrafficCounters>,
    backends: std::collections::HashMap<u32, TrafficCounters>,
}

impl Rates {
    pub(super) fn sample(&mut self, datapath: &LoadedDatapath, sync: &Sync) {
        let mut sample = Sample {
            at: Instant::now(),
            services: Default::default(),
            backends: Default::default(),
        };
        for s in sync.services() {
            if let Ok(c) = datapath.maps.service_counters(s.id) {
                sample.services.insert(s.id, c);
            }
            for b in &s.backends {
                if let Ok(c) = datapath.maps.backend_counters(b.id) {
                    sample.backends.insert(b.id, c);
                }
            }
        }
        self.previous = self.last.replace(sample);
    }

    /// Service `id`'s counters as read `now`, with the rates of the last
    /// sampling period.
    fn service(&self, id: u32, now: Option<TrafficCounters>) -> Traffic {
        self.traffic(now, |s| s.services.get(&id).copied())
    }

    fn backend(&self, id: u32, now: Option<TrafficCounters>) -> Traffic {
        self.traffic(now, |s| s.backends.get(&id).copied())
    }

    fn traffic(
        &self,
        now: Option<TrafficCounters>,
        pick: impl Fn(&Sample) -> Option<TrafficCounters>,
    ) -> Traffic {
        let totals = now.unwrap_or_default();
        let mut traffic = Traffic {
            packets: totals.packets,
            bytes: totals.bytes,
            new_flows: totals.new_flows,
            ..Traffic::default()
        };
        if let (Some(last), Some(previous)) = (&self.last, &self.previous) {
            let now = pick(last).unwrap_or_default();
            let before = pick(previous).unwrap_or_default();
            let secs = last.at.duration_since(previous.at).as_secs_f64().max(0.001);
            traffic.packets_per_sec = now.packets.saturating_sub(before.packets) as f64 / secs;
            traffic.bytes_per_sec = now.bytes.saturating_sub(before.bytes) as f64 / secs;
            traffic.new_flows_per_sec =
                now.new_flows.saturating_sub(before.new_flows) as f64 / secs;
        }
        traffic
    }
}
