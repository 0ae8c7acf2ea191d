//! The layer-7 path: requests/s and p99 latency (wrk, keep-alive and one
//! connection per request) through halb's HTTP proxy, and in the same run
//! on the same topology through haproxy in http mode with the same rules
//! (the how-to's url_static: static paths to web1, the rest to web2 and
//! web3 by leastconn), retries, redispatch, forwardfor and timeouts. Both
//! write an httplog line per request to their standard output or error,
//! read by the bench (haproxy's how-to logs every request to syslog).

use std::{path::Path, time::Duration};

use halb_tests::{
    agent::{Agent, BPFFS},
    l7::url_static,
    netns::unique_name,
    process::ChildGuard,
    scenario::{Mode, Scenario, VIP},
};

use crate::throughput::{Load, Row, print_rows, start_haproxy, wait_ready, wrk};

fn haproxy(scenario: &Scenario, log: bool) -> anyhow::Result<ChildGuard> {
    let (global_log, defaults_log) = if log {
        (
            "  log stdout format raw local0\n",
            "  log global\n  option httplog\n",
        )
    } else {
        ("", "")
    };
    let config = format!(
        "global\n  maxconn 8000\n{global_log}\
         defaults\n  mode http\n{defaults_log}  option forwardfor except 127.0.0.0/8\n  retries 3\n  option redispatch\n  \
         timeout http-request 10s\n  timeout queue 1m\n  timeout connect 10s\n  timeout client 1m\n  \
         timeout server 1m\n  timeout http-keep-alive 10s\n  timeout check 10s\n  maxconn 3000\n\
         frontend main\n  bind {VIP}:80\n  \
         acl url_static path_beg -i /static /images\n  acl url_static path_end -i .jpg .gif .png .css .js\n  \
         use_backend static if url_static\n  default_backend app\n\
         backend static\n  balance roundrobin\n  server web1 198.18.0.11:80 check inter 2s\n\
         backend app\n  balance leastconn\n  server web2 198.18.0.12:80 check inter 2s\n  server web3 198.18.0.13:80 check inter 2s\n"
    );
    start_haproxy(scenario, &config)
}

pub fn run(halb: &Path, web: &Path, seconds: u32) -> anyhow::Result<()> {
    // Two app requests for each static one.
    let urls = vec![
        format!("http://{VIP}/cart"),
        format!("http://{VIP}/static/site.css"),
        format!("http://{VIP}/"),
    ];
    let mut rows: Vec<Row> = Vec::new();
    for (log, name) in [(true, "haproxy, httplog"), (false, "haproxy, no log")] {
        let scenario = Scenario::build(Mode::Nat, false, web);
        let _haproxy = haproxy(&scenario, log)?;
        eprintln!("bench: {name} ...");
        let ka = wrk(&scenario.client.ns, &urls, Load::KeepAlive, seconds)?;
        let nc = wrk(&scenario.client.ns, &urls, Load::NewConnections, seconds)?;
        rows.push((name.to_owned(), ka, nc));
    }
    {
        let scenario = Scenario::build(Mode::Nat, false, web);
        let name = unique_name("bench-l7");
        let mut agent = Agent::start_named(
            &scenario.lb,
            &name,
            halb,
            Path::new(BPFFS).join(&name),
            false,
            |pin| url_static(pin, "", ""),
        );
        agent.wait_for_log("HTTP proxy listening", Duration::from_secs(20));
        wait_ready(&scenario)?;
        eprintln!("bench: halb HTTP proxy ...");
        let ka = wrk(&scenario.client.ns, &urls, Load::KeepAlive, seconds)?;
        let nc = wrk(&scenario.client.ns, &urls, Load::NewConnections, seconds)?;
        rows.push(("halb, access log".to_owned(), ka, nc));
    }
    println!(
        "\nl7: url_static rules, requests/s and p99 latency with wrk ({seconds} s each), same machine, same run"
    );
    print_rows("proxy", 26, &rows);
    let halb = &rows[2];
    for haproxy in &rows[..2] {
        println!(
            "  halb / {}: requests/s {:.2} (keep-alive) {:.2} (new conns); p99 {:.2} / {:.2}",
            haproxy.0,
            halb.1.requests_per_sec / haproxy.1.requests_per_sec,
            halb.2.requests_per_sec / haproxy.2.requests_per_sec,
            halb.1.latency_ms / haproxy.1.latency_ms,
            halb.2.latency_ms / haproxy.2.latency_ms,
        );
    }
    Ok(())
}
