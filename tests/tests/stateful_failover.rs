//! Connection sync between two halb nodes: with 200 kept-alive
//! connections, 2 long downloads and new connections all the time, the
//! master dies (kill -9 and its link down), comes back and preempts, and
//! then stops as planned; not one connection may break. And sync messages
//! that are forged, altered or replayed change nothing.

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use halb_tests::{
    agent::{Agent, halb_bin},
    failover_load::{FailoverLoad, LoadSpec},
    ha::{HaPair, NODE_ADDRS, VIP},
    synced::{KEY, Mode, SNAT, SYNC_PORT, prepare},
    wait,
};

fn start(pair: &HaPair, i: usize, mode: Mode) -> Agent {
    halb_tests::synced::start(pair, &halb_bin(), i, mode, true, "")
}

fn status(agent: &Agent) -> serde_json::Value {
    serde_json::from_str(&agent.ctl(&["status", "--json"])).expect("status JSON")
}

fn vrrp_state(agent: &Agent) -> String {
    status(agent)["vrrp"][0]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The agent's view of its one sync peer.
fn peer(agent: &Agent) -> serde_json::Value {
    status(agent)["sync"]["peers"][0].clone()
}

fn wait_master(pair: &HaPair, agent: &Agent, i: usize, what: &str) {
    let mac = pair.nodes[i].mac();
    wait::until(what, Duration::from_secs(15), || {
        let state = vrrp_state(agent);
        let client = pair.client_vip_mac();
        if state == "master" && client.as_deref() == Some(mac.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "lb{} is {state}, the client has the VIP at {client:?}",
                i + 1
            ))
        }
    });
}

/// Waits until `agent`'s peer has acknowledged at least `flows` flows.
fn wait_synced(agent: &Agent, flows: u64) {
    wait::until("flows synced to the peer", Duration::from_secs(10), || {
        let p = peer(agent);
        let sent = p["flows_sent"].as_u64().unwrap_or(0);
        // Acknowledged flows are the lag's samples.
        let acked = p["lag"]["samples"].as_u64().unwrap_or(0);
        if sent >= flows && acked >= flows && p["connected"] == true {
            Ok(())
        } else {
            Err(format!("peer {p}"))
        }
    });
}

/// Waits until the kept-alive connections have answered `requests` more
/// requests from now: traffic flows through whichever node is master.
fn answered_more(load: &FailoverLoad, requests: usize, what: &str, timeout: Duration) {
    let from = load.progress().kept_alive_requests;
    wait::until(what, timeout, || {
        let p = load.progress();
        (p.kept_alive_requests >= from + requests)
            .then_some(())
            .ok_or(format!("{p:?}"))
    });
}

fn vip() -> SocketAddr {
    format!("{VIP}:80").parse().unwrap()
}

fn link(pair: &HaPair, i: usize, up: bool) {
    pair.nodes[i]
        .ns
        .ip(&["link", "set", "eth0", if up { "up" } else { "down" }]);
}

/// The whole sequence for one mode, under load throughout.
fn failover_loses_nothing(mode: Mode) {
    let pair = HaPair::build(Some(env!("CARGO_BIN_EXE_halb-web").as_ref()));
    pair.wait_link_local();
    prepare(&pair, mode);
    let lb1 = start(&pair, 0, mode);
    wait_master(&pair, &lb1, 0, "lb1 becomes master");
    let lb2 = start(&pair, 1, mode);
    wait::until("lb2 is backup and synced", Duration::from_secs(10), || {
        let s = status(&lb2);
        if s["vrrp"][0]["state"] == "backup" && s["sync"]["ready"] == true {
            Ok(())
        } else {
            Err(format!("{}", s["sync"]))
        }
    });

    let load = FailoverLoad::start(
        &pair.client.ns,
        vip(),
        LoadSpec {
            kept_alive: 200,
            downloads: 2,
            download_ms: 25_000,
            new_conn_workers: 2,
        },
    );
    wait::until("traffic flows", Duration::from_secs(10), || {
        let p = load.progress();
        (p.kept_alive_requests >= 400 && p.new_ok >= 20)
            .then_some(())
            .ok_or(format!("{p:?}"))
    });
    wait_synced(&lb1, 202);

    // 1. The master node dies: its agent is killed and its link goes down.
    let mut lb1 = lb1;
    lb1.crash();
    link(&pair, 0, false);
    println!("{:?}: lb1 killed", load.elapsed());
    wait_master(&pair, &lb2, 1, "lb2 takes over");
    answered_more(
        &load,
        400,
        "traffic flows through lb2",
        Duration::from_secs(15),
    );

    // 2. It comes back, catches up by bulk resync, and preempts.
    link(&pair, 0, true);
    println!("{:?}: lb1 back", load.elapsed());
    let mut lb1 = lb1.restart(&pair.nodes[0].ns);
    lb1.wait_attached();
    wait::until("lb1 has lb2's table", Duration::from_secs(10), || {
        let resync = &peer(&lb1)["resync"];
        (resync["state"] == "done")
            .then_some(())
            .ok_or(format!("{resync}"))
    });
    let resync = peer(&lb1)["resync"].clone();
    println!(
        "restarted lb1 caught up by bulk resync: {} flows in {} ms",
        resync["flows"], resync["millis"]
    );
    assert!(resync["flows"].as_u64().unwrap() >= 202, "{resync}");
    wait_master(&pair, &lb1, 0, "lb1 preempts back");
    answered_more(
        &load,
        400,
        "traffic flows through lb1 again",
        Duration::from_secs(15),
    );
    wait_synced(&lb1, 1);

    // 3. A planned stop of the master.
    println!("{:?}: lb1 stops", load.elapsed());
    lb1.ctl(&["stop"]);
    wait_master(&pair, &lb2, 1, "lb2 takes over from a stopped lb1");
    answered_more(
        &load,
        400,
        "traffic flows through lb2 again",
        Duration::from_secs(15),
    );

    // And a while after the last transition: flows that only seem to
    // survive (a backlog waiting to be resent) would break now.
    answered_more(
        &load,
        8_000,
        "traffic flows through lb2 for a while",
        Duration::from_secs(30),
    );
    println!(
        "{:?}: stopping the load {:?}",
        load.elapsed(),
        load.progress()
    );
    let report = load.stop();
    println!("{mode:?}: {report}");
    if report.broken() > 0 {
        explain(&lb2, &report.errors);
    }
    assert_eq!(report.broken(), 0, "{mode:?}: {report}");
    assert_eq!(report.downloads, 2);
    let synced = peer(&lb2);
    assert_eq!(synced["rejected"], serde_json::json!({}), "{synced}");
    drop(lb1);
}

/// Prints what lb2 knows of the broken connections: its verdict counters
/// and the entries of their source ports in its flow and NAT maps.
fn explain(lb2: &Agent, errors: &[String]) {
    println!("lb2 verdicts: {}", status(lb2)["verdicts"]);
    let ports: Vec<u16> = errors
        .iter()
        .filter_map(|e| {
            e.split("from port ")
                .nth(1)?
                .split(':')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let maps = halb::dataplane::maps::DatapathMaps::open_pinned(&lb2.pin_dir).expect("pins");
    for (key, flow) in maps.flows.iter().filter_map(Result::ok) {
        if ports.contains(&u16::from_be(key.sport_be)) {
            println!("lb2 flow {key:?}: {flow:?}");
        }
    }
    for (key, nat) in maps.nat.iter().filter_map(Result::ok) {
        if ports.contains(&u16::from_be(nat.client_port_be)) {
            println!("lb2 nat {key:?}: {nat:?}");
        }
    }
}

#[test]
fn full_nat_failover_restart_preempt_and_stop_break_no_connection() {
    failover_loses_nothing(Mode::FullNat);
}

#[test]
fn keep_client_nat_failover_restart_preempt_and_stop_break_no_connection() {
    failover_loses_nothing(Mode::KeepClient);
}

#[test]
fn dsr_failover_restart_preempt_and_stop_break_no_connection() {
    failover_loses_nothing(Mode::Dsr);
}

/// Sends `datagram` to lb2's sync port from the client (no peer's address)
/// or from lb1's (a peer's).
fn send_from(pair: &HaPair, from: usize, datagram: &[u8]) {
    let ns = if from == 0 {
        &pair.nodes[0].ns
    } else {
        &pair.client.ns
    };
    let target: SocketAddr = format!("{}:{SYNC_PORT}", NODE_ADDRS[1]).parse().unwrap();
    ns.run(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
        socket.send_to(datagram, target).expect("send");
    });
}

#[test]
fn forged_altered_and_replayed_sync_messages_change_nothing() {
    let pair = HaPair::build(Some(env!("CARGO_BIN_EXE_halb-web").as_ref()));
    pair.wait_link_local();
    // lb1's address, but no lb1 agent: the test speaks for it, with a
    // capture of what a real lb1 sent.
    let lb2 = start(&pair, 1, Mode::FullNat);
    wait::until("lb2 is listening", Duration::from_secs(10), || {
        (vrrp_state(&lb2) == "master")
            .then_some(())
            .ok_or("not master".into())
    });
    let flows_before = lb2_flows(&lb2);
    // Unauthenticated (wrong key), malformed, and from a stranger.
    let record = forged_flow_message(b"not the shared key at all!");
    send_from(&pair, 0, &record);
    send_from(&pair, 0, b"HLBS\x01garbage that is not a message at all");
    send_from(&pair, 0, &inconsistent_message(KEY.as_bytes()));
    send_from(&pair, 1, &forged_flow_message(KEY.as_bytes()));
    // Authentic, then the same datagram again, then altered.
    let authentic = forged_flow_message(KEY.as_bytes());
    send_from(&pair, 0, &authentic);
    send_from(&pair, 0, &authentic);
    let mut altered = forged_flow_message(KEY.as_bytes());
    let last = altered.len() - 20;
    altered[last] ^= 1;
    send_from(&pair, 0, &altered);
    wait::until("every message counted", Duration::from_secs(5), || {
        let p = peer(&lb2);
        let r = &p["rejected"];
        let ok =
            r["bad_mac"] == 2 && r["replayed"] == 1 && r["not_sync"] == 1 && r["malformed"] == 1;
        let unknown = status(&lb2)["sync"]["unknown_sender"] == 1;
        (ok && unknown).then_some(()).ok_or(format!("{p}"))
    });
    // Only the authentic one was installed: one flow more.
    assert_eq!(lb2_flows(&lb2), flows_before + 1);
    assert_eq!(peer(&lb2)["flows_received"], 1);
}

/// Flows in the agent's pinned flow map.
fn lb2_flows(agent: &Agent) -> usize {
    let maps = halb::dataplane::maps::DatapathMaps::open_pinned(&agent.pin_dir).expect("pins");
    maps.flows.keys().filter_map(Result::ok).count()
}

/// Signed with the right key, but a flow message without a sequence number.
fn inconsistent_message(key: &[u8]) -> Vec<u8> {
    use halb::connsync::wire::{self, Key, Kind, Message};
    let message = Message {
        kind: Kind::Flows,
        session: 42,
        nonce: 3,
        seq: 0,
        base: 1,
        ack_session: 0,
        ack: 0,
        records: Vec::new(),
    };
    wire::encode(&message, &Key::new(key))
}

/// A sync message from lb1's session with one flow of the web service,
/// signed with `key`.
fn forged_flow_message(key: &[u8]) -> Vec<u8> {
    use halb::connsync::wire::{self, FlowMode, FlowRecord, Key, Kind, Message, RecordKind};
    let message = Message {
        kind: Kind::Flows,
        session: 42,
        nonce: 7,
        seq: 1,
        base: 1,
        ack_session: 0,
        ack: 0,
        records: vec![FlowRecord {
            kind: RecordKind::New,
            mode: FlowMode::FullNat {
                snat: format!("{SNAT}:10007").parse().unwrap(),
            },
            closing: false,
            proto: 6,
            client: "198.18.0.10:40000".parse().unwrap(),
            vip: vip(),
            backend: "198.18.0.11:80".parse().unwrap(),
            client_mac: [2, 0, 0, 0, 0, 10],
            age_ms: 0,
        }],
    };
    wire::encode(&message, &Key::new(key))
}
