//! The how-to's firewall warning: with VRRP blocked between the nodes
//! (nftables dropping protocol 112 on input) both become master; once it
//! is allowed again the lower-priority node yields to the first advert it
//! hears from the higher one, and they stay at one master.

use std::time::{Duration, Instant};

use halb_tests::{
    ha::{HaPair, NODE_ADDRS},
    wait,
};

use super::{instance, vrrp_v4, wait_state};

const INTERVAL: Duration = Duration::from_millis(200);

fn block_vrrp(ns: &halb_tests::netns::NetNs) {
    ns.exec("nft", &["add", "table", "inet", "halb_split"]);
    ns.exec(
        "nft",
        &["add chain inet halb_split input { type filter hook input priority 0; }"],
    );
    ns.exec(
        "nft",
        &["add rule inet halb_split input ip protocol vrrp drop"],
    );
}

fn allow_vrrp(ns: &halb_tests::netns::NetNs) {
    ns.exec("nft", &["delete", "table", "inet", "halb_split"]);
}

#[test]
fn blocked_vrrp_makes_two_masters_that_converge_once_allowed() {
    let pair = HaPair::build(None);
    let lb1 = pair.start_halb(0, &vrrp_v4("VI_1", 51, 150, "200ms", ""));
    wait_state(&lb1, "VI_1", "master", Duration::from_secs(5));
    let lb2 = pair.start_halb(1, &vrrp_v4("VI_1", 51, 100, "200ms", ""));
    wait_state(&lb2, "VI_1", "backup", Duration::from_secs(5));
    let lb1_transitions = instance(&lb1, "VI_1")["transitions"].clone();

    for node in &pair.nodes {
        block_vrrp(&node.ns);
    }
    pair.wait_until("split brain", Duration::from_secs(10), |p| {
        p.holders() == [true, true]
    });
    wait_state(&lb2, "VI_1", "master", Duration::from_secs(5));

    let started = Instant::now();
    for node in &pair.nodes {
        allow_vrrp(&node.ns);
    }
    pair.wait_until("one master again", Duration::from_secs(10), |p| {
        p.holders() == [true, false]
    });
    // How fast is for the benchmarks; printed here for the record.
    let took = started.elapsed();
    println!(
        "split brain healed in {took:?} ({:.1} advert intervals)",
        took.as_secs_f64() / INTERVAL.as_secs_f64()
    );
    // lb2 stepped down because it heard lb1 (RFC 9568 §6.4.3: a master
    // hearing a higher priority steps down), not by some timer.
    wait_state(&lb2, "VI_1", "backup", Duration::from_secs(5));
    let lb2_now = instance(&lb2, "VI_1");
    assert_eq!(
        (&lb2_now["last_transition"], &lb2_now["master"]),
        (&"master -> backup".into(), &NODE_ADDRS[0].into()),
        "{lb2_now}"
    );
    // One master, lb1, which never left it, and it stays so: checked
    // all along five advert intervals, so flapping fails.
    wait::holds("one master after the split", INTERVAL * 5, || {
        let (one, two) = (instance(&lb1, "VI_1"), instance(&lb2, "VI_1"));
        let holders = pair.holders();
        if one["state"] == "master"
            && one["transitions"] == lb1_transitions
            && two["state"] == "backup"
            && holders == [true, false]
        {
            Ok(())
        } else {
            Err(format!("holders {holders:?}; lb1 {one}; lb2 {two}"))
        }
    });
}
