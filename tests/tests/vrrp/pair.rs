//! Two halb nodes: election, failover on `kill -9`, preemption on and
//! off, and a clean stop handing over at once (priority 0).

use std::{net::SocketAddr, time::Duration};

use halb_tests::{
    ha::{HaPair, VIP, VIP6},
    traffic::{Source, http_requests},
};

use super::{master_down_interval, state, vrrp_v4, vrrp_v6, wait_state};

const INTERVAL: Duration = Duration::from_millis(100);

fn pair_config(priority: u8, preempt: bool) -> String {
    let extra = format!("preempt = {preempt}");
    vrrp_v4("VI_4", 51, priority, "100ms", &extra) + &vrrp_v6("VI_6", 52, priority, "100ms", &extra)
}

fn web() -> HaPair {
    HaPair::build(Some(env!("CARGO_BIN_EXE_halb-web").as_ref()))
}

fn vip() -> SocketAddr {
    format!("{VIP}:80").parse().unwrap()
}

fn vip6() -> SocketAddr {
    format!("[{VIP6}]:80").parse().unwrap()
}

#[test]
fn the_backup_takes_over_a_killed_master_and_the_master_preempts_back() {
    let pair = web();
    let lb1 = pair.start_halb(0, &pair_config(150, true));
    let lb2 = pair.start_halb(1, &pair_config(100, true));
    wait_state(&lb1, "VI_4", "master", Duration::from_secs(5));
    wait_state(&lb2, "VI_4", "backup", Duration::from_secs(5));
    wait_state(&lb1, "VI_6", "master", Duration::from_secs(5));
    assert_eq!(pair.holders(), [true, false]);
    assert!(pair.holds(0, VIP6) && !pair.holds(1, VIP6));
    let before = http_requests(&pair.client.ns, vip(), 20, 2, Source::Ephemeral);
    assert_eq!(before.failed, 0, "{:?}", before.errors);
    assert_eq!(pair.client_vip_mac(), Some(pair.nodes[0].mac()));

    let mut lb1 = lb1;
    lb1.crash();
    let took = pair.wait_until("lb2 announces the VIP", Duration::from_secs(5), |p| {
        p.client_vip_mac() == Some(p.nodes[1].mac())
    });
    let bound = master_down_interval(INTERVAL, 100) + Duration::from_millis(500);
    println!(
        "failover after kill -9: lb2 owns the VIP and the client has its MAC after {took:?} \
         (Master_Down_Interval {:?}, bound {bound:?})",
        master_down_interval(INTERVAL, 100)
    );
    assert!(took <= bound, "failover took {took:?}, more than {bound:?}");
    assert_eq!(state(&lb2, "VI_4"), "master");
    assert!(pair.holds(1, VIP));
    wait_state(&lb2, "VI_6", "master", Duration::from_secs(2));
    assert!(pair.holds(1, VIP6));

    let after = http_requests(&pair.client.ns, vip(), 50, 5, Source::Ephemeral);
    assert_eq!(after.failed, 0, "{:?}", after.errors);
    let after6 = http_requests(&pair.client.ns, vip6(), 20, 2, Source::Ephemeral);
    assert_eq!(after6.failed, 0, "{:?}", after6.errors);
    let status: serde_json::Value =
        serde_json::from_str(&lb2.ctl(&["status", "--json"])).expect("status");
    let served = status["services"][0]["traffic"]["new_flows"]
        .as_u64()
        .unwrap();
    assert!(served >= 50, "lb2 scheduled {served} flows: {status}");

    // lb1 comes back: it clears the address it crashed with, starts as
    // backup, and preempts lb2's lower priority.
    let mut lb1 = lb1.restart(&pair.nodes[0].ns);
    lb1.wait_attached();
    let back = pair.wait_until("lb1 preempts", Duration::from_secs(10), |p| {
        p.holders() == [true, false] && p.client_vip_mac() == Some(p.nodes[0].mac())
    });
    println!("lb1 took the VIP back {back:?} after restarting");
    wait_state(&lb1, "VI_4", "master", Duration::from_secs(2));
    wait_state(&lb2, "VI_4", "backup", Duration::from_secs(2));
    let again = http_requests(&pair.client.ns, vip(), 20, 2, Source::Ephemeral);
    assert_eq!(again.failed, 0, "{:?}", again.errors);
}

#[test]
fn without_preemption_the_restarted_node_stays_backup() {
    let pair = web();
    let mut lb1 = pair.start_halb(0, &pair_config(150, false));
    wait_state(&lb1, "VI_4", "master", Duration::from_secs(5));
    let lb2 = pair.start_halb(1, &pair_config(100, false));
    wait_state(&lb2, "VI_4", "backup", Duration::from_secs(5));
    lb1.crash();
    // A killed halb leaves its address behind (as a killed keepalived
    // does): what counts is lb2 holding it and the LAN believing lb2.
    pair.wait_until("lb2 takes over", Duration::from_secs(5), |p| {
        p.holds(1, VIP) && p.client_vip_mac() == Some(p.nodes[1].mac())
    });
    let mut lb1 = lb1.restart(&pair.nodes[0].ns);
    lb1.wait_attached();
    wait_state(&lb1, "VI_4", "backup", Duration::from_secs(10));
    // Ten master-down intervals: lb1 never takes the VIP back.
    for _ in 0..40 {
        assert_eq!(pair.holders(), [false, true]);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(state(&lb1, "VI_4"), "backup");
    assert_eq!(state(&lb2, "VI_4"), "master");
}

#[test]
fn a_stopping_master_hands_over_without_waiting_for_the_timeout() {
    let pair = web();
    // One-second adverts: Master_Down_Interval 3.6 s, Skew_Time 0.6 s.
    let mut lb1 = pair.start_halb(0, &vrrp_v4("VI_4", 51, 150, "1s", ""));
    wait_state(&lb1, "VI_4", "master", Duration::from_secs(5));
    let lb2 = pair.start_halb(1, &vrrp_v4("VI_4", 51, 100, "1s", ""));
    wait_state(&lb2, "VI_4", "backup", Duration::from_secs(5));
    let started = std::time::Instant::now();
    lb1.process.stop(Duration::from_secs(5));
    pair.wait_until("lb2 takes over", Duration::from_secs(5), |p| {
        p.holders() == [false, true]
    });
    let took = started.elapsed();
    println!("after SIGTERM to the master, lb2 held the VIP within {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}: the priority-0 advert was not heeded (Master_Down_Interval is 3.6 s)"
    );
    let stopped = lb1.process.lines().snapshot().join("\n");
    assert!(stopped.contains("VRRP instance stopped"), "{stopped}");
}

#[test]
fn unicast_peers_elect_where_multicast_is_dropped() {
    let pair = HaPair::build(None);
    // The network drops VRRP multicast both ways; only unicast gets through.
    for node in &pair.nodes {
        node.ns
            .exec("nft", &["add", "table", "inet", "halb_nomcast"]);
        node.ns.exec(
            "nft",
            &["add chain inet halb_nomcast input { type filter hook input priority 0; }"],
        );
        node.ns.exec(
            "nft",
            &["add rule inet halb_nomcast input ip daddr 224.0.0.18 drop"],
        );
    }
    let peers = |other: usize| {
        format!(
            "unicast_peers = [\"{}\"]",
            halb_tests::ha::NODE_ADDRS[other]
        )
    };
    let mut lb1 = pair.start_halb(0, &vrrp_v4("VI_1", 51, 150, "100ms", &peers(1)));
    wait_state(&lb1, "VI_1", "master", Duration::from_secs(5));
    let lb2 = pair.start_halb(1, &vrrp_v4("VI_1", 51, 100, "100ms", &peers(0)));
    wait_state(&lb2, "VI_1", "backup", Duration::from_secs(5));
    // Ten master-down intervals as backup: lb1's unicast adverts arrive.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state(&lb2, "VI_1"), "backup");
    assert_eq!(pair.holders(), [true, false]);
    let seen = super::instance(&lb2, "VI_1");
    assert!(seen["adverts_received"].as_u64().unwrap() >= 15, "{seen}");
    assert_eq!(seen["master"], halb_tests::ha::NODE_ADDRS[0], "{seen}");
    lb1.crash();
    pair.wait_until("lb2 takes over", Duration::from_secs(5), |p| {
        p.holds(1, VIP) && p.client_vip_mac() == Some(p.nodes[1].mac())
    });
}

#[test]
fn a_killed_masters_kernel_stops_claiming_the_vips_once_its_lease_runs_out() {
    let pair = web();
    let mut lb1 = pair.start_halb(0, &pair_config(150, true));
    let lb2 = pair.start_halb(1, &pair_config(100, true));
    wait_state(&lb1, "VI_4", "master", Duration::from_secs(5));
    wait_state(&lb1, "VI_6", "master", Duration::from_secs(5));
    wait_state(&lb2, "VI_4", "backup", Duration::from_secs(5));
    lb1.crash();
    wait_state(&lb2, "VI_4", "master", Duration::from_secs(5));
    wait_state(&lb2, "VI_6", "master", Duration::from_secs(5));
    // lb1's kernel still has both VIPs on eth0, as a killed keepalived's
    // would; a client that asks for them must hear only lb2.
    assert!(pair.holds(0, VIP) && pair.holds(0, VIP6));
    let lb2_mac = pair.nodes[1].mac();
    for round in 0..10 {
        for (addr, target) in [(VIP, vip()), (VIP6, vip6())] {
            pair.client
                .ns
                .ip(&["neigh", "flush", "to", addr, "dev", "eth0"]);
            let tally = http_requests(&pair.client.ns, target, 1, 1, Source::Ephemeral);
            assert_eq!(tally.failed, 0, "round {round}, {addr}: {:?}", tally.errors);
            assert_eq!(
                pair.client_mac_for(addr).as_deref(),
                Some(lb2_mac.as_str()),
                "round {round}: the client resolved {addr} to another node"
            );
        }
    }
    let counters = halb_tests::netns::run_checked(
        pair.nodes[0]
            .ns
            .command(halb_tests::agent::halb_bin().to_str().unwrap())
            .args(["counters", "--pin-dir"])
            .arg(&lb1.pin_dir),
    );
    let counters = String::from_utf8_lossy(&counters.stdout).into_owned();
    let refused: u64 = counters
        .lines()
        .find_map(|l| l.trim().strip_prefix("drop_lease_expired"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no drop_lease_expired in {counters}"));
    assert!(
        refused >= 20,
        "lb1's datapath refused {refused} requests: {counters}"
    );
}
