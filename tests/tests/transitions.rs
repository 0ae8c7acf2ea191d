//! Correct under change: sequences of reloads, a restart after them, and
//! clients that would stall an agent. One-arm full NAT.
//!
//! ```text
//!   [client] ---- br0 ---- [lb: halb] ---- web1 web2 web3 (same LAN)
//! ```

use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use halb_tests::{
    agent::{Agent, METRICS},
    scenario::{Mode, Scenario},
    traffic::{KeepAlive, Source, http_requests},
    wait,
};

fn scenario() -> Scenario {
    Scenario::build(Mode::Nat, false, env!("CARGO_BIN_EXE_halb-web").as_ref())
}

/// The config (less `[admin]`) of one service "web" on the VIP over the
/// backends `order` names (0 = web1), in that order, then `extra` ones.
fn services_config(lab: &Scenario, pin_dir: &Path, order: &[usize], extra: &[&str]) -> String {
    let mut text = format!(
        "[datapath]\ninterfaces = [\"eth0\"]\npin_dir = \"{}\"\n\n\
         [[service]]\nname = \"web\"\nvip = \"{}\"\nport = 80\nsnat_address = \"198.18.0.2\"\n",
        pin_dir.display(),
        lab.vip().ip(),
    );
    let addresses = order.iter().map(|i| lab.backends[*i].addr.as_str());
    for address in addresses.chain(extra.iter().copied()) {
        text += &format!("[[service.backend]]\naddress = \"{address}\"\n");
    }
    text
}

/// The whole config for `agent`'s next reload.
fn config(lab: &Scenario, agent: &Agent, order: &[usize]) -> String {
    services_config(lab, &agent.pin_dir, order, &[])
        + &format!(
            "[admin]\ncontrol_socket = \"{}\"\nmetrics = \"{METRICS}\"\n",
            agent.control_socket.display()
        )
}

fn start(lab: &Scenario, order: &[usize], extra: &[&str]) -> Agent {
    let mut agent = Agent::start(&lab.lb, "lb", |pin| services_config(lab, pin, order, extra));
    agent.wait_attached();
    agent
}

fn reload(lab: &Scenario, agent: &Agent, order: &[usize]) {
    std::fs::write(agent.config_path(), config(lab, agent, order)).expect("write config");
    let out = agent.ctl(&["reload"]);
    assert!(out.contains("reloaded"), "reload refused: {out}");
}

fn status(agent: &Agent) -> serde_json::Value {
    serde_json::from_str(&agent.ctl(&["status", "--json"])).expect("status JSON")
}

/// `halb status` less what moves on its own (rates, counters of packets
/// and bytes): services, backends, health, admin, state and new flows.
fn settled(status: &serde_json::Value) -> serde_json::Value {
    let mut status = status.clone();
    status["verdicts"] = serde_json::Value::Null;
    for service in status["services"].as_array_mut().expect("services") {
        service["traffic"] = serde_json::Value::Null;
        for b in service["backends"].as_array_mut().expect("backends") {
            let flows = b["traffic"]["new_flows"].clone();
            b["traffic"] = serde_json::json!({ "new_flows": flows });
        }
    }
    status
}

#[test]
fn a_new_backend_listed_first_gets_its_share_after_a_reload() {
    let lab = scenario();
    let agent = start(&lab, &[1, 2], &[]);
    reload(&lab, &agent, &[0, 1, 2]);
    let tally = http_requests(&lab.client.ns, lab.vip(), 300, 4, Source::Ephemeral);
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    for web in ["web1", "web2", "web3"] {
        assert!(
            tally.share(web) > 0.15,
            "{web} got {:.0}% of 300 new connections: {:?}",
            tally.share(web) * 100.0,
            tally.by_backend
        );
    }
}

#[test]
fn a_restart_after_three_reloads_keeps_status_and_every_kept_alive_connection() {
    let lab = scenario();
    let agent = start(&lab, &[0, 1, 2], &[]);
    // Reload 1 removes web1; kept-alive connections open on web2 and web3.
    reload(&lab, &agent, &[1, 2]);
    let mut kept: Vec<(KeepAlive, String)> = (0..12)
        .map(|_| {
            let mut c = KeepAlive::connect(&lab.client.ns, lab.vip());
            let first = c.request().expect("first request");
            (c, first)
        })
        .collect();
    // Reload 2 adds web1 back, listed first; reload 3 reorders them all.
    reload(&lab, &agent, &[0, 1, 2]);
    reload(&lab, &agent, &[2, 0, 1]);
    for (c, backend) in &mut kept {
        assert_eq!(&c.request().expect("after reloads"), backend);
    }
    let before = settled(&status(&agent));

    let mut agent = agent;
    agent.crash();
    let mut agent = agent.restart(&lab.lb);
    agent.wait_attached();
    let after = settled(&status(&agent));
    assert_eq!(after, before, "status changed across kill -9 and a restart");
    let mut broken = Vec::new();
    for (i, (c, backend)) in kept.iter_mut().enumerate() {
        match c.request() {
            Ok(answer) if &answer == backend => {}
            other => broken.push(format!("connection {i} on {backend}: {other:?}")),
        }
    }
    assert!(
        broken.is_empty(),
        "{} of 12 broken: {broken:?}",
        broken.len()
    );
    // And new connections reach all three.
    let tally = http_requests(&lab.client.ns, lab.vip(), 150, 4, Source::Ephemeral);
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert_eq!(tally.by_backend.len(), 3, "{:?}", tally.by_backend);
}

#[test]
fn a_backend_without_a_route_is_down_with_the_reason_until_a_route_appears() {
    let lab = scenario();
    // 198.19.0.13 is web3, reachable only once the balancer has a route.
    lab.backends[2]
        .ns
        .ip(&["addr", "add", "198.19.0.13/32", "dev", "lo"]);
    // A fresh start with it, not a reload: halb must come up.
    let mut agent = start(&lab, &[0, 1], &["198.19.0.13"]);
    agent.wait_for_log("until a route to it appears", Duration::from_secs(5));
    let unroutable = |status: &serde_json::Value| -> Option<(String, Option<String>)> {
        status["services"][0]["backends"]
            .as_array()?
            .iter()
            .find(|b| b["address"] == "198.19.0.13:80")
            .map(|b| {
                (
                    b["state"].as_str().unwrap_or("").to_owned(),
                    b["reason"].as_str().map(str::to_owned),
                )
            })
    };
    let (state, reason) = unroutable(&status(&agent)).expect("listed");
    assert_eq!(state, "down");
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("no route")),
        "{reason:?}"
    );
    let tally = http_requests(&lab.client.ns, lab.vip(), 60, 4, Source::Ephemeral);
    assert_eq!(tally.failed, 0, "the others serve: {:?}", tally.errors);

    lab.lb.ip(&[
        "route",
        "add",
        "198.19.0.13/32",
        "via",
        &lab.backends[2].addr,
    ]);
    agent.wait_for_log("backend has a route again", Duration::from_secs(10));
    wait::until(
        "the backend up",
        Duration::from_secs(5),
        || match unroutable(&status(&agent)) {
            Some((state, None)) if state == "up" => Ok(()),
            seen => Err(format!("{seen:?}")),
        },
    );
    let tally = http_requests(&lab.client.ns, lab.vip(), 150, 4, Source::Ephemeral);
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert!(tally.share("web3") > 0.15, "{:?}", tally.by_backend);
}

#[test]
fn idle_and_unread_clients_on_metrics_and_control_stall_nothing() {
    let lab = scenario();
    let agent = start(&lab, &[0, 1, 2], &[]);
    let metrics: SocketAddr = METRICS.parse().unwrap();
    // Five idle metrics clients, five that sent half a request, five idle
    // control clients and five that ask for status and never read.
    let _idle: Vec<std::net::TcpStream> = lab.lb.run(|| {
        (0..10)
            .map(|i| {
                let mut s = std::net::TcpStream::connect(metrics).expect("metrics");
                if i % 2 == 1 {
                    s.write_all(b"GET /metr").unwrap();
                }
                s
            })
            .collect()
    });
    let _control: Vec<std::os::unix::net::UnixStream> = (0..10)
        .map(|i| {
            let mut s = std::os::unix::net::UnixStream::connect(&agent.control_socket)
                .expect("control socket");
            if i % 2 == 1 {
                s.write_all(b"\"Status\"\n").unwrap();
            }
            s
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let asked = Instant::now();
        status(&agent);
        slowest = slowest.max(asked.elapsed());
    }
    println!("halb status with 20 idle or unread clients: slowest answer {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "status took {slowest:?}: a client held up the agent"
    );
    let page = lab.lb.run(|| {
        let mut s = std::net::TcpStream::connect(metrics).expect("metrics");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut page = String::new();
        let _ = s.read_to_string(&mut page);
        page
    });
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("halb_backend_new_flows_total"), "{page}");
    let tally = http_requests(&lab.client.ns, lab.vip(), 30, 2, Source::Ephemeral);
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    let reloading = Instant::now();
    let out = agent.ctl(&["reload"]);
    assert!(out.contains("reloaded"), "{out}");
    assert!(
        reloading.elapsed() < Duration::from_secs(1),
        "reload took {:?}",
        reloading.elapsed()
    );
}

#[test]
fn a_reload_that_cannot_listen_changes_nothing_not_even_the_datapath() {
    let lab = scenario();
    let agent = start(&lab, &[0, 1], &[]);
    // Something else holds the VIP's port 8080 on the balancer.
    let vip8080 = SocketAddr::new(lab.vip().ip(), 8080);
    let _squatter = lab
        .lb
        .run(|| std::net::TcpListener::bind(vip8080))
        .expect("bind the squatter");
    // The reload adds web3 to "web" and a layer-7 service on that port.
    let text = config(&lab, &agent, &[0, 1, 2]).replace(
        "[admin]",
        &format!(
            "[[service]]\nname = \"www\"\nvip = \"{}\"\nport = 8080\n\
             keep_client_address = true\n\
             [service.http]\ndefault_pool = \"app\"\n\
             [[service.http.pool]]\nname = \"app\"\n\
             [[service.http.pool.backend]]\naddress = \"{}\"\n[admin]",
            lab.vip().ip(),
            lab.backends[2].addr
        ),
    );
    let before = settled(&status(&agent));
    std::fs::write(agent.config_path(), text).expect("write config");
    let refused = std::process::Command::new(halb_tests::agent::halb_bin())
        .arg("reload")
        .arg("--socket")
        .arg(&agent.control_socket)
        .output()
        .expect("run halb reload");
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        !refused.status.success() && said.contains("cannot listen on") && said.contains(":8080"),
        "the reload went through: {said}"
    );
    assert_eq!(
        settled(&status(&agent)),
        before,
        "a refused reload changed status"
    );
    let tally = http_requests(&lab.client.ns, lab.vip(), 200, 4, Source::Ephemeral);
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert!(
        !tally.by_backend.contains_key("web3"),
        "the datapath took the refused reload's backend: {:?}",
        tally.by_backend
    );
}
