//! Real traffic through halb in each forwarding mode: a client makes HTTP
//! requests, each on a new connection, to the VIP (and to the IPv6 VIP); three halb-web backends
//! answer with their names. Checks that every request succeeds, that equal
//! weights share evenly and 1:2:3 weights share 1:2:3 (each within 10%),
//! and that removing a backend moves little more than its own flows
//! (within 2 percentage points of Maglev's ideal).
//!
//! Full NAT and DSR run on one arm, keep-client NAT on two (see the
//! diagram in halb_tests::scenario).

use std::collections::BTreeMap;

use halb_tests::{
    agent::{Agent, halb_bin},
    scenario::{Mode, Scenario, WEBS},
    traffic::{Source, Tally, http_requests, request},
};

fn scenario(mode: Mode) -> Scenario {
    Scenario::build(mode, false, env!("CARGO_BIN_EXE_halb-web").as_ref())
}

fn balancer(lab: &Scenario, mode: Mode, weights: [u32; 3]) -> Agent {
    lab.halb(&halb_bin(), mode, weights)
}

fn requests(lab: &Scenario, count: usize, source: Source) -> Tally {
    http_requests(&lab.client.ns, lab.vip(), count, 16, source)
}

fn assert_all_ok(what: &str, tally: &Tally) {
    assert_eq!(
        tally.failed,
        0,
        "{what}: {} of {} requests failed: {:?}",
        tally.failed,
        tally.ok + tally.failed,
        tally.errors
    );
}

/// Each backend's share within 10% (relative) of `weights`' share.
fn assert_shares(what: &str, tally: &Tally, weights: [u32; 3]) {
    let sum: u32 = weights.iter().sum();
    for (name, weight) in WEBS.iter().zip(weights) {
        let want = weight as f64 / sum as f64;
        let got = tally.share(name);
        assert!(
            (got - want).abs() <= 0.10 * want,
            "{what}: {name} got {:.3} of requests, want {want:.3} +-10%: {:?}",
            got,
            tally.by_backend
        );
    }
}

fn backends_by_port(tally_ports: &[(u16, String)]) -> BTreeMap<u16, String> {
    tally_ports.iter().cloned().collect()
}

/// Which backend answers each of `count` fixed source ports.
fn map_flows(lab: &Scenario, first: u16, count: usize) -> Vec<(u16, String)> {
    let vip = lab.vip();
    lab.client.ns.run(|| {
        (0..count)
            .map(|i| {
                let body = request(vip, Source::FixedPorts { first }, i)
                    .unwrap_or_else(|e| panic!("flow {i}: {e}"));
                (first + i as u16, body)
            })
            .collect()
    })
}

fn run_mode(mode: Mode, label: &str) {
    let lab = scenario(mode);

    let agent = balancer(&lab, mode, [1, 1, 1]);
    let tally = requests(&lab, 10_000, Source::Ephemeral);
    eprintln!(
        "{label}: 10000 requests in {:?}: {:?}",
        tally.elapsed, tally.by_backend
    );
    assert_all_ok(label, &tally);
    assert_eq!(tally.ok, 10_000);
    assert_shares(&format!("{label} equal weights"), &tally, [1, 1, 1]);
    // IPv6: the same service on the IPv6 VIP, to the backends' IPv6 addresses.
    let tally = http_requests(&lab.client.ns, lab.vip6(), 3_000, 16, Source::Ephemeral);
    eprintln!(
        "{label} IPv6: 3000 requests in {:?}: {:?}",
        tally.elapsed, tally.by_backend
    );
    assert_all_ok(&format!("{label} IPv6"), &tally);
    assert_shares(&format!("{label} IPv6"), &tally, [1, 1, 1]);
    drop(agent);

    let agent = balancer(&lab, mode, [1, 2, 3]);
    let tally = requests(&lab, 6_000, Source::Ephemeral);
    assert_all_ok(label, &tally);
    assert_shares(&format!("{label} weights 1:2:3"), &tally, [1, 2, 3]);
    drop(agent);

    // The same 3000 flows (5-tuples) before and after web3 leaves.
    let flows = 3000;
    let agent = balancer(&lab, mode, [1, 1, 1]);
    let before = backends_by_port(&map_flows(&lab, 20_000, flows));
    drop(agent);
    let agent = balancer(&lab, mode, [1, 1, 0]);
    let after = backends_by_port(&map_flows(&lab, 20_000, flows));
    drop(agent);
    let changed = before.iter().filter(|(p, b)| after[p] != **b).count() as f64 / flows as f64;
    // Ideal: exactly the flows web3 had move, no other.
    let ideal = before.values().filter(|b| *b == "web3").count() as f64 / flows as f64;
    eprintln!("{label}: removing web3 moved {changed:.4} of flows; ideal {ideal:.4}");
    assert!(
        (changed - ideal).abs() <= 0.02,
        "{label}: {changed:.4} of flows changed backend, Maglev ideal {ideal:.4}"
    );
}

#[test]
fn full_nat_one_arm() {
    run_mode(Mode::Nat, "nat");
}

#[test]
fn nat_keeping_the_client_address_two_arms() {
    run_mode(Mode::NatKeepClient, "nat keep-client");
}

#[test]
fn direct_server_return() {
    run_mode(Mode::Dsr, "dsr");
}
