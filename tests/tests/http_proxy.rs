//! The layer-7 path for real: halb's HTTP proxy on the VIP in front of
//! three halb-web backends, with the how-to's url_static rules (web1 is
//! the static pool, web2 and web3 the app pool).

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use halb_tests::{
    agent::{Agent, BPFFS},
    l7::url_static,
    netns::unique_name,
    scenario::{Mode, Scenario, VIP},
    topo::HOST_IF,
    traffic::{Source, exchange, get, http_requests},
    wait::{self, Load},
};

fn scenario() -> Scenario {
    Scenario::build(Mode::Nat, false, env!("CARGO_BIN_EXE_halb-web").as_ref())
}

fn start(lab: &Scenario, extra: &str) -> Agent {
    start_with(lab, extra, "")
}

fn start_with(lab: &Scenario, extra: &str, timeouts: &str) -> Agent {
    let name = unique_name("l7");
    let mut agent = Agent::start_named(
        &lab.lb,
        &name,
        &halb_tests::agent::halb_bin(),
        Path::new(BPFFS).join(&name),
        false,
        |pin| url_static(pin, extra, &format!("http_request = \"1s\"\n{timeouts}")),
    );
    agent.wait_for_log("HTTP proxy listening", Duration::from_secs(20));
    agent
}

fn vip() -> SocketAddr {
    format!("{VIP}:80").parse().unwrap()
}

/// Access-log lines are written in batches every 10 ms; this is a deadline,
/// not an expected delay.
const LOG_WAIT: Duration = Duration::from_secs(10);

fn status(agent: &Agent) -> serde_json::Value {
    serde_json::from_str(&agent.ctl(&["status", "--json"])).expect("status JSON")
}

/// Waits until a request is in flight on one of the service's backends
/// (sent to it, not answered yet), as `halb status --json` counts them.
fn wait_in_flight(agent: &Agent) {
    wait::until(
        "a request in flight on a backend",
        Duration::from_secs(10),
        || {
            let http = status(agent)["http"][0].clone();
            let active: u64 = http["pools"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|p| p["backends"].as_array().into_iter().flatten())
                .filter_map(|b| b["active"].as_u64())
                .sum();
            if active > 0 {
                Ok(())
            } else {
                Err(http.to_string())
            }
        },
    );
}

/// A `GET`'s status and body (or why it failed), and when it came.
type Answer = (Result<(u16, String), String>, Instant);

/// Runs `GET path` from the client on a thread of its own.
fn get_in_background<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    lab: &'scope Scenario,
    path: &'scope str,
) -> std::thread::ScopedJoinHandle<'scope, Answer> {
    scope.spawn(move || {
        let answer = lab.client.ns.run(|| get(vip(), path, &[]));
        (answer, Instant::now())
    })
}

#[test]
fn rules_send_static_requests_to_the_static_pool() {
    let lab = scenario();
    let agent = start(&lab, "");
    let answers = lab.client.ns.run(|| {
        [
            "/static/site.css",
            "/images/a",
            "/js/app.JS",
            "/",
            "/cart",
            "/cart?id=1",
        ]
        .map(|path| get(vip(), path, &[]).expect(path))
    });
    for (status, body) in &answers[..3] {
        assert_eq!((*status, body.trim()), (200, "web1"));
    }
    let mut app: Vec<&str> = answers[3..].iter().map(|(_, b)| b.trim()).collect();
    app.sort();
    app.dedup();
    assert!(
        app.iter().all(|b| *b == "web2" || *b == "web3"),
        "app requests answered by {app:?}"
    );
    // Over many, both app backends take a share.
    let tally = http_requests(&lab.client.ns, vip(), 200, 4, Source::Ephemeral);
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    assert!(
        tally.share("web2") > 0.2 && tally.share("web3") > 0.2,
        "{:?}",
        tally.by_backend
    );
    assert_eq!(tally.share("web1"), 0.0);
    // One access-log line per request, haproxy's httplog fields.
    let mut agent = agent;
    let line = agent.wait_for_log("\"GET /static/site.css HTTP/1.1\"", LOG_WAIT);
    assert!(line.contains(" www static/198.18.0.11:80 "), "{line}");
    assert!(line.contains(" 200 5 - - ---- "), "{line}");
    // And the pools in metrics.
    let metrics = lab.lb.run(|| {
        exchange(
            halb_tests::agent::METRICS.parse().unwrap(),
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
    });
    let metrics = metrics.expect("metrics");
    let static_responses = metrics
        .lines()
        .find(|l| {
            l.starts_with("halb_http_backend_responses_total{service=\"www\",pool=\"static\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(static_responses, Some(3), "{metrics}");
}

#[test]
fn backends_see_the_client_in_x_forwarded_for_and_the_listener_needs_no_vip() {
    let lab = scenario();
    // A backup node listens before VRRP gives it the VIP (IP_FREEBIND).
    lab.lb
        .ip(&["addr", "del", &format!("{VIP}/32"), "dev", HOST_IF]);
    let agent = start(&lab, "");
    lab.lb
        .ip(&["addr", "add", &format!("{VIP}/32"), "dev", HOST_IF]);
    let (status, body) = lab
        .client
        .ns
        .run(|| get(vip(), "/echo-headers", &["X-Forwarded-For: 203.0.113.7"]))
        .expect("request");
    assert_eq!(status, 200, "{body}");
    let xff: Vec<&str> = body
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-forwarded-for")
                .then_some(value.trim())
        })
        .collect();
    assert_eq!(xff, ["203.0.113.7", "198.18.0.10"], "{body}");

    // Clients in forwarded_for_except get none: reload with the client's net.
    std::fs::write(
        agent.config_path(),
        std::fs::read_to_string(agent.config_path())
            .unwrap()
            .replace(
                "default_pool = \"app\"\n",
                "default_pool = \"app\"\nforwarded_for_except = \"198.18.0.0/24\"\n",
            ),
    )
    .unwrap();
    agent.ctl(&["reload"]);
    let (_, body) = lab
        .client
        .ns
        .run(|| get(vip(), "/echo-headers", &[]))
        .expect("request");
    assert!(
        !body.to_ascii_lowercase().contains("x-forwarded-for"),
        "{body}"
    );
}

#[test]
fn a_backend_killed_during_load_fails_no_request() {
    let lab = scenario();
    let agent = start(&lab, "");
    let web2 = lab.web_pid(1).expect("web2 runs");
    let load = Load::start(&lab.client.ns, vip(), 8);
    // web2 dies while it is serving the load...
    wait::until(
        "web2 answering the load",
        Duration::from_secs(10),
        || match load.answered(Duration::ZERO, Some("web2")) {
            n if n >= 20 => Ok(()),
            n => Err(format!("web2 answered {n}")),
        },
    );
    // SAFETY: kill(2) on our own child; SIGKILL, as a crash.
    unsafe { libc::kill(web2 as i32, libc::SIGKILL) };
    let killed = load.elapsed();
    // ...its health checks take it out (fall 2 x 200 ms)...
    wait::until("web2 marked down", Duration::from_secs(10), || {
        let app = status(&agent)["http"][0]["pools"][1].clone();
        assert_eq!(app["name"], "app");
        if app["backends"][0]["health"] == "down" {
            Ok(())
        } else {
            Err(app.to_string())
        }
    });
    let down = load.elapsed();
    // ...and the load goes on until plenty more are answered (web3's alone).
    wait::until(
        "requests answered after web2 was down",
        Duration::from_secs(10),
        || match load.answered(down, None) {
            n if n >= 100 => Ok(()),
            n => Err(format!("{n} answered")),
        },
    );
    let samples = load.stop();
    let failed: Vec<_> = samples.iter().filter(|s| s.result.is_err()).collect();
    let between = samples
        .iter()
        .filter(|s| s.at > killed && s.at < down)
        .count();
    println!(
        "{} requests, {between} of them begun while web2 was dead but not yet down: {} failed",
        samples.len(),
        failed.len(),
    );
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    // Without requests sent while web2 was dead but still in the pool,
    // the kill tested nothing.
    assert!(
        between > 0,
        "no request begun between the kill and web2 down"
    );
}

#[test]
fn bad_requests_get_their_status_codes() {
    let lab = scenario();
    let agent = start(&lab, "");
    // A deadline for each answer (they come at once, the 408 after 1 s).
    let wait = Duration::from_secs(10);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let (malformed, too_large, slow, nowhere) = lab.client.ns.run(|| {
        let malformed = exchange(vip(), b"NOT HTTP AT ALL\r\n\r\n", wait).unwrap();
        let too_large = exchange(vip(), big.as_bytes(), wait).unwrap();
        let started = std::time::Instant::now();
        let slow = exchange(vip(), b"GET / HTTP/1.1\r\nHost: x\r\n", wait).unwrap();
        let slow_after = started.elapsed();
        let nowhere = get(vip(), "/nowhere", &[]).unwrap();
        (malformed, too_large, (slow, slow_after), nowhere)
    });
    assert!(malformed.starts_with("HTTP/1.1 400"), "{malformed:?}");
    assert!(too_large.starts_with("HTTP/1.1 431"), "{too_large:?}");
    assert!(slow.0.starts_with("HTTP/1.1 408"), "{:?}", slow.0);
    // Not before the 1 s http_request timeout, and long before keep_alive's
    // 10 s, the other timer that could end the wait.
    assert!(
        slow.1 >= Duration::from_secs(1) && slow.1 < Duration::from_secs(5),
        "408 after {:?}, http_request timeout is 1 s",
        slow.1
    );
    assert_eq!(nowhere.0, 503, "{nowhere:?}");
    assert!(nowhere.1.contains("No server is available"), "{nowhere:?}");
    let mut agent = agent;
    for needle in [
        " 400 0 - - PR-- ",
        " 431 0 - - PR-- ",
        " 408 0 - - cR-- ",
        " 503 ",
    ] {
        agent.wait_for_log(needle, LOG_WAIT);
    }
}

#[test]
fn an_idle_kept_alive_connection_closes_after_keep_alive() {
    let lab = scenario();
    let _agent = start(&lab, "");
    // keep_alive is the default 10 s, http_request 1 s in this config:
    // the idle wait ends at the shorter, quietly (no 408).
    let started = std::time::Instant::now();
    let response = lab
        .client
        .ns
        .run(|| {
            exchange(
                vip(),
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                Duration::from_secs(15),
            )
        })
        .expect("exchange");
    let took = started.elapsed();
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
    assert!(!response.contains("408"), "{response:?}");
    // Kept open after the answer, then closed at the 1 s, long before the
    // 10 s (a close at once, or at keep_alive, fails).
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
}

#[test]
fn stopping_lets_requests_in_flight_finish() {
    let lab = scenario();
    let mut agent = start(&lab, "");
    let (slow, stopped) = std::thread::scope(|scope| {
        let slow = get_in_background(scope, &lab, "/delay/2000");
        wait_in_flight(&agent);
        let stopped = Instant::now();
        agent.ctl(&["stop"]);
        (slow.join().expect("slow request"), stopped)
    });
    let (answer, answered) = slow;
    let (status, body) = answer.expect("the request in flight was answered");
    assert_eq!(status, 200, "{body}");
    assert!(body.trim() == "web2" || body.trim() == "web3", "{body}");
    assert!(
        answered > stopped,
        "answered before the stop: nothing was in flight"
    );
    agent.wait_for_log("stopped", Duration::from_secs(10));
    let refused = lab.client.ns.run(|| get(vip(), "/", &[]));
    assert!(refused.is_err(), "{refused:?}");
}

#[test]
fn maxconn_queues_and_timeouts_answer_503_and_504() {
    let lab = scenario();
    let mut agent = start_with(
        &lab,
        "maxconn = 1\nbackend_keep_alive = false",
        "queue = \"400ms\"\nserver = \"3s\"",
    );
    let (first, second) = std::thread::scope(|scope| {
        // One slot: the first request holds it for 1.5 s; the second,
        // sent once the first is at the backend, waits in the queue and
        // gets 503 at the 400 ms queue timeout (200 if it had waited for
        // the slot, 503 at once if it had not been queued at all).
        let first = get_in_background(scope, &lab, "/delay/1500");
        wait_in_flight(&agent);
        let started = Instant::now();
        let second = lab.client.ns.run(|| get(vip(), "/", &[]));
        let second = (second, started.elapsed());
        (first.join().expect("first").0, second)
    });
    assert_eq!(first.expect("first").0, 200);
    let (second, waited) = second;
    assert_eq!(second.as_ref().expect("second").0, 503, "{second:?}");
    assert!(
        waited >= Duration::from_millis(350),
        "503 after {waited:?}, queue timeout 400 ms"
    );
    // A backend slower than timeouts.server: 504.
    let slow = lab.client.ns.run(|| get(vip(), "/delay/5000", &[]));
    assert_eq!(slow.as_ref().expect("slow").0, 504, "{slow:?}");
    agent.wait_for_log(" 503 ", LOG_WAIT);
    agent.wait_for_log(" sQ-- ", LOG_WAIT);
    agent.wait_for_log(" sH-- ", LOG_WAIT);
    // Server-close: backends are asked to close after each response.
    let (_, echoed) = lab
        .client
        .ns
        .run(|| get(vip(), "/echo-headers", &[]))
        .expect("echo");
    assert!(
        echoed.to_ascii_lowercase().contains("connection: close"),
        "{echoed}"
    );
}

#[test]
fn a_service_removed_by_reload_drains() {
    let lab = scenario();
    let mut agent = start(&lab, "");
    let text = std::fs::read_to_string(agent.config_path()).unwrap();
    let (head, rest) = text.split_once("[[service]]").expect("a service");
    let admin = &rest[rest.find("[admin]").expect("[admin]")..];
    let (slow, reloaded) = std::thread::scope(|scope| {
        let slow = get_in_background(scope, &lab, "/delay/2000");
        wait_in_flight(&agent);
        std::fs::write(agent.config_path(), format!("{head}{admin}")).unwrap();
        agent.ctl(&["reload"]);
        let reloaded = Instant::now();
        (slow.join().expect("slow request"), reloaded)
    });
    // The reload answered while the request was still in flight (one that
    // waited for the drain would answer after it); the request finished.
    let (answer, answered) = slow;
    assert!(
        reloaded < answered,
        "the reload returned {:?} after the request in flight was answered",
        reloaded - answered
    );
    assert_eq!(answer.expect("answered").0, 200);
    agent.wait_for_log("draining a removed service", LOG_WAIT);
    let refused = lab.client.ns.run(|| get(vip(), "/", &[]));
    assert!(refused.is_err(), "{refused:?}");
}
