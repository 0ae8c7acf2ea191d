//! Health checks with real traffic: a backend stopped during a load on new
//! connections is out of the table within fall x interval (+1 s), with no
//! failed request after that; once restarted it is back within rise x
//! interval. One-arm full NAT (see halb_tests::scenario).

use std::time::Duration;

use halb_tests::{
    agent::halb_bin,
    scenario::{Mode, Scenario},
    traffic::{Sample, http_load},
};

const INTERVAL: Duration = Duration::from_millis(500);
const RISE: u32 = 2;
const FALL: u32 = 2;

fn check(kind: &str) -> String {
    let http = if kind == "http" {
        "path = \"/\"\nexpect_status = 200\nexpect_body = \"web\"\n"
    } else {
        ""
    };
    format!(
        "[service.check]\ntype = \"{kind}\"\ninterval = \"{}ms\"\ntimeout = \"300ms\"\nrise = {RISE}\nfall = {FALL}\n{http}",
        INTERVAL.as_millis()
    )
}

fn answered_by(samples: &[Sample], from: Duration, to: Duration) -> impl Iterator<Item = &Sample> {
    samples.iter().filter(move |s| s.at >= from && s.at < to)
}

fn backend_stopped_and_restarted_during_load(kind: &str) {
    let mut lab = Scenario::build(Mode::Nat, false, env!("CARGO_BIN_EXE_halb-web").as_ref());
    let mut agent = lab.halb_with(&halb_bin(), Mode::Nat, [1, 1, 1], &check(kind));
    let vip = lab.vip();
    let client = lab.client.ns.name().to_owned();

    let stop_at = Duration::from_secs(5);
    let restart_at = Duration::from_secs(12);
    let total = Duration::from_secs(20);
    let samples = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let ns = halb_tests::netns::NetNs::open(&client);
            // About 800 new connections a second: a steady load that stays
            // well inside full NAT's port space (see README, Known limits).
            http_load(&ns, vip, total, 4, Duration::from_millis(5))
        });
        std::thread::sleep(stop_at);
        lab.stop_web(2);
        std::thread::sleep(restart_at - stop_at);
        lab.start_web(2);
        load.join().expect("load thread")
    });
    let out_by = stop_at + INTERVAL * FALL + Duration::from_secs(1);
    let back_by = restart_at + INTERVAL * RISE + Duration::from_secs(1);
    eprintln!("{kind}: {} requests in {total:?}", samples.len());

    let counters = || {
        std::process::Command::new(halb_bin())
            .args(["counters", "--pin-dir"])
            .arg(&agent.pin_dir)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let mut counters = counters();
    let nstat = |ns: &str, what: &str| {
        let o = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "nstat",
                "-az",
                "TcpOutRsts",
                "TcpExtTCPSynRetrans",
                "TcpAttemptFails",
                "TcpExtListenDrops",
                "TcpExtListenOverflows",
                "TcpExtTW",
                "TcpExtPAWSEstab",
                "TcpExtTCPChallengeACK",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).replace('\n', " "))
            .unwrap_or_default();
        format!("{what}: {o}\n")
    };
    counters += &nstat(lab.lb.name(), "lb");
    counters += &nstat(lab.client.ns.name(), "client");
    for b in &lab.backends {
        counters += &nstat(b.ns.name(), b.name);
    }
    // Requests still in flight when web3 is killed may fail: stop short.
    let before: Vec<_> = answered_by(
        &samples,
        Duration::ZERO,
        stop_at - Duration::from_millis(100),
    )
    .collect();
    let failed_before: Vec<_> = before
        .iter()
        .filter(|s| s.result.is_err())
        .take(5)
        .collect();
    assert!(
        failed_before.is_empty(),
        "{kind}: failures before the stop: {failed_before:?}\n{counters}"
    );
    assert!(before.iter().any(|s| s.result.as_deref() == Ok("web3")));

    let out: Vec<_> = answered_by(&samples, out_by, restart_at).collect();
    assert!(
        out.len() > 100,
        "too few requests while web3 was out: {}",
        out.len()
    );
    let failed: Vec<_> = answered_by(&samples, out_by, total)
        .filter(|s| s.result.is_err())
        .collect();
    assert!(
        failed.is_empty(),
        "{kind}: failed after {out_by:?}: {:?}\n{counters}",
        &failed[..failed.len().min(5)]
    );
    assert!(
        out.iter().all(|s| s.result.as_deref() != Ok("web3")),
        "{kind}: web3 answered after it was out"
    );

    let back: Vec<_> = answered_by(&samples, back_by, total).collect();
    let web3 = back
        .iter()
        .filter(|s| s.result.as_deref() == Ok("web3"))
        .count();
    assert!(
        web3 as f64 > back.len() as f64 * 0.2,
        "{kind}: web3 got {web3} of {} requests after coming back",
        back.len()
    );

    agent.wait_for_log("backend down", Duration::from_secs(1));
    agent.wait_for_log("backend up", Duration::from_secs(1));
}

#[test]
fn tcp_check_takes_a_stopped_backend_out_and_back() {
    backend_stopped_and_restarted_during_load("tcp");
}

#[test]
fn http_check_takes_a_stopped_backend_out_and_back() {
    backend_stopped_and_restarted_during_load("http");
}
