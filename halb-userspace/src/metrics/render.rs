//! Prometheus text exposition of what `halb status` shows, plus the
//! datapath's verdicts and packet counters and the agent's process figures,
//! served at `/metrics` on `[admin] metrics`.

use std::fmt::Write as _;

use halb_common::stats::PacketCounters;

use crate::control::status::{Status, VrrpState};

/// The metrics page for `status` and the datapath's `packets`.
pub fn render(status: &Status, packets: &PacketCounters) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let service_labels = |s: &crate::control::status::ServiceStatus| {
        format!(
            "service=\"{}\",vip=\"{}\",port=\"{}\",protocol=\"{}\"",
            escape(&s.name),
            s.vip,
            s.port,
            s.protocol
        )
    };
    let services = &status.services;
    family(
        "halb_service_packets_total",
        "counter",
        "Packets the datapath sent to the service's backends.",
        services
            .iter()
            .map(|s| (service_labels(s), s.traffic.packets.to_string()))
            .collect(),
    );
    family(
        "halb_service_bytes_total",
        "counter",
        "Bytes the datapath sent to the service's backends.",
        services
            .iter()
            .map(|s| (service_labels(s), s.traffic.bytes.to_string()))
            .collect(),
    );
    family(
        "halb_service_new_flows_total",
        "counter",
        "Flows the datapath scheduled for the service.",
        services
            .iter()
            .map(|s| (service_labels(s), s.traffic.new_flows.to_string()))
            .collect(),
    );
    let backends: Vec<_> = services
        .iter()
        .flat_map(|s| {
            s.backends.iter().map(move |b| {
                (
                    format!("service=\"{}\",backend=\"{}\"", escape(&s.name), b.address),
                    b,
                )
            })
        })
        .collect();
    let per_backend = |f: &dyn Fn(&crate::control::status::BackendStatus) -> String| {
        backends
            .iter()
            .map(|(l, b)| (l.clone(), f(b)))
            .collect::<Vec<_>>()
    };
    family(
        "halb_backend_packets_total",
        "counter",
        "Packets the datapath sent to the backend.",
        per_backend(&|b| b.traffic.packets.to_string()),
    );
    family(
        "halb_backend_bytes_total",
        "counter",
        "Bytes the datapath sent to the backend.",
        per_backend(&|b| b.traffic.bytes.to_string()),
    );
    family(
        "halb_backend_new_flows_total",
        "counter",
        "Flows the datapath scheduled on the backend.",
        per_backend(&|b| b.traffic.new_flows.to_string()),
    );
    family(
        "halb_backend_healthy",
        "gauge",
        "1 when the backend's health checks pass (or it has none).",
        per_backend(&|b| u8::from(b.health == crate::health::Health::Up).to_string()),
    );
    family(
        "halb_backend_drained",
        "gauge",
        "1 when an operator drained the backend.",
        per_backend(&|b| u8::from(b.admin == crate::backends::Admin::Drained).to_string()),
    );
    family(
        "halb_backend_weight",
        "gauge",
        "The backend's configured weight.",
        per_backend(&|b| b.weight.to_string()),
    );
    family(
        "halb_datapath_verdicts_total",
        "counter",
        "Packets by what the XDP program did with them, and why.",
        status
            .verdicts
            .iter()
            .map(|(k, v)| (format!("verdict=\"{k}\""), v.to_string()))
            .collect(),
    );
    family(
        "halb_datapath_packets_total",
        "counter",
        "Packets the XDP program ran on, by layer 3.",
        PacketCounters::FIELD_NAMES
            .iter()
            .zip(packets.values())
            .filter(|(name, _)| !matches!(**name, "packets" | "bytes"))
            .map(|(name, v)| (format!("l3=\"{name}\""), v.to_string()))
            .collect(),
    );
    let vrrp = |f: &dyn Fn(&crate::control::status::VrrpStatus) -> String| {
        status
            .vrrp
            .iter()
            .map(|v| {
                (
                    format!(
                        "instance=\"{}\",interface=\"{}\",vrid=\"{}\"",
                        escape(&v.name),
                        escape(&v.interface),
                        v.vrid
                    ),
                    f(v),
                )
            })
            .collect::<Vec<_>>()
    };
    family(
        "halb_vrrp_master",
        "gauge",
        "1 while the VRRP instance is MASTER.",
        vrrp(&|v| u8::from(v.state == VrrpState::Master).to_string()),
    );
    family(
        "halb_vrrp_state",
        "gauge",
        "The VRRP instance's state: 0 initialize, 1 backup, 2 master, 3 fault.",
        vrrp(&|v| v.state.number().to_string()),
    );
    family(
        "halb_vrrp_priority",
        "gauge",
        "The priority the instance advertises, after tracking.",
        vrrp(&|v| v.priority.to_string()),
    );
    family(
        "halb_vrrp_transitions_total",
        "counter",
        "State changes of the instance.",
        vrrp(&|v| v.transitions.to_string()),
    );
    family(
        "halb_vrrp_last_transition_timestamp_seconds",
        "gauge",
        "When the instance last changed state (Unix time).",
        vrrp(&|v| v.last_transition_at.unwrap_or(0.0).to_string()),
    );
    family(
        "halb_vrrp_adverts_sent_total",
        "counter",
        "Advertisements the instance sent.",
        vrrp(&|v| v.adverts_sent.to_string()),
    );
    family(
        "halb_vrrp_adverts_received_total",
        "counter",
        "Advertisements that passed every check.",
        vrrp(&|v| v.adverts_received.to_string()),
    );
    family(
        "halb_vrrp_rejected_total",
        "counter",
        "Received VRRP messages ignored, by reason.",
        status
            .vrrp
            .iter()
            .flat_map(|v| {
                v.rejected.iter().map(move |(reason, n)| {
                    (
                        format!("instance=\"{}\",reason=\"{reason}\"", escape(&v.name)),
                        n.to_string(),
                    )
                })
            })
            .collect(),
    );
    let http_backends: Vec<(String, &crate::control::status::HttpBackendStatus)> = status
        .http
        .iter()
        .flat_map(|h| {
            h.pools.iter().flat_map(move |p| {
                p.backends.iter().map(move |b| {
                    (
                        format!(
                            "service=\"{}\",pool=\"{}\",backend=\"{}\"",
                            escape(&h.name),
                            escape(&p.name),
                            b.address
                        ),
                        b,
                    )
                })
            })
        })
        .collect();
    let per_http_backend = |f: &dyn Fn(&crate::control::status::HttpBackendStatus) -> String| {
        http_backends
            .iter()
            .map(|(l, b)| (l.clone(), f(b)))
            .collect::<Vec<_>>()
    };
    family(
        "halb_http_backend_responses_total",
        "counter",
        "Responses a layer-7 pool backend gave through the proxy.",
        per_http_backend(&|b| b.responses.to_string()),
    );
    family(
        "halb_http_backend_connect_failures_total",
        "counter",
        "Failed attempts to reach a layer-7 pool backend (each retried).",
        per_http_backend(&|b| b.connect_failures.to_string()),
    );
    family(
        "halb_http_backend_active_requests",
        "gauge",
        "Requests in flight to a layer-7 pool backend.",
        per_http_backend(&|b| b.active.to_string()),
    );
    family(
        "halb_http_backend_healthy",
        "gauge",
        "1 when the pool backend's health checks pass.",
        per_http_backend(&|b| u8::from(b.health == crate::health::Health::Up).to_string()),
    );
    family(
        "halb_http_connections",
        "gauge",
        "Client connections open on a layer-7 service.",
        status
            .http
            .iter()
            .map(|h| {
                (
                    format!("service=\"{}\"", escape(&h.name)),
                    h.connections.to_string(),
                )
            })
            .collect(),
    );
    family(
        "halb_http_queued_requests",
        "gauge",
        "Requests waiting under a layer-7 service's maxconn.",
        status
            .http
            .iter()
            .map(|h| {
                (
                    format!("service=\"{}\"", escape(&h.name)),
                    h.queued.to_string(),
                )
            })
            .collect(),
    );
    if let Some(sync) = &status.sync {
        sync_families(&mut family, sync);
    }
    if let Some(bgp) = &status.bgp {
        bgp_families(&mut family, bgp);
    }
    let process = process_figures();
    for (name, kind, help, value) in process {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    out
}

/// Label values escape backslash, quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The standard process metrics, from /proc/self.
fn process_figures() -> Vec<(&'static str, &'static str, &'static str, String)> {
    let mut figures = Vec::new();
    let page = 4096.0;
    let ticks = 100.0;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which may contain spaces.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime 14, stime 15, rss 24 (1-based in proc(5); f starts at field 3).
        figures.push((
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time the agent spent, in seconds.",
            format!("{}", (num(11) + num(12)) / ticks),
        ));
        figures.push((
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the agent, in bytes.",
            format!("{}", num(21) * page),
        ));
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        figures.push((
            "process_open_fds",
            "gauge",
            "Open file descriptors of the agent.",
            fds.count().to_string(),
        ));
    }
    figures
}

/// BGP through BIRD: what is announced, whether BIRD took it, each session.
fn bgp_families(
    family: &mut impl FnMut(&str, &str, &str, Vec<(String, String)>),
    bgp: &crate::bgp::BgpStatus,
) {
    family(
        "halb_bgp_announced",
        "gauge",
        "1 for each VIP this node announces through BIRD.",
        bgp.announced
            .iter()
            .map(|vip| (format!("vip=\"{vip}\""), "1".to_owned()))
            .collect(),
    );
    family(
        "halb_bgp_applied",
        "gauge",
        "1 while BIRD runs the announcement as halb wrote it; 0 while BIRD is gone or refuses it (see halb status).",
        vec![(
            String::new(),
            u8::from(bgp.applied && bgp.error.is_none()).to_string(),
        )],
    );
    family(
        "halb_bgp_draining",
        "gauge",
        "1 while the VIPs carry GRACEFUL_SHUTDOWN (a planned stop).",
        vec![(String::new(), u8::from(bgp.draining).to_string())],
    );
    let session = |s: &crate::bgp::SessionStatus| format!("neighbor=\"{}\"", s.neighbor);
    family(
        "halb_bgp_session_up",
        "gauge",
        "1 while the BGP session with the neighbor is established.",
        bgp.sessions
            .iter()
            .map(|s| (session(s), u8::from(s.info == "Established").to_string()))
            .collect(),
    );
    family(
        "halb_bgp_bfd_up",
        "gauge",
        "1 while the BFD session with the neighbor is up.",
        bgp.sessions
            .iter()
            .filter(|s| s.bfd.is_some())
            .map(|s| {
                (
                    session(s),
                    u8::from(s.bfd.as_deref() == Some("Up")).to_string(),
                )
            })
            .collect(),
    );
}

/// Connection sync, per peer: state, counters, rejections and the lag.
fn sync_families(
    family: &mut impl FnMut(&str, &str, &str, Vec<(String, String)>),
    sync: &crate::connsync::SyncStatus,
) {
    let peer = |p: &crate::connsync::peer::PeerStatus| format!("peer=\"{}\"", p.address);
    let per_peer = |f: &dyn Fn(&crate::connsync::peer::PeerStatus) -> String| {
        sync.peers
            .iter()
            .map(|p| (peer(p), f(p)))
            .collect::<Vec<_>>()
    };
    family(
        "halb_sync_ready",
        "gauge",
        "1 once every peer's flow table has arrived (or the resync timeout passed).",
        vec![(String::new(), u8::from(sync.ready).to_string())],
    );
    family(
        "halb_sync_peer_connected",
        "gauge",
        "1 while the peer was heard from within the last second.",
        per_peer(&|p| u8::from(p.connected).to_string()),
    );
    family(
        "halb_sync_peer_stalled",
        "gauge",
        "1 while a sync message has waited over a second for the peer's acknowledgement.",
        per_peer(&|p| u8::from(p.stalled).to_string()),
    );
    type Counter = fn(&crate::connsync::peer::PeerStatus) -> u64;
    let counters: [(&str, &str, Counter); 7] = [
        (
            "halb_sync_flows_sent_total",
            "Flows sent to the peer.",
            |p| p.flows_sent,
        ),
        (
            "halb_sync_flows_received_total",
            "Flows received from the peer.",
            |p| p.flows_received,
        ),
        (
            "halb_sync_flows_refused_total",
            "Flows from the peer that could not be installed here.",
            |p| p.flows_refused,
        ),
        (
            "halb_sync_messages_sent_total",
            "Sync messages sent to the peer.",
            |p| p.messages_sent,
        ),
        (
            "halb_sync_messages_lost_total",
            "Messages of the peer's that did not arrive the first time.",
            |p| p.messages_lost,
        ),
        (
            "halb_sync_messages_resent_total",
            "Messages sent to the peer again.",
            |p| p.messages_resent,
        ),
        (
            "halb_sync_messages_dropped_total",
            "Unacknowledged messages given up (the peer gets the whole table).",
            |p| p.messages_dropped,
        ),
    ];
    for (name, help, value) in counters {
        family(name, "counter", help, per_peer(&|p| value(p).to_string()));
    }
    family(
        "halb_sync_rejected_total",
        "counter",
        "Sync messages refused, by reason (bad_mac, replayed, old_session, malformed, not_sync, bad_version).",
        sync.peers
            .iter()
            .flat_map(|p| {
                p.rejected.iter().map(move |(reason, n)| {
                    (format!("{},reason=\"{reason}\"", peer(p)), n.to_string())
                })
            })
            .collect(),
    );
    family(
        "halb_sync_unknown_sender_total",
        "counter",
        "Datagrams on the sync port from addresses that are no peer's.",
        vec![(String::new(), sync.unknown_sender.to_string())],
    );
    let mut lag = Vec::new();
    for p in &sync.peers {
        for (le, n) in &p.lag.buckets {
            lag.push((format!("{},le=\"{le}\"", peer(p)), n.to_string()));
        }
        lag.push((
            format!("{},le=\"+Inf\"", peer(p)),
            p.lag.samples.to_string(),
        ));
    }
    family(
        "halb_sync_lag_seconds_bucket",
        "histogram",
        "From the datapath's flow event to the peer's acknowledgement.",
        lag,
    );
    family(
        "halb_sync_lag_seconds_sum",
        "counter",
        "Sum of the sync lags.",
        per_peer(&|p| p.lag.sum_seconds.to_string()),
    );
    family(
        "halb_sync_lag_seconds_count",
        "counter",
        "Flows acknowledged by the peer (lag samples).",
        per_peer(&|p| p.lag.samples.to_string()),
    );
}
