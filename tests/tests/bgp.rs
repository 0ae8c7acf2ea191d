//! Active-active behind ECMP: three halb nodes announce the VIP through
//! their own BIRD to a router running BIRD; one client's flows spread over
//! them; a drained node, a stopped one (GRACEFUL_SHUTDOWN first) and a
//! killed one (BFD) leave the route, and come back, without one broken
//! DSR flow. And a BIRD that is gone, or refuses the config, shows in
//! `halb status`.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use halb_tests::{
    agent::Agent,
    bird::Bird,
    ecmp::{Ecmp, VIP, node_addr},
    failover_load::{FailoverLoad, LoadSpec},
    traffic::{Source, http_requests},
    wait,
};

fn status(agent: &Agent) -> serde_json::Value {
    serde_json::from_str(&agent.ctl(&["status", "--json"])).expect("status JSON")
}

fn vip() -> SocketAddr {
    format!("{VIP}:80").parse().unwrap()
}

fn web() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_halb-web").as_ref()
}

/// Waits until `agent`'s session with the router is established, with BFD up.
fn wait_session(agent: &Agent) {
    wait::until(
        "the BGP session with the router",
        Duration::from_secs(15),
        || {
            let bgp = status(agent)["bgp"].clone();
            let session = &bgp["sessions"][0];
            let up = bgp["applied"] == true
                && session["info"] == "Established"
                && session["bfd"] == "Up";
            up.then_some(()).ok_or(format!("{bgp}"))
        },
    );
}

/// The agent's /metrics page, from inside node `i`'s namespace.
fn metrics(topo: &Ecmp, i: usize) -> String {
    use std::io::{Read, Write};
    topo.nodes[i].ns.run(|| {
        let mut s = std::net::TcpStream::connect(halb_tests::agent::METRICS).expect("metrics port");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("ask");
        let mut page = String::new();
        s.read_to_string(&mut page).expect("read");
        page
    })
}

/// Withdrawals the router's BIRD has received from its session `name`.
fn withdraws_from(topo: &Ecmp, name: &str) -> u64 {
    let all = topo
        .router_bird
        .birdc(&format!("show protocols all {name}"));
    all.lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("Import withdraws:")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no import withdraws in {all}"))
}

fn new_flows(agent: &Agent) -> u64 {
    status(agent)["services"][0]["traffic"]["new_flows"]
        .as_u64()
        .unwrap_or(0)
}

fn load(topo: &Ecmp) -> FailoverLoad {
    let load = FailoverLoad::start(
        &topo.client.ns,
        vip(),
        LoadSpec {
            kept_alive: 60,
            downloads: 0,
            download_ms: 0,
            new_conn_workers: 2,
        },
    );
    wait::until("traffic flows", Duration::from_secs(10), || {
        let p = load.progress();
        (p.kept_alive_requests >= 200 && p.new_ok >= 20)
            .then_some(())
            .ok_or(format!("{p:?}"))
    });
    load
}

/// Waits until the load has answered `more` kept-alive requests from now.
fn answered_more(load: &FailoverLoad, more: usize) {
    let from = load.progress().kept_alive_requests;
    wait::until("traffic flows on", Duration::from_secs(15), || {
        let p = load.progress();
        (p.kept_alive_requests >= from + more)
            .then_some(())
            .ok_or(format!("{p:?}"))
    });
}

#[test]
fn flows_spread_over_three_nodes_and_a_drained_stopped_or_killed_node_breaks_none() {
    let topo = Ecmp::build(3, web());
    let mut agents: Vec<Agent> = (0..3).map(|i| topo.start_halb(i, "")).collect();
    topo.wait_next_hops(&[0, 1, 2], Duration::from_secs(20));
    for agent in &agents {
        wait_session(agent);
    }
    let page = metrics(&topo, 0);
    for line in [
        "halb_bgp_announced{vip=\"198.18.0.100\"} 1",
        "halb_bgp_applied 1",
        "halb_bgp_session_up{neighbor=\"198.18.1.1\"} 1",
        "halb_bgp_bfd_up{neighbor=\"198.18.1.1\"} 1",
    ] {
        assert!(page.contains(line), "{line} in {page}");
    }
    // The same backends up: the same table on every node.
    let digests: Vec<serde_json::Value> = agents
        .iter()
        .map(|a| status(a)["services"][0]["table_digest"].clone())
        .collect();
    assert!(
        digests[0].as_str().is_some_and(|d| d.len() == 16)
            && digests.iter().all(|d| *d == digests[0]),
        "{digests:?}"
    );

    // One client's new connections spread over all three nodes.
    let before: Vec<u64> = agents.iter().map(new_flows).collect();
    let tally = http_requests(&topo.client.ns, vip(), 300, 4, Source::Ephemeral);
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    let spread: Vec<u64> = agents
        .iter()
        .zip(&before)
        .map(|(a, b)| new_flows(a) - b)
        .collect();
    println!("300 connections of one client over the nodes: {spread:?}");
    assert!(spread.iter().all(|n| *n >= 30), "{spread:?}");

    let load = load(&topo);
    // A node whose backends are all drained cannot serve: withdrawn.
    Ecmp::set_backends(&agents[1], "drain");
    topo.wait_next_hops(&[0, 2], Duration::from_secs(5));
    Ecmp::set_backends(&agents[1], "enable");
    topo.wait_next_hops(&[0, 1, 2], Duration::from_secs(5));
    answered_more(&load, 300);

    // A planned stop: GRACEFUL_SHUTDOWN moves the traffic first (the
    // router's preference for the node's route drops), then the route goes.
    std::thread::scope(|s| {
        let node3 = &agents[2];
        let stop = s.spawn(move || node3.ctl(&["stop"]));
        // Seen on the router while it lasts (1 s), before the route goes.
        wait::until(
            "GRACEFUL_SHUTDOWN on the router",
            Duration::from_secs(5),
            || {
                let route = topo.router_bird.birdc(&format!("show route {VIP}/32 all"));
                route.contains("(65535,0)").then_some(()).ok_or(route)
            },
        );
        topo.wait_next_hops(&[0, 1], Duration::from_secs(5));
        stop.join().expect("halb stop");
    });
    let mut node3 = agents.pop().expect("node3");
    node3.process.stop(Duration::from_secs(10));
    answered_more(&load, 300);
    let node3 = node3.restart(&topo.nodes[2].ns);
    agents.push(node3);
    topo.wait_next_hops(&[0, 1, 2], Duration::from_secs(20));
    answered_more(&load, 300);

    // An agent killed and restarted on a live node: its pinned datapath
    // serves on, and the new agent withdraws nothing the old one announced.
    let withdrawn_before = withdraws_from(&topo, "node2");
    agents[1].crash();
    let mut node2 = agents.remove(1).restart(&topo.nodes[1].ns);
    node2.wait_attached();
    agents.insert(1, node2);
    wait_session(&agents[1]);
    wait::until(
        "the new agent's announcement applied",
        Duration::from_secs(10),
        || {
            let bgp = status(&agents[1])["bgp"].clone();
            (bgp["applied"] == true)
                .then_some(())
                .ok_or(format!("{bgp}"))
        },
    );
    assert_eq!(
        withdraws_from(&topo, "node2"),
        withdrawn_before,
        "the router heard a withdrawal from node2 across its agent's restart"
    );
    answered_more(&load, 300);

    // A node dies (agent and link): BFD tells the router.
    let died = Instant::now();
    agents[0].crash();
    topo.nodes[0].ns.ip(&["link", "set", "eth0", "down"]);
    topo.wait_next_hops(&[1, 2], Duration::from_secs(5));
    let withdrawn = died.elapsed();
    println!("killed node withdrawn by BFD after {withdrawn:?}");
    answered_more(&load, 300);
    topo.nodes[0].ns.ip(&["link", "set", "eth0", "up"]);
    let node1 = agents.remove(0).restart(&topo.nodes[0].ns);
    agents.insert(0, node1);
    topo.wait_next_hops(&[0, 1, 2], Duration::from_secs(20));
    answered_more(&load, 300);

    let report = load.stop();
    println!("{report}");
    assert_eq!(report.broken(), 0, "{report}");
    assert!(
        withdrawn < Duration::from_millis(1500),
        "BFD (3 x 100 ms) withdrew the dead node after {withdrawn:?}"
    );
    for (i, agent) in agents.iter().enumerate() {
        assert_eq!(
            status(agent)["bgp"]["error"],
            serde_json::Value::Null,
            "node{}",
            i + 1
        );
    }
}

#[test]
fn a_bird_that_is_gone_or_refuses_the_config_shows_in_status() {
    let mut topo = Ecmp::build(1, web());
    let agent = topo.start_halb(0, "");
    topo.wait_next_hops(&[0], Duration::from_secs(20));
    let set_all = |verb: &str| Ecmp::set_backends(&agent, verb);

    // A BIRD that hangs holds up nothing, and gets the latest state once
    // it answers again: the VIP withdrawn, after changes both ways.
    topo.node_birds[0].signal(libc::SIGSTOP);
    set_all("drain");
    set_all("enable");
    set_all("drain");
    assert!(agent.ctl(&["status"]).contains("bgp through"));
    topo.node_birds[0].signal(libc::SIGCONT);
    topo.wait_next_hops(&[], Duration::from_secs(20));
    set_all("enable");
    topo.wait_next_hops(&[0], Duration::from_secs(20));

    topo.node_birds[0].kill();
    wait::until("BIRD gone, in status", Duration::from_secs(5), || {
        let bgp = status(&agent)["bgp"].clone();
        (bgp["bird"].is_null() && bgp["sessions"][0]["state"] == "unknown")
            .then_some(())
            .ok_or(format!("{bgp}"))
    });
    // A change while BIRD is gone cannot be applied: a clear error...
    set_all("drain");
    wait::until("the error, in status", Duration::from_secs(5), || {
        let bgp = status(&agent)["bgp"].clone();
        let error = bgp["error"].as_str().unwrap_or_default();
        (error.contains("not reachable") && bgp["applied"] == false)
            .then_some(())
            .ok_or(format!("{bgp}"))
    });
    assert!(
        agent
            .ctl(&["status"])
            .contains("ERROR: BIRD is not reachable")
    );
    // ...and BIRD back gets it: nothing to announce now.
    topo.node_birds[0].restart();
    wait::until("applied once BIRD is back", Duration::from_secs(10), || {
        let bgp = status(&agent)["bgp"].clone();
        (bgp["applied"] == true && bgp["error"].is_null())
            .then_some(())
            .ok_or(format!("{bgp}"))
    });
    assert!(topo.next_hops().is_empty(), "{:?}", topo.next_hops());
    drop(agent);

    // A bird.conf that clashes with what halb writes: BIRD refuses it.
    let clashing = Bird::start(&topo.nodes[0].ns, "bird-clash", |include| {
        format!(
            "router id {};\nprotocol device {{ }}\nprotocol static halb_vips4 {{ ipv4; }}\ninclude \"{}\";\n",
            node_addr(0),
            include.display()
        )
    });
    topo.node_birds[0] = clashing;
    let agent = topo.start_halb(0, "");
    wait::until("BIRD's refusal, in status", Duration::from_secs(10), || {
        let bgp = status(&agent)["bgp"].clone();
        let error = bgp["error"].as_str().unwrap_or_default();
        (error.contains("refused") && error.contains("halb_vips4"))
            .then_some(())
            .ok_or(format!("{bgp}"))
    });
}
