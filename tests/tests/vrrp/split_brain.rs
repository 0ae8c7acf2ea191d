//! The how-to's firewall warning: with VRRP blocked between the nodes
//! (nftables dropping protocol 112 on input) both become master; once it
//! is allowed again they converge to one master within 3 advert intervals.

use std::time::{Duration, Instant};

use halb_tests::ha::HaPair;

use super::{vrrp_v4, wait_state};

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

    for node in &pair.nodes {
        block_vrrp(&node.ns);
    }
    pair.wait_until("split brain", Duration::from_secs(5), |p| {
        p.holders() == [true, true]
    });
    wait_state(&lb2, "VI_1", "master", Duration::from_secs(1));

    let started = Instant::now();
    for node in &pair.nodes {
        allow_vrrp(&node.ns);
    }
    pair.wait_until("one master again", Duration::from_secs(5), |p| {
        p.holders() == [true, false]
    });
    let took = started.elapsed();
    println!(
        "split brain healed in {took:?} ({:.1} advert intervals)",
        took.as_secs_f64() / INTERVAL.as_secs_f64()
    );
    assert!(took <= INTERVAL * 3, "converged after {took:?}");
    assert_eq!(super::state(&lb1, "VI_1"), "master");
    assert_eq!(super::state(&lb2, "VI_1"), "backup");
}
