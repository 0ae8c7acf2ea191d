//! The lab's active-active scenario (`cargo xtask run --scenario ecmp`): a
//! router running BIRD spreads the VIP over three halb nodes by ECMP, each
//! node announcing it through its own BIRD with BFD; DSR to three web
//! backends, whose answers go straight back through the router.
//!
//! ```text
//!  client .10       router (BIRD)        node1 .2  node2 .3  node3 .4  (halb + BIRD)
//!  -- 198.18.2.0/24 -- .1 [ ] .1 -- 198.18.1.0/24 --  web1 .11  web2 .12  web3 .13
//!        VIP 198.18.0.100: one route on the router, a next hop per node
//! ```

use std::{path::Path, time::Duration};

use anyhow::{Result, bail};
use halb_tests::{
    agent::{Agent, BPFFS},
    ecmp::{CLIENT, Ecmp, VIP, node_addr},
    netns::NetNs,
};

use crate::{
    build::Binaries,
    console::{self, say, show},
    signals,
};

const NODES: usize = 3;

/// Starts the scenario, prints its guide and waits for Ctrl-C (or for no
/// node to be left); returning tears it all down.
pub fn up_until_stopped(bins: &Binaries, lab: &str) -> Result<()> {
    let topo = Ecmp::build_with(NODES, &bins.web, &|role| {
        NetNs::named(&format!("{lab}-{role}"))
    });
    let mut agents = Vec::new();
    for i in 0..NODES {
        let name = format!("{lab}-node{}", i + 1);
        let pin_dir = Path::new(BPFFS).join(&name);
        let mut agent =
            Agent::start_named(&topo.nodes[i].ns, &name, &bins.halb, pin_dir, true, |pin| {
                topo.halb_config(i, pin, "")
            });
        agent.wait_attached();
        agents.push(agent);
    }
    say!("lab: waiting for the router to learn the VIP from all three nodes");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while topo.next_hops().len() < NODES {
        if signals::stop_requested() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the router has next hops {:?} for {VIP} after 30 s; its BIRD: {}",
                topo.next_hops(),
                topo.router_bird.birdc("show protocols")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    print_guide(bins, &topo, &agents, lab);
    let mut running = [true; NODES];
    while !signals::stop_requested() {
        std::thread::sleep(Duration::from_millis(200));
        console::check();
        for (i, (agent, running)) in agents.iter_mut().zip(&mut running).enumerate() {
            if *running && let Some(status) = agent.process.try_exit_status() {
                say!("lab: halb on node{} exited ({status})", i + 1);
                *running = false;
            }
        }
        if !running.contains(&true) {
            say!("lab: no node is left");
            signals::request_stop();
        }
    }
    console::check();
    say!("lab: tearing down");
    drop(agents);
    drop(topo);
    Ok(())
}

fn print_guide(bins: &Binaries, topo: &Ecmp, agents: &[Agent], lab: &str) {
    let c = topo.client.ns.name();
    let r = topo.router.name();
    let halb = bins.halb.display();
    let router_bird = topo.router_bird.socket.display();
    let node1_bird = topo.node_birds[0].socket.display();
    let sockets: Vec<String> = agents
        .iter()
        .map(|a| a.control_socket.display().to_string())
        .collect();
    let try_lines = [
        (
            format!("birdc -s {router_bird} show route {VIP}/32 all"),
            "the router's BIRD: three BGP routes to the VIP, one from each node, and its best",
        ),
        (
            format!("ip -n {r} route show {VIP}"),
            "in the router's kernel, one route with three next hops (merge paths: ECMP)",
        ),
        (
            format!("birdc -s {router_bird} show bfd sessions"),
            "BFD with each node, every 100 ms: a dead node is withdrawn in 300 ms",
        ),
        (
            format!(
                "for i in $(seq 30); do ip netns exec {c} curl -s http://{VIP}/; done | sort | uniq -c"
            ),
            "new connections from one client, spread by the router over the nodes and by each node over web1-3",
        ),
        (
            format!("{halb} status --socket {}", sockets[0]),
            "node1: its share of the new flows, its table digest (the same on every node), its BGP session and BFD",
        ),
        (
            format!("cat {}", topo.node_birds[0].include.display()),
            "what halb wrote for node1's BIRD: the VIP as a static route, the export filter, BFD, the session",
        ),
        (
            format!("birdc -s {node1_bird} show protocols"),
            "node1's BIRD: halb's protocols",
        ),
    ];
    let failure_lines = [
        (
            format!(
                "while sleep 0.2; do ip netns exec {c} curl -s --max-time 1 http://{VIP}/; done"
            ),
            "in a terminal of its own: keep asking the VIP",
        ),
        (
            format!(
                "{halb} backend drain web 198.18.1.11:80 --socket {s}; {halb} backend drain web 198.18.1.12:80 --socket {s}; {halb} backend drain web 198.18.1.13:80 --socket {s}",
                s = sockets[1]
            ),
            "node2 has no usable backend left: it withdraws the VIP (`backend enable` brings it back)",
        ),
        (
            format!("{halb} stop --socket {}", sockets[2]),
            "a planned stop of node3: its route carries GRACEFUL_SHUTDOWN for 1 s (the router prefers the others), then goes",
        ),
        (
            format!("ip -n {lab}-node1 link set eth0 down"),
            "node1 dies: BFD withdraws it within 300 ms; DSR flows carry on through the others (same Maglev table)",
        ),
        (format!("ip -n {r} route show {VIP}"), "the next hops left"),
    ];
    show!(
        "\nhalb lab (ecmp) is up: clients 198.18.2.0/24, router, nodes and backends 198.18.1.0/24"
    );
    show!("  {:<7} {:<22} {CLIENT}", "client", c);
    show!(
        "  {:<7} {:<22} 198.18.2.1, 198.18.1.1 (BIRD, AS 65000)",
        "router",
        r
    );
    for (i, agent) in agents.iter().enumerate() {
        show!(
            "  {:<7} {:<22} {:<12} halb + BIRD (AS 65001), maps pinned in {}",
            format!("node{}", i + 1),
            topo.nodes[i].ns.name(),
            node_addr(i),
            agent.pin_dir.display()
        );
    }
    show!("  web1-3  198.18.1.11-13, HTTP on :80, the VIP on lo (DSR)");
    show!("\nTry, as root in another terminal:");
    for (command, what) in &try_lines {
        show!("  # {what}\n  {command}");
    }
    show!("\nChanges, last (they end halb or a link on a node):");
    for (command, what) in &failure_lines {
        show!("  # {what}\n  {command}");
    }
    show!("The lab stays up while a node's halb runs; Ctrl-C tears everything down.\n");
}
