//! halb and a real keepalived in one virtual router: VRRPv2 with
//! `auth_type PASS` and VRRPv3, each side as master in turn. Both must
//! agree on one master for 30 s, and the backup must take over when the
//! master crashes.

use std::time::{Duration, Instant};

use halb_tests::{
    agent::Agent,
    ha::{HaPair, VIP},
    keepalived::{Instance, Keepalived},
};

use super::{instance, master_down_interval, vrrp_v4, wait_state};

const HOLD: Duration = Duration::from_secs(30);
const PASSWORD: &str = "halbpass";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Master {
    Halb,
    Keepalived,
}

/// Node 0 runs halb, node 1 keepalived; `master` gets priority 150, the
/// other 100.
fn interop(version: u8, master: Master) {
    let pair = HaPair::build(None);
    let (halb_priority, keepalived_priority) = match master {
        Master::Halb => (150, 100),
        Master::Keepalived => (100, 150),
    };
    let (interval, interval_text, extra) = match version {
        2 => (
            Duration::from_secs(1),
            "1s",
            format!("version = 2\nauth_pass = \"{PASSWORD}\""),
        ),
        _ => (Duration::from_millis(100), "100ms", String::new()),
    };
    let keepalived_instance = Instance {
        version,
        vrid: 51,
        priority: keepalived_priority,
        advert_int: interval.as_secs_f64(),
        preempt: true,
        auth_pass: (version == 2).then(|| PASSWORD.to_owned()),
        virtual_address: VIP.to_owned(),
    };
    // The future master starts first and is alone; the backup joins it.
    let halb_config = vrrp_v4("VI_1", 51, halb_priority, interval_text, &extra);
    let (mut halb, mut keepalived): (Option<Agent>, Option<Keepalived>);
    let master_node = match master {
        Master::Halb => {
            halb = Some(pair.start_halb(0, &halb_config));
            wait_state(
                halb.as_ref().unwrap(),
                "VI_1",
                "master",
                Duration::from_secs(10),
            );
            keepalived = Some(Keepalived::start(&pair.nodes[1].ns, &keepalived_instance));
            0
        }
        Master::Keepalived => {
            keepalived = Some(Keepalived::start(&pair.nodes[1].ns, &keepalived_instance));
            keepalived
                .as_ref()
                .unwrap()
                .wait_for_log("Entering MASTER STATE", Duration::from_secs(10));
            halb = Some(pair.start_halb(0, &halb_config));
            wait_state(
                halb.as_ref().unwrap(),
                "VI_1",
                "backup",
                Duration::from_secs(10),
            );
            1
        }
    };
    let expected = if master_node == 0 {
        [true, false]
    } else {
        [false, true]
    };
    pair.wait_until(
        "the master holds the VIP alone",
        Duration::from_secs(10),
        |p| p.holders() == expected,
    );
    let agent = halb.as_ref().unwrap();
    let kad = keepalived.as_ref().unwrap();
    let transitions = instance(agent, "VI_1")["transitions"].as_u64().unwrap();
    let keepalived_masters = kad.count_log("Entering MASTER STATE");
    let started = Instant::now();
    while started.elapsed() < HOLD {
        assert_eq!(
            pair.holders(),
            expected,
            "the VIP moved after {:?} of the hold",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = instance(agent, "VI_1");
    assert_eq!(
        seen["transitions"].as_u64().unwrap(),
        transitions,
        "halb flapped: {seen}"
    );
    assert_eq!(kad.count_log("Entering MASTER STATE"), keepalived_masters);
    assert!(
        seen["rejected"]
            .as_object()
            .unwrap()
            .values()
            .all(|n| n == 0),
        "halb refused some of keepalived's adverts: {seen}"
    );
    if master_node == 1 {
        assert!(seen["adverts_received"].as_u64().unwrap() > 0, "{seen}");
        assert_eq!(seen["master"], "198.18.0.3", "{seen}");
    }

    // The master crashes; the backup takes over.
    let survivor = 1 - master_node;
    let started = Instant::now();
    match master {
        Master::Halb => halb.as_mut().unwrap().crash(),
        Master::Keepalived => keepalived.as_mut().unwrap().crash(),
    }
    pair.wait_until(
        "the backup announces the VIP",
        Duration::from_secs(10),
        |p| p.client_vip_mac() == Some(p.nodes[survivor].mac()) && p.holds(survivor, VIP),
    );
    let took = started.elapsed();
    let backup_priority = 100;
    let bound = master_down_interval(interval, backup_priority) + Duration::from_millis(500);
    println!(
        "VRRPv{version}, {master:?} master: held {HOLD:?} without flapping; \
         after its crash the backup took over in {took:?} (bound {bound:?})"
    );
    assert!(took <= bound, "failover took {took:?}");
    match master {
        Master::Halb => {
            keepalived
                .as_ref()
                .unwrap()
                .wait_for_log("Entering MASTER STATE", Duration::from_secs(1));
        }
        Master::Keepalived => wait_state(
            halb.as_ref().unwrap(),
            "VI_1",
            "master",
            Duration::from_secs(1),
        ),
    }
    drop(keepalived.take());
    drop(halb.take());
}

#[test]
fn keepalived_master_halb_backup_vrrp_v2_with_password() {
    interop(2, Master::Keepalived);
}

#[test]
fn halb_master_keepalived_backup_vrrp_v2_with_password() {
    interop(2, Master::Halb);
}

#[test]
fn keepalived_master_halb_backup_vrrp_v3() {
    interop(3, Master::Keepalived);
}

#[test]
fn halb_master_keepalived_backup_vrrp_v3() {
    interop(3, Master::Halb);
}

/// VRRPv3 over IPv6 (adverts from link-local addresses to ff02::12):
/// keepalived master, halb backup; they agree for 10 s, then halb takes
/// the address over when keepalived crashes.
#[test]
fn keepalived_master_halb_backup_vrrp_v3_ipv6() {
    use halb_tests::ha::VIP6;

    let pair = HaPair::build(None);
    pair.wait_link_local();
    let mut keepalived = Keepalived::start(
        &pair.nodes[1].ns,
        &Instance {
            version: 3,
            vrid: 52,
            priority: 150,
            advert_int: 0.1,
            preempt: true,
            auth_pass: None,
            virtual_address: VIP6.to_owned(),
        },
    );
    keepalived.wait_for_log("Entering MASTER STATE", Duration::from_secs(10));
    let halb = pair.start_halb(0, &super::vrrp_v6("VI_6", 52, 100, "100ms", ""));
    wait_state(&halb, "VI_6", "backup", Duration::from_secs(10));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        assert!(pair.holds(1, VIP6) && !pair.holds(0, VIP6));
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = instance(&halb, "VI_6");
    assert_eq!(seen["state"], "backup", "{seen}");
    assert!(seen["adverts_received"].as_u64().unwrap() >= 50, "{seen}");
    assert!(
        seen["rejected"]
            .as_object()
            .unwrap()
            .values()
            .all(|n| n == 0),
        "halb refused some of keepalived's IPv6 adverts: {seen}"
    );
    assert!(
        seen["master"].as_str().unwrap().starts_with("fe80::"),
        "{seen}"
    );
    keepalived.crash();
    wait_state(&halb, "VI_6", "master", Duration::from_secs(2));
    assert!(pair.holds(0, VIP6));
}
