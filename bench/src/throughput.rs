//! Requests per second with wrk, keep-alive and one connection per
//! request, through halb in each mode, and in the same run through the
//! references on the same topology: plain kernel IP forwarding, and
//! haproxy in TCP mode.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use halb_tests::{
    netns::NetNs,
    process::ChildGuard,
    scenario::{Mode, Scenario, VIP},
    traffic::{Source, request},
};

/// wrk processes run side by side, each with this many connections.
const WRK_PROCESSES: usize = 3;
const CONNECTIONS_EACH: usize = 16;

#[derive(Clone, Copy)]
pub(crate) enum Load {
    KeepAlive,
    NewConnections,
}

pub(crate) struct Measured {
    pub requests_per_sec: f64,
    pub latency_ms: f64,
    pub errors: u64,
}

/// Runs `WRK_PROCESSES` wrk instances from `client` against `urls` (one
/// each, cycling) for `seconds`; sums their rates.
pub(crate) fn wrk(
    client: &NetNs,
    urls: &[String],
    load: Load,
    seconds: u32,
) -> anyhow::Result<Measured> {
    let mut children = Vec::new();
    for i in 0..WRK_PROCESSES {
        let mut command = client.command("wrk");
        command.args([
            "-t1",
            &format!("-c{CONNECTIONS_EACH}"),
            &format!("-d{seconds}s"),
            "--latency",
        ]);
        if let Load::NewConnections = load {
            command.args(["-H", "Connection: close"]);
        }
        command
            .arg(&urls[i % urls.len()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        children.push(command.spawn().context("start wrk (apt-get install wrk)")?);
    }
    let mut total = Measured {
        requests_per_sec: 0.0,
        latency_ms: 0.0,
        errors: 0,
    };
    for child in children {
        let output = child.wait_with_output().context("wait for wrk")?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "wrk failed: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let rate = text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
        let latency = text
            .lines()
            .find(|l| l.trim_start().starts_with("99%"))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(parse_duration_ms)
            .unwrap_or(f64::NAN);
        let errors: u64 = text
            .lines()
            .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
            .flat_map(|l| {
                l.split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<u64>().ok())
            })
            .sum();
        total.requests_per_sec += rate;
        total.latency_ms = total.latency_ms.max(latency);
        total.errors += errors;
    }
    Ok(total)
}

/// "1.23ms", "450.00us", "1.02s" -> milliseconds.
fn parse_duration_ms(s: &str) -> f64 {
    let (number, factor) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (s, f64::NAN)
    };
    number.parse::<f64>().map_or(f64::NAN, |n| n * factor)
}

/// Waits until a request to the VIP from the client succeeds.
pub(crate) fn wait_ready(scenario: &Scenario) -> anyhow::Result<()> {
    let vip = scenario.vip();
    for _ in 0..50 {
        if scenario
            .client
            .ns
            .run(|| request(vip, Source::Ephemeral, 0))
            .is_ok()
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the VIP does not answer")
}

fn haproxy(scenario: &Scenario) -> anyhow::Result<ChildGuard> {
    let mut config = format!(
        "global\n  maxconn 8000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend web\n  bind {VIP}:80\n  default_backend webs\nbackend webs\n  balance leastconn\n"
    );
    for b in &scenario.backends {
        config += &format!("  server {} {}:80\n", b.name, b.addr);
    }
    start_haproxy(scenario, &config)
}

/// Runs haproxy with `config` on the scenario's balancer and waits until
/// the VIP answers through it.
pub(crate) fn start_haproxy(scenario: &Scenario, config: &str) -> anyhow::Result<ChildGuard> {
    let path = std::env::temp_dir().join(format!("halb-bench-haproxy-{}.cfg", std::process::id()));
    std::fs::write(&path, config)?;
    let mut command = scenario.lb.command("haproxy");
    command.arg("-db").arg("-f").arg(&path);
    let child = ChildGuard::spawn("haproxy", command, false);
    let ready = wait_ready(scenario)
        .with_context(|| format!("haproxy: {}", child.lines().snapshot().join("\n")));
    // haproxy has read its config by now (or failed): leave no file behind.
    let _ = std::fs::remove_file(&path);
    ready?;
    Ok(child)
}

pub(crate) type Row = (String, Measured, Measured);

/// The table of `rows`: name, then keep-alive and new-connection rates,
/// their p99 latencies, and errors.
pub(crate) fn print_rows(title: &str, width: usize, rows: &[Row]) {
    println!(
        "  {title:<width$} {:>12} {:>9} {:>12} {:>9} {:>7}",
        "keep-alive", "p99 ms", "new conns", "p99 ms", "errors"
    );
    for (name, ka, nc) in rows {
        println!(
            "  {name:<width$} {:>12.0} {:>9.2} {:>12.0} {:>9.2} {:>7}",
            ka.requests_per_sec,
            ka.latency_ms,
            nc.requests_per_sec,
            nc.latency_ms,
            ka.errors + nc.errors
        );
    }
}

fn measure(name: &str, client: &NetNs, urls: &[String], seconds: u32) -> anyhow::Result<Row> {
    eprintln!("bench: {name} ...");
    let keep_alive = wrk(client, urls, Load::KeepAlive, seconds)?;
    let new_conns = wrk(client, urls, Load::NewConnections, seconds)?;
    Ok((name.to_owned(), keep_alive, new_conns))
}

pub fn run(halb: &Path, web: &Path, seconds: u32) -> anyhow::Result<()> {
    let vip_url = vec![format!("http://{VIP}/")];
    let mut rows: Vec<Row> = Vec::new();

    // Every case gets fresh namespaces: TIME_WAIT sockets that one case
    // leaves on the backends would otherwise slow the next one's new
    // connections (a reused client port meets a TIME_WAIT with other
    // timestamps and waits for a SYN retransmission).
    let fresh = |mode: Mode, two_arms: bool| Scenario::build(mode, two_arms, web);
    {
        // Two arms: client side and backend side, the balancer routing between.
        let two = fresh(Mode::NatKeepClient, true);
        let backend_urls: Vec<String> = two
            .backends
            .iter()
            .map(|b| format!("http://{}/", b.addr))
            .collect();
        rows.push(measure(
            "kernel IP forwarding (to web1-3)",
            &two.client.ns,
            &backend_urls,
            seconds,
        )?);
    }
    {
        let two = fresh(Mode::NatKeepClient, true);
        let _haproxy = haproxy(&two)?;
        rows.push(measure(
            "haproxy, TCP mode, leastconn",
            &two.client.ns,
            &vip_url,
            seconds,
        )?);
    }
    for (mode, two_arms, name) in [
        (Mode::Nat, true, "halb full NAT"),
        (Mode::NatKeepClient, true, "halb NAT, keep client address"),
        // DSR needs the backends on the client's segment: one arm.
        (Mode::Dsr, false, "halb DSR (one arm)"),
    ] {
        let scenario = fresh(mode, two_arms);
        let _agent = scenario.halb(halb, mode, [1, 1, 1]);
        wait_ready(&scenario)?;
        rows.push(measure(name, &scenario.client.ns, &vip_url, seconds)?);
    }

    println!(
        "\ndatapath: requests/s with wrk ({WRK_PROCESSES} x {CONNECTIONS_EACH} connections, {seconds} s each), same machine, same run"
    );
    print_rows("path", 36, &rows);
    let find = |prefix: &str| rows.iter().find(|r| r.0.starts_with(prefix));
    if let (Some(kernel), Some(haproxy)) = (find("kernel"), find("haproxy")) {
        println!("\n  ratios (keep-alive / new connections):");
        for (name, ka, nc) in rows.iter().filter(|r| r.0.starts_with("halb")) {
            println!(
                "  {name:<36} vs kernel {:.2} / {:.2}   vs haproxy {:.2} / {:.2}",
                ka.requests_per_sec / kernel.1.requests_per_sec,
                nc.requests_per_sec / kernel.2.requests_per_sec,
                ka.requests_per_sec / haproxy.1.requests_per_sec,
                nc.requests_per_sec / haproxy.2.requests_per_sec,
            );
        }
    }
    Ok(())
}
