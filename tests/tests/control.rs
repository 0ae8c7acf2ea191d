//! The running agent through its control socket: `halb status`, drain and
//! enable, and reload (SIGHUP's twin), with real traffic. One-arm full NAT
//! (see halb_tests::scenario).

use std::time::Duration;

use halb_tests::{
    agent::{Agent, halb_bin},
    scenario::{Mode, Scenario},
    traffic::{KeepAlive, Source, http_requests},
    wait::{self, Load},
};

fn scenario() -> Scenario {
    Scenario::build(Mode::Nat, false, env!("CARGO_BIN_EXE_halb-web").as_ref())
}

const CHECK: &str = "[service.check]\ntype = \"tcp\"\ninterval = \"500ms\"\ntimeout = \"300ms\"\n";

/// Service `name` as `halb status --json` shows it.
fn service(agent: &Agent, name: &str) -> serde_json::Value {
    let json: serde_json::Value =
        serde_json::from_str(&agent.ctl(&["status", "--json"])).expect("JSON status");
    json["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no service {name} in {json}"))
}

/// New flows per second over the last sampling period of the service and
/// of each of its backends.
fn new_flow_rates(web: &serde_json::Value) -> Vec<f64> {
    let backends = web["backends"].as_array().expect("backends");
    std::iter::once(web)
        .chain(backends)
        .map(|t| {
            t["traffic"]["new_flows_per_sec"]
                .as_f64()
                .unwrap_or_else(|| panic!("no new-flow rate in {t}"))
        })
        .collect()
}

#[test]
fn status_shows_services_backends_health_and_counters() {
    let lab = scenario();
    let agent = lab.halb_with(&halb_bin(), Mode::Nat, [1, 2, 3], CHECK);
    let tally = http_requests(&lab.client.ns, lab.vip(), 300, 4, Source::Ephemeral);
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);

    let json: serde_json::Value =
        serde_json::from_str(&agent.ctl(&["status", "--json"])).expect("JSON status");
    let web = json["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "web"))
        .unwrap_or_else(|| panic!("no service web in {json}"));
    assert_eq!(web["vip"], "198.18.0.100");
    assert_eq!(web["mode"], "nat");
    assert!(
        web["traffic"]["new_flows"].as_u64().unwrap_or(0) >= 300,
        "{web}"
    );
    let backends = web["backends"].as_array().expect("backends");
    assert_eq!(backends.len(), 3);
    for (b, weight) in backends.iter().zip([1, 2, 3]) {
        assert_eq!(b["weight"], weight, "{b}");
        assert_eq!(
            (
                b["health"].as_str(),
                b["admin"].as_str(),
                b["state"].as_str()
            ),
            (Some("up"), Some("enabled"), Some("up"))
        );
        assert!(b["traffic"]["new_flows"].as_u64().unwrap_or(0) > 0, "{b}");
    }
    assert!(json["verdicts"]["fwd_tx"].as_u64().unwrap_or(0) > 0);

    // The same figures as Prometheus metrics, from inside the balancer's namespace.
    let metrics = lab.lb.run(|| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(halb_tests::agent::METRICS).expect("metrics port");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let mut page = String::new();
        s.read_to_string(&mut page).expect("read");
        page
    });
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("halb_backend_healthy{service=\"web\",backend=\"198.18.0.13:80\"} 1"),
        "{metrics}"
    );
    let new_flows: u64 = metrics
        .lines()
        .find(|l| l.starts_with("halb_service_new_flows_total{service=\"web\","))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no new flows for web in {metrics}"));
    assert!(new_flows >= 300, "{new_flows}");
    assert!(metrics.contains("halb_datapath_verdicts_total{verdict=\"fwd_tx\"}"));
    assert!(metrics.contains("process_resident_memory_bytes "));

    let table = agent.ctl(&["status"]);
    assert!(
        table.contains("service web 198.18.0.100:80/tcp mode nat"),
        "{table}"
    );
    assert!(table.contains("198.18.0.13:80"), "{table}");

    // Rates cover the last sampling period (about a second): under load the
    // service and every backend show new flows per second; once the load
    // stops they fall back to zero. A rate that stayed zero, or that was a
    // total in disguise, never gets there.
    let load = Load::start(&lab.client.ns, lab.vip(), 4);
    wait::until(
        "new flows per second under load",
        Duration::from_secs(20),
        || {
            let web = service(&agent, "web");
            let rates = new_flow_rates(&web);
            if rates.iter().all(|r| *r > 0.0) {
                Ok(())
            } else {
                Err(format!("rates {rates:?} (service, backends) in {web}"))
            }
        },
    );
    let samples = load.stop();
    let failed: Vec<_> = samples
        .iter()
        .filter(|s| s.result.is_err())
        .take(5)
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    wait::until(
        "no new flows per second once idle",
        Duration::from_secs(20),
        || {
            let web = service(&agent, "web");
            let rates = new_flow_rates(&web);
            if rates.iter().all(|r| *r == 0.0) {
                Ok(())
            } else {
                Err(format!("rates {rates:?} (service, backends) in {web}"))
            }
        },
    );
}

#[test]
fn a_drained_backend_gets_no_new_flows_but_keeps_its_own() {
    let lab = scenario();
    let agent = lab.halb_with(&halb_bin(), Mode::Nat, [1, 1, 1], CHECK);
    // Open connections until one lands on web3; keep it.
    let mut kept = loop {
        let mut c = KeepAlive::connect(&lab.client.ns, lab.vip());
        if c.request().as_deref() == Ok("web3") {
            break c;
        }
    };
    let out = agent.ctl(&["backend", "drain", "web", "198.18.0.13:80"]);
    assert!(out.contains("drained"), "{out}");

    let tally = http_requests(&lab.client.ns, lab.vip(), 600, 4, Source::Ephemeral);
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert_eq!(tally.by_backend.get("web3"), None, "{:?}", tally.by_backend);
    for _ in 0..5 {
        assert_eq!(
            kept.request().as_deref(),
            Ok("web3"),
            "the drained backend's own flow"
        );
    }
    let status = agent.ctl(&["status", "--json"]);
    assert!(status.contains("\"drained\""), "{status}");

    agent.ctl(&["backend", "enable", "web", "198.18.0.13:80"]);
    let tally = http_requests(&lab.client.ns, lab.vip(), 600, 4, Source::Ephemeral);
    assert!(tally.share("web3") > 0.2, "{:?}", tally.by_backend);

    let refused = std::process::Command::new(halb_bin())
        .args(["backend", "drain", "web", "198.18.0.99:80", "--socket"])
        .arg(&agent.control_socket)
        .output()
        .expect("run halb");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no backend 198.18.0.99:80"));
}

#[test]
fn reload_adding_a_backend_during_load_fails_no_request_and_moves_no_flow() {
    let lab = scenario();
    let agent = lab.halb_with(&halb_bin(), Mode::Nat, [1, 1, 0], CHECK);
    let mut kept: Vec<(KeepAlive, String)> = (0..6)
        .map(|_| {
            let mut c = KeepAlive::connect(&lab.client.ns, lab.vip());
            let backend = c.request().expect("first request");
            (c, backend)
        })
        .collect();
    let config = lab.config_with(Mode::Nat, [1, 1, 1], &agent.pin_dir, "", CHECK);
    let config = format!(
        "{config}\n[admin]\ncontrol_socket = \"{}\"\n",
        agent.control_socket.display()
    );

    // Load before, during and after the reload: first some answered...
    let load = Load::start(&lab.client.ns, lab.vip(), 4);
    wait::until(
        "requests answered before the reload",
        Duration::from_secs(20),
        || match load.answered(Duration::ZERO, None) {
            n if n >= 100 => Ok(()),
            n => Err(format!("{n} answered")),
        },
    );
    std::fs::write(agent.config_path(), &config).expect("rewrite config");
    let out = agent.ctl(&["reload"]);
    assert!(out.contains("reloaded"), "{out}");
    // ...then on until web3, new in the table, has answered new flows
    // begun after the reload returned.
    let reloaded = load.elapsed();
    wait::until(
        "web3 taking new flows after the reload",
        Duration::from_secs(20),
        || match load.answered(reloaded, Some("web3")) {
            n if n >= 20 => Ok(()),
            n => Err(format!(
                "web3 answered {n} of {} begun since",
                load.answered(reloaded, None)
            )),
        },
    );
    let samples = load.stop();
    let failed: Vec<_> = samples
        .iter()
        .filter(|s| s.result.is_err())
        .take(5)
        .collect();
    assert!(failed.is_empty(), "failed around the reload: {failed:?}");
    for (c, backend) in &mut kept {
        assert_eq!(
            c.request().as_ref(),
            Ok(&*backend),
            "a flow kept its backend"
        );
    }
}

#[test]
fn a_broken_config_on_reload_changes_nothing() {
    let lab = scenario();
    let agent = lab.halb_with(&halb_bin(), Mode::Nat, [1, 1, 1], "");
    let good = std::fs::read_to_string(agent.config_path()).expect("config");
    std::fs::write(agent.config_path(), good.replace("port = 80", "port = 0")).expect("write");
    let out = std::process::Command::new(halb_bin())
        .args(["reload", "--socket"])
        .arg(&agent.control_socket)
        .output()
        .expect("run halb");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(".toml:") && stderr.contains("port 0 is not a port"),
        "{stderr}"
    );
    let tally = http_requests(&lab.client.ns, lab.vip(), 200, 4, Source::Ephemeral);
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert_eq!(tally.by_backend.len(), 3);
}
