//! Active-active behind ECMP: three halb nodes announce the VIP through
//! their BIRD to a BIRD router (BFD 3 x 100 ms), under a load of kept-alive
//! and new connections (DSR). Each trial kills one node (agent and link)
//! and brings it back; then a node is drained of all its backends and
//! enabled again, and one is stopped as planned (GRACEFUL_SHUTDOWN first)
//! and started again. Printed: the time from a node's death to the
//! router's withdrawal, and to traffic flowing again (kept-alive answers
//! over 200 ms back at 90% of their rate in the second before the death:
//! the connections the dead node carried have retransmitted through the
//! others), and the connections broken by each kind of event.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use halb_tests::{
    ecmp::Ecmp,
    failover_load::{FailoverLoad, LoadSpec, Progress},
};

const TRIALS: usize = 20;
const NODES: usize = 3;
const KEPT_ALIVE: usize = 60;

pub fn run(halb: &Path, web: &Path) -> anyhow::Result<()> {
    let topo = Ecmp::build(NODES, web);
    let mut agents: Vec<_> = (0..NODES)
        .map(|i| topo.start_halb_bin(halb, i, ""))
        .collect();
    let all: Vec<usize> = (0..NODES).collect();
    topo.wait_next_hops(&all, Duration::from_secs(30));
    let load = FailoverLoad::start(
        &topo.client.ns,
        format!("{}:80", halb_tests::ecmp::VIP).parse()?,
        LoadSpec {
            kept_alive: KEPT_ALIVE,
            downloads: 0,
            download_ms: 0,
            new_conn_workers: 2,
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    println!(
        "\nscale: {NODES} halb nodes behind a BIRD router (ECMP, 5-tuple hash), BFD 3 x 100 ms, DSR; \
         {KEPT_ALIVE} kept-alive connections and 2 new-connection workers throughout; {TRIALS} node deaths"
    );
    let mut withdrawn = Vec::new();
    let mut flowing = Vec::new();
    let mut broken = Broken::default();
    for trial in 0..TRIALS {
        let i = trial % NODES;
        let rate = answers_per_second(&load);
        let before = load.progress();
        let died = Instant::now();
        agents[i].crash();
        topo.nodes[i].ns.ip(&["link", "set", "eth0", "down"]);
        let rest: Vec<usize> = all.iter().copied().filter(|n| *n != i).collect();
        wait_hops(&topo, &rest, Duration::from_secs(10))?;
        withdrawn.push(died.elapsed());
        wait_rate(&load, 0.9 * rate)?;
        flowing.push(died.elapsed());
        broken.death += lost(&before, &load.progress());

        let before = load.progress();
        topo.nodes[i].ns.ip(&["link", "set", "eth0", "up"]);
        let agent = agents.remove(i).restart(&topo.nodes[i].ns);
        agents.insert(i, agent);
        // BIRD backs off repeated session errors (to 10 s here).
        wait_hops(&topo, &all, Duration::from_secs(60))?;
        settle(&load)?;
        broken.back += lost(&before, &load.progress());
    }
    // A node left without a usable backend withdraws, and comes back.
    let before = load.progress();
    Ecmp::set_backends(&agents[0], "drain");
    wait_hops(&topo, &[1, 2], Duration::from_secs(10))?;
    settle(&load)?;
    Ecmp::set_backends(&agents[0], "enable");
    wait_hops(&topo, &all, Duration::from_secs(10))?;
    settle(&load)?;
    broken.drained = lost(&before, &load.progress());
    // A planned stop, and a start.
    let before = load.progress();
    agents[1].ctl(&["stop"]);
    wait_hops(&topo, &[0, 2], Duration::from_secs(10))?;
    let agent = agents.remove(1).restart(&topo.nodes[1].ns);
    agents.insert(1, agent);
    wait_hops(&topo, &all, Duration::from_secs(30))?;
    settle(&load)?;
    broken.stopped = lost(&before, &load.progress());
    let report = load.stop();

    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        (ms(&v[v.len() / 2]), ms(&v[v.len() - 1]), ms(&v[0]))
    };
    let (w, f) = (stats(&mut withdrawn), stats(&mut flowing));
    println!(
        "  death -> router withdraws the node   median {:>6.1} ms  max {:>6.1} ms  min {:>6.1} ms",
        w.0, w.1, w.2
    );
    println!(
        "  death -> traffic flowing again       median {:>6.1} ms  max {:>6.1} ms  min {:>6.1} ms",
        f.0, f.1, f.2
    );
    println!("  broken connections, by event (kept-alive + new):");
    println!(
        "    node killed (agent and link), {TRIALS}x   {}",
        broken.death
    );
    println!(
        "    node back, {TRIALS}x                      {}",
        broken.back
    );
    println!(
        "    node drained of every backend, and back   {}",
        broken.drained
    );
    println!(
        "    planned stop (GRACEFUL_SHUTDOWN), start   {}",
        broken.stopped
    );
    println!(
        "  in all: {} kept-alive requests answered, longest gap {:?}; {} new connections, {} failed",
        report.kept_alive_requests, report.longest_gap, report.new_ok, report.new_failed
    );
    for error in report.errors.iter().take(5) {
        println!("    {error}");
    }
    Ok(())
}

#[derive(Default)]
struct Broken {
    death: usize,
    back: usize,
    drained: usize,
    stopped: usize,
}

/// Connections broken between two readings.
fn lost(before: &Progress, after: &Progress) -> usize {
    (after.kept_alive_broken - before.kept_alive_broken) + (after.new_failed - before.new_failed)
}

/// Waits (polling every 5 ms) until the router's route goes through `want`.
fn wait_hops(topo: &Ecmp, want: &[usize], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match topo.routes_through(want) {
            Ok(()) => return Ok(()),
            Err(got) if Instant::now() > deadline => {
                anyhow::bail!("next hops {got:?}, want nodes {want:?} after {timeout:?}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Kept-alive answers per second, over the next second.
fn answers_per_second(load: &FailoverLoad) -> f64 {
    let from = load.progress().kept_alive_requests;
    std::thread::sleep(Duration::from_secs(1));
    (load.progress().kept_alive_requests - from) as f64
}

/// Waits until kept-alive answers over the last 200 ms come at `rate` a
/// second or more.
fn wait_rate(load: &FailoverLoad, rate: f64) -> anyhow::Result<()> {
    const WINDOW: Duration = Duration::from_millis(200);
    let mut seen = std::collections::VecDeque::new();
    let started = Instant::now();
    loop {
        let now = Instant::now();
        let count = load.progress().kept_alive_requests;
        seen.push_back((now, count));
        while seen.front().is_some_and(|(t, _)| now - *t > WINDOW) {
            seen.pop_front();
        }
        let (first, oldest) = seen[0];
        if now - first >= WINDOW.mul_f64(0.95)
            && (count - oldest) as f64 >= rate * WINDOW.as_secs_f64()
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(20) {
            anyhow::bail!("traffic stayed below {rate:.0}/s: {:?}", load.progress());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_progress(load: &FailoverLoad, done: impl Fn(&Progress) -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&load.progress()) {
        if Instant::now() > deadline {
            anyhow::bail!("traffic stalled: {:?}", load.progress());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Lets traffic run over the new paths a while: a break they cause shows.
fn settle(load: &FailoverLoad) -> anyhow::Result<()> {
    let from = load.progress().kept_alive_requests;
    wait_progress(load, |p| p.kept_alive_requests >= from + 3 * KEPT_ALIVE)
}
