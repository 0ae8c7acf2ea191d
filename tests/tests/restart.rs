//! Restart without loss: `kill -9` of the agent during a load on new
//! connections fails no request (the pinned link and maps keep the
//! datapath forwarding), and the restarted agent adopts the pinned maps,
//! its counters going on from where they were, and replaces the program
//! through the pinned link atomically. One-arm full NAT.

use std::time::Duration;

use halb_tests::{
    agent::halb_bin,
    scenario::{Mode, Scenario},
    traffic::http_load,
};

fn packets(pin_dir: &std::path::Path) -> u64 {
    let out = halb_tests::netns::run_checked(
        std::process::Command::new(halb_bin())
            .args(["counters", "--pin-dir"])
            .arg(pin_dir),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("packets"))
        .and_then(|v| v.trim().parse().ok())
        .expect("packets counter")
}

#[test]
fn kill_9_during_load_fails_no_request_and_the_next_agent_adopts_the_datapath() {
    let lab = Scenario::build(Mode::Nat, false, env!("CARGO_BIN_EXE_halb-web").as_ref());
    let mut agent = lab.halb(&halb_bin(), Mode::Nat, [1, 1, 1]);
    let client = lab.client.ns.name().to_owned();
    let vip = lab.vip();
    let (samples, agent) = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let ns = halb_tests::netns::NetNs::open(&client);
            http_load(
                &ns,
                vip,
                Duration::from_secs(10),
                4,
                Duration::from_millis(5),
            )
        });
        std::thread::sleep(Duration::from_secs(3));
        agent.crash();
        let link = lab.lb.ip(&["-d", "link", "show", "eth0"]);
        assert!(
            link.contains("prog/xdp"),
            "the datapath went with the agent: {link}"
        );
        let before_restart = packets(&agent.pin_dir);
        std::thread::sleep(Duration::from_secs(2));
        let during_outage = packets(&agent.pin_dir);
        assert!(
            during_outage > before_restart,
            "the datapath forwarded while no agent ran"
        );

        let mut agent = agent.restart(&lab.lb);
        agent.wait_attached();
        agent.wait_for_log("XDP link adopted", Duration::from_secs(1));
        assert!(
            packets(&agent.pin_dir) >= during_outage,
            "counters went on, not from zero"
        );
        (load.join().expect("load"), agent)
    });
    let failed: Vec<_> = samples
        .iter()
        .filter(|s| s.result.is_err())
        .take(5)
        .collect();
    assert!(
        failed.is_empty(),
        "{} requests, failed: {failed:?}",
        samples.len()
    );
    assert!(samples.len() > 2000, "only {} requests", samples.len());
    // The restarted agent still detaches cleanly.
    let pin_dir = agent.pin_dir.clone();
    drop(agent);
    assert!(!pin_dir.exists(), "{} left pinned", pin_dir.display());
    let link = lab.lb.ip(&["-d", "link", "show", "eth0"]);
    assert!(!link.contains("prog/xdp"), "XDP still attached: {link}");
}

#[test]
fn keep_datapath_leaves_it_forwarding_for_the_next_agent() {
    let lab = Scenario::build(Mode::Nat, false, env!("CARGO_BIN_EXE_halb-web").as_ref());
    let agent = lab.halb(&halb_bin(), Mode::Nat, [1, 1, 1]);
    let mut agent = agent.restart_with(&lab.lb, &["--keep-datapath"]);
    agent.wait_attached();
    // SIGTERM: the agent goes, the datapath stays.
    assert!(agent.process.stop(Duration::from_secs(5)).success());
    agent.wait_for_log("left attached", Duration::from_secs(1));
    let link = lab.lb.ip(&["-d", "link", "show", "eth0"]);
    assert!(
        link.contains("prog/xdp"),
        "detached despite --keep-datapath: {link}"
    );
    let tally = halb_tests::traffic::http_requests(
        &lab.client.ns,
        lab.vip(),
        300,
        4,
        halb_tests::traffic::Source::Ephemeral,
    );
    assert_eq!(
        tally.failed, 0,
        "no agent, datapath alone: {:?}",
        tally.errors
    );
    assert_eq!(tally.by_backend.len(), 3);
    // The next agent adopts it, and a plain stop cleans everything.
    let mut agent = agent.restart(&lab.lb);
    agent.wait_attached();
    agent.wait_for_log("XDP link adopted", Duration::from_secs(1));
    let pin_dir = agent.pin_dir.clone();
    drop(agent);
    assert!(!pin_dir.exists(), "{} left pinned", pin_dir.display());
}
