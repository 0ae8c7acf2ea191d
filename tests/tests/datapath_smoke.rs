//! First end-to-end proof of the chain: the agent loads halb-ebpf with aya,
//! attaches it to an interface in a namespace, the XDP program's aya-log
//! lines reach the agent's tracing output, its per-CPU counters count real
//! packets, bpftool dumps the pinned map by field name, and a clean stop
//! leaves nothing attached or pinned.
//!
//! ```text
//!   [client] eth0 ---- br0 [switch] ---- eth0 [lb] (halb, XDP native)
//!   198.18.0.10/24                         198.18.0.2/24
//!   2001:db8::10/64                        2001:db8::2/64
//! ```

/// Packets the XDP program received, read from the agent's pins.
fn read_rx_counters(pin_dir: &Path) -> Result<PacketCounters, halb::dataplane::maps::MapsError> {
    DatapathMaps::open_pinned(pin_dir)?.packet_counters()
}

use std::{
    net::{SocketAddr, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use halb::dataplane::maps::DatapathMaps;
use halb_common::{maps::MAP_STATS, stats::PacketCounters};
use halb_tests::{
    agent::Agent,
    netns::{NetNs, run_checked},
    topo::{HOST_IF, Lan},
};

const LB_V4: &str = "198.18.0.2:9";
const LB_V6: &str = "[2001:db8::2]:9";
const PAYLOAD: usize = 100;
/// Ethernet 14 + IPv4 20 + UDP 8 + payload.
const V4_FRAME: u64 = 14 + 20 + 8 + PAYLOAD as u64;

fn send_udp(ns: &NetNs, to: &str, count: usize) {
    let to: SocketAddr = to.parse().expect("address");
    ns.run(|| {
        let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let socket = UdpSocket::bind(bind).expect("bind UDP socket");
        for _ in 0..count {
            socket.send_to(&[0x5a; PAYLOAD], to).expect("send datagram");
        }
    });
}

/// Reads the counters until `done` holds, or panics after 5 s.
fn wait_counters(pin_dir: &Path, done: impl Fn(&PacketCounters) -> bool) -> PacketCounters {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counters = read_rx_counters(pin_dir).expect("read pinned counters");
        if done(&counters) {
            return counters;
        }
        assert!(
            Instant::now() < deadline,
            "counters never got there: {counters:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn xdp_program_counts_real_packets_and_logs_through_tracing() {
    let mut lan = Lan::new();
    let client = lan.attach(NetNs::new("client"), &["198.18.0.10/24", "2001:db8::10/64"]);
    let lb = lan.attach(NetNs::new("lb"), &["198.18.0.2/24", "2001:db8::2/64"]);

    let mut agent = Agent::start(&lb.ns, "lb", |pin_dir| {
        format!(
            "[datapath]\ninterfaces = [\"{HOST_IF}\"]\nxdp_mode = \"native\"\npin_dir = \"{}\"\n",
            pin_dir.display()
        )
    });
    agent.wait_attached();
    let link = lb.ns.ip(&["-d", "link", "show", HOST_IF]);
    assert!(
        link.contains("prog/xdp id"),
        "no native XDP program on {HOST_IF}: {link}"
    );

    // Warm up: resolves the client's neighbour entries for lb, and is the
    // first packet the program sees, which it logs through aya-log.
    send_udp(&client.ns, LB_V4, 1);
    send_udp(&client.ns, LB_V6, 1);
    let line = agent.wait_for_log(
        "datapath active: first packet on cpu",
        Duration::from_secs(10),
    );
    assert!(
        line.contains("INFO"),
        "aya-log record not at info level: {line}"
    );
    // The baseline once the warm-up is over: the client has resolved lb's
    // addresses (so none of the datagrams below waits in its neighbour
    // queue, or is dropped from it) and the IPv4 one is counted.
    for addr in ["198.18.0.2", "2001:db8::2"] {
        halb_tests::wait::until(
            &format!("the client resolving {addr}"),
            Duration::from_secs(10),
            || {
                let shown = client.ns.ip(&["neigh", "show", "to", addr, "dev", HOST_IF]);
                if shown.contains("lladdr") {
                    Ok(())
                } else {
                    Err(shown)
                }
            },
        );
    }
    let before = wait_counters(&agent.pin_dir, |c| c.ipv4 >= 1);
    send_udp(&client.ns, LB_V4, 100);
    send_udp(&client.ns, LB_V6, 50);
    let after = wait_counters(&agent.pin_dir, |c| {
        c.ipv4 >= before.ipv4 + 100 && c.ipv6 >= before.ipv6 + 50
    });
    // Nothing else sends IPv4 to lb, so every one of ours, and only ours:
    // exactly 100, and still 100 a while later (a packet counted twice, or
    // late, shows up meanwhile).
    halb_tests::wait::holds(
        "100 IPv4 packets counted",
        Duration::from_millis(500),
        || {
            let now = read_rx_counters(&agent.pin_dir).expect("read pinned counters");
            match now.ipv4 - before.ipv4 {
                100 => Ok(()),
                n => Err(format!("{n} counted: {before:?} -> {now:?}")),
            }
        },
    );
    assert!(after.bytes - before.bytes >= 100 * V4_FRAME);
    assert!(after.packets - before.packets >= 150);
    assert!(
        after.arp >= 1,
        "the client's ARP request was not counted: {after:?}"
    );

    // bpftool reads the same pinned map and names every field (BTF).
    let dumped = read_rx_counters(&agent.pin_dir).expect("read pinned counters");
    let map = agent.pin_dir.join(MAP_STATS);
    let dump = run_checked(
        std::process::Command::new("bpftool")
            .args(["--json", "map", "dump", "pinned"])
            .arg(&map),
    );
    let dump: serde_json::Value =
        serde_json::from_slice(&dump.stdout).expect("bpftool prints JSON");
    let per_cpu = dump[0]["formatted"]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("no BTF-formatted values in {dump}"));
    let field_sum = |field: &str| -> u64 {
        per_cpu
            .iter()
            .map(|v| {
                v["value"][field]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no field {field} in {v}"))
            })
            .sum()
    };
    // Counters only grow: each field bpftool shows lies between our reads
    // just before and just after its dump (IPv6 neighbour discovery may
    // still be counting), so a field misnamed or misplaced in the BTF fails.
    let now = read_rx_counters(&agent.pin_dir).expect("read pinned counters");
    for (i, field) in PacketCounters::FIELD_NAMES.iter().enumerate() {
        let (low, high) = (dumped.values()[i], now.values()[i]);
        let shown = field_sum(field);
        assert!(
            (low..=high).contains(&shown),
            "bpftool shows {field} = {shown}, ours read {low} before and {high} after"
        );
    }

    // A clean stop detaches and unpins.
    let pin_dir = agent.pin_dir.clone();
    let mut agent = agent;
    let status = agent.process.stop(Duration::from_secs(5));
    assert!(status.success(), "halb exited with {status}");
    assert!(!pin_dir.exists(), "{} still pinned", pin_dir.display());
    let link = lb.ns.ip(&["-d", "link", "show", HOST_IF]);
    assert!(!link.contains("xdp"), "XDP still attached: {link}");
}
