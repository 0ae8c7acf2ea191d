//! Real traffic through halb in each forwarding mode: a client makes HTTP
//! requests, each on a new connection, to the VIP; three halb-web backends
//! answer with their names. Checks that every request succeeds, that equal
//! weights share evenly and 1:2:3 weights share 1:2:3 (each within 10%),
//! and that removing a backend moves little more than its own flows
//! (within 2 percentage points of Maglev's ideal).
//!
//! ```text
//! one arm (nat, dsr):
//!   client .10 ---+--- lb .2 (halb, VIP .100 on eth0) ---+--- web1-3 .11-.13
//!                 198.18.0.0/24, one bridge
//! two arms (nat with keep_client_address):
//!   client 198.18.0.10 --- eth0 [lb] eth1 --- web1-3 198.18.1.11-.13
//!          198.18.0.0/24   .0.2     .1.2      default route via 198.18.1.2
//! ```

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use halb_tests::{
    agent::Agent,
    netns::NetNs,
    process::ChildGuard,
    topo::{HOST_IF, Host, Lan},
    traffic::{Source, Tally, http_requests},
};

const VIP: &str = "198.18.0.100";
const WEBS: [&str; 3] = ["web1", "web2", "web3"];

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nat,
    NatKeepClient,
    Dsr,
}

/// The client, the balancer, three backends with halb-web running.
struct Lab {
    client: Host,
    lb: NetNs,
    backends: Vec<(String, NetNs)>,
    _webs: Vec<ChildGuard>,
    _lans: Vec<Lan>,
}

fn lab(mode: Mode) -> Lab {
    let mut front = Lan::new();
    let client = front.attach(NetNs::new("client"), &["198.18.0.10/24"]);
    let lb = NetNs::new("lb");
    front.plug(&lb, HOST_IF, &["198.18.0.2/24"]);
    // Clients reach the VIP through the balancer (VRRP will put it there).
    lb.ip(&["addr", "add", &format!("{VIP}/32"), "dev", HOST_IF]);
    let mut lans = vec![];
    let mut backends = vec![];
    let two_arms = mode == Mode::NatKeepClient;
    let mut back = Lan::new();
    if two_arms {
        back.plug(&lb, "eth1", &["198.18.1.2/24"]);
    }
    for (i, name) in WEBS.iter().enumerate() {
        let ns = NetNs::new(name);
        let addr = if two_arms {
            format!("198.18.1.{}", 11 + i)
        } else {
            format!("198.18.0.{}", 11 + i)
        };
        let lan = if two_arms { &mut back } else { &mut front };
        lan.plug(&ns, HOST_IF, &[&format!("{addr}/24")]);
        match mode {
            Mode::NatKeepClient => {
                ns.ip(&["route", "add", "default", "via", "198.18.1.2"]);
            }
            Mode::Dsr => {
                // The backend holds the VIP on lo and never answers ARP for it.
                ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
                ns.exec("sysctl", &["-qw", "net.ipv4.conf.all.arp_ignore=1"]);
                ns.exec("sysctl", &["-qw", "net.ipv4.conf.all.arp_announce=2"]);
            }
            Mode::Nat => {}
        }
        backends.push((addr, ns));
    }
    lans.push(front);
    lans.push(back);
    let webs = backends
        .iter()
        .zip(WEBS)
        .map(|((_, ns), name)| {
            let mut command = ns.command(env!("CARGO_BIN_EXE_halb-web"));
            command.args([name, "0.0.0.0:80"]);
            let web = ChildGuard::spawn(name, command, false);
            web.lines()
                .wait_for("listening", Duration::from_secs(5))
                .expect("halb-web started");
            web
        })
        .collect();
    Lab {
        client,
        lb,
        backends,
        _webs: webs,
        _lans: lans,
    }
}

impl Lab {
    /// Starts halb on the balancer with `weights` for web1-3 (0 leaves one out).
    fn balancer(&self, mode: Mode, weights: [u32; 3]) -> Agent {
        let interfaces = if mode == Mode::NatKeepClient {
            "[\"eth0\", \"eth1\"]"
        } else {
            "[\"eth0\"]"
        };
        let mode_lines = match mode {
            Mode::Nat => "snat_address = \"198.18.0.2\"",
            Mode::NatKeepClient => "keep_client_address = true",
            Mode::Dsr => "mode = \"dsr\"",
        };
        let mut backends = String::new();
        for ((addr, _), weight) in self.backends.iter().zip(weights) {
            if weight > 0 {
                backends +=
                    &format!("[[service.backend]]\naddress = \"{addr}\"\nweight = {weight}\n");
            }
        }
        let mut agent = Agent::start(&self.lb, "lb", |pin_dir| {
            format!(
                "[datapath]\ninterfaces = {interfaces}\npin_dir = \"{}\"\n\n[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\n{mode_lines}\n{backends}",
                pin_dir.display()
            )
        });
        agent.wait_attached();
        agent
    }

    fn requests(&self, count: usize, source: Source) -> Tally {
        let vip: SocketAddr = format!("{VIP}:80").parse().expect("VIP");
        http_requests(&self.client.ns, vip, count, 16, source)
    }
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
fn map_flows(lab: &Lab, first: u16, count: usize) -> Vec<(u16, String)> {
    let vip: SocketAddr = format!("{VIP}:80").parse().expect("VIP");
    lab.client.ns.run(|| {
        (0..count)
            .map(|i| {
                let body = halb_tests::traffic::request(vip, Source::FixedPorts { first }, i)
                    .unwrap_or_else(|e| panic!("flow {i}: {e}"));
                (first + i as u16, body)
            })
            .collect()
    })
}

fn run_mode(mode: Mode, label: &str) {
    let lab = lab(mode);

    let agent = lab.balancer(mode, [1, 1, 1]);
    let tally = lab.requests(10_000, Source::Ephemeral);
    eprintln!(
        "{label}: 10000 requests in {:?}: {:?}",
        tally.elapsed, tally.by_backend
    );
    assert_all_ok(label, &tally);
    assert_eq!(tally.ok, 10_000);
    assert_shares(&format!("{label} equal weights"), &tally, [1, 1, 1]);
    drop(agent);

    let agent = lab.balancer(mode, [1, 2, 3]);
    let tally = lab.requests(6_000, Source::Ephemeral);
    assert_all_ok(label, &tally);
    assert_shares(&format!("{label} weights 1:2:3"), &tally, [1, 2, 3]);
    drop(agent);

    // The same 3000 flows (5-tuples) before and after web3 leaves.
    let flows = 3000;
    let agent = lab.balancer(mode, [1, 1, 1]);
    let before = backends_by_port(&map_flows(&lab, 20_000, flows));
    drop(agent);
    let agent = lab.balancer(mode, [1, 1, 0]);
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
