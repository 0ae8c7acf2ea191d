//! An instance on a link in memory, on tokio's paused clock: elections,
//! preemption and a clean stop in milliseconds, without root or sockets.

use std::collections::BTreeSet;

use tokio::{sync::mpsc, time::Instant};

use super::*;
use crate::{
    config,
    vrrp::link::fake::{Did, FakeLink, Log},
};

const VIP: &str = "198.18.0.100";
const LOCAL: &str = "198.18.0.2";
const PEER: &str = "198.18.0.3";
const GROUP: &str = "224.0.0.18";

fn config(priority: u8) -> VrrpConfig {
    let text = format!(
        "[datapath]\ninterfaces = [\"eth0\"]\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\n\
         vrid = 51\npriority = {priority}\nadvert_interval = \"1s\"\n\
         virtual_addresses = [\"{VIP}/32\"]\n"
    );
    config::from_str(&text).expect("valid").vrrp.remove(0)
}

/// The instance, what feeds its link, what it did, and its tracking (kept
/// by the test: nothing tracked is down).
struct Started {
    instance: Instance,
    inbound: mpsc::UnboundedSender<Received>,
    log: Log,
    _tracking: watch::Sender<Tracked>,
}

fn start(priority: u8) -> Started {
    let (link, inbound, log) = FakeLink::new(LOCAL.parse().unwrap(), GROUP.parse().unwrap());
    let (tracking, tracked) = watch::channel(Tracked {
        interfaces_down: BTreeSet::new(),
        services_down: BTreeSet::new(),
    });
    Started {
        instance: Instance::start_on(config(priority), link, tracked, None),
        inbound,
        log,
        _tracking: tracking,
    }
}

/// A v3 advert from the peer with `priority`.
fn advert_from_peer(priority: u8) -> Received {
    let advert = Advert {
        version: Version::V3,
        vrid: 51,
        priority,
        interval: Duration::from_secs(1),
        addresses: vec![VIP.parse().unwrap()],
        password: None,
    };
    let (src, dst) = (PEER.parse().unwrap(), GROUP.parse().unwrap());
    Received {
        src,
        dst,
        ttl: 255,
        payload: packet::encode(&advert, src, dst, ChecksumMode::Rfc),
    }
}

/// When the instance first did `what`, counted from `t0`.
fn first(log: &Log, t0: Instant, what: &Did) -> Option<Duration> {
    log.lock()
        .unwrap()
        .iter()
        .find(|(_, d)| d == what)
        .map(|(at, _)| *at - t0)
}

/// The priorities of the adverts it sent, in order.
fn sent_priorities(log: &Log) -> Vec<u8> {
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|(_, d)| match d {
            Did::Sent { dst, message } => Some(
                packet::decode(
                    message,
                    LOCAL.parse().unwrap(),
                    *dst,
                    Version::V3,
                    ChecksumMode::Rfc,
                )
                .expect("a valid advert")
                .priority,
            ),
            _ => None,
        })
        .collect()
}

fn vip() -> IpAddr {
    VIP.parse().unwrap()
}

/// RFC 9568 §6.1: Master_Down_Interval = 3 × interval + Skew_Time,
/// Skew_Time = (256 − priority) × interval / 256.
fn master_down(priority: u8) -> Duration {
    Duration::from_secs(3) + Duration::from_secs(1) * u32::from(256 - priority as u16) / 256
}

fn close(got: Duration, want: Duration) -> bool {
    got.abs_diff(want) < Duration::from_millis(5)
}

#[tokio::test(start_paused = true)]
async fn a_lone_router_becomes_master_after_the_master_down_interval_and_announces() {
    let t0 = Instant::now();
    let Started { instance, log, .. } = start(100);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let added = first(&log, t0, &Did::Added(vip())).expect("took the VIP");
    assert!(close(added, master_down(100)), "took it after {added:?}");
    let announced = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, d)| *d == Did::Announced(vip()))
        .count();
    assert_eq!(announced, 5, "garp_count rounds at once");
    // The lease is taken with the address, then renewed with each advert.
    let renewed = first(&log, t0, &Did::Renewed(vec![vip()])).expect("leased");
    assert!(renewed <= added);
    // Adverts every interval from then on, at its own priority.
    let priorities = sent_priorities(&log);
    assert_eq!(priorities, vec![100, 100, 100], "{priorities:?}");
    assert_eq!(instance.status().state, VrrpState::Master);
    assert_eq!(instance.status().master, Some(LOCAL.parse().unwrap()));
}

#[tokio::test(start_paused = true)]
async fn a_backup_waits_while_a_higher_priority_master_speaks_then_takes_over() {
    let t0 = Instant::now();
    let Started {
        instance,
        inbound,
        log,
        ..
    } = start(100);
    for _ in 0..10 {
        inbound.send(advert_from_peer(200)).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        first(&log, t0, &Did::Added(vip())),
        None,
        "took the VIP from a live master"
    );
    assert_eq!(instance.status().state, VrrpState::Backup);
    assert_eq!(instance.status().master, Some(PEER.parse().unwrap()));
    assert!(sent_priorities(&log).is_empty(), "a backup advertised");
    // The master goes silent after its advert at t = 9 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let added = first(&log, t0, &Did::Added(vip())).expect("took over");
    let want = Duration::from_secs(9) + master_down(100);
    assert!(
        close(added, want),
        "took over after {added:?}, not {want:?}"
    );
    assert_eq!(instance.status().state, VrrpState::Master);
}

#[tokio::test(start_paused = true)]
async fn a_master_yields_to_a_higher_priority_and_releases_the_vip_and_its_lease() {
    let t0 = Instant::now();
    let Started {
        instance,
        inbound,
        log,
        ..
    } = start(100);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(instance.status().state, VrrpState::Master);
    // RFC 9568 §6.4.3: an advert with a greater priority makes it backup.
    inbound.send(advert_from_peer(200)).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(instance.status().state, VrrpState::Backup);
    let removed: Vec<Duration> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, d)| *d == Did::Removed(vip()))
        .map(|(at, _)| *at - t0)
        .collect();
    // Once at start (a crashed predecessor's), once on yielding.
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(close(removed[1], Duration::from_secs(5)), "{removed:?}");
    let ended = log
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(_, d)| matches!(d, Did::Ended(_) | Did::Renewed(_)))
        .map(|(_, d)| d.clone());
    assert_eq!(
        ended,
        Some(Did::Ended(vec![vip()])),
        "the lease outlived the VIP"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stopping_master_says_priority_zero_and_gives_the_vip_up() {
    let Started { instance, log, .. } = start(100);
    tokio::time::sleep(Duration::from_secs(5)).await;
    instance.shutdown().await;
    let priorities = sent_priorities(&log);
    assert_eq!(priorities.last(), Some(&0), "{priorities:?}");
    let last_vip = log
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(_, d)| matches!(d, Did::Added(_) | Did::Removed(_)))
        .map(|(_, d)| d.clone());
    assert_eq!(last_vip, Some(Did::Removed(vip())));
}
