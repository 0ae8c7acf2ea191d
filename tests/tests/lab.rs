//! `cargo xtask run`'s lab: it comes up, what its guide says to type works,
//! and SIGINT (Ctrl-C) tears down every namespace, pin and process.
//!
//! The lab uses fixed names (halb-lab-*), so this test fails if a lab is
//! already running on the machine.

use std::{path::Path, process::Command, time::Duration};

use halb_tests::{
    agent::{BPFFS, halb_bin},
    netns::run_checked,
    process::ChildGuard,
};

fn lab_namespaces() -> Vec<String> {
    let out = run_checked(Command::new("ip").args(["netns", "list"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("halb-lab-"))
        .map(str::to_owned)
        .collect()
}

fn namespace_pids(ns: &str) -> Vec<i32> {
    let out = run_checked(Command::new("ip").args(["netns", "pids", ns]));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn in_client(args: &[&str]) -> String {
    let out = run_checked(
        Command::new("ip")
            .args(["netns", "exec", "halb-lab-client"])
            .args(args),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn lab_comes_up_works_and_tears_down_on_ctrl_c() {
    assert!(
        lab_namespaces().is_empty(),
        "a lab is already running: {:?}",
        lab_namespaces()
    );
    let bin_dir = halb_bin().parent().expect("bin folder").to_owned();
    let mut command = Command::new(bin_dir.join("xtask"));
    command
        .arg("lab")
        .arg("--halb")
        .arg(halb_bin())
        .arg("--web")
        .arg(bin_dir.join("halb-web"));
    let mut lab = ChildGuard::spawn("lab", command, false);
    if lab
        .lines()
        .wait_for("halb lab is up", Duration::from_secs(60))
        .is_none()
    {
        panic!(
            "lab did not come up:\n{}",
            lab.lines().snapshot().join("\n")
        );
    }

    // What the printed guide says to type.
    for (ip, name) in [
        ("198.18.0.11", "web1"),
        ("198.18.0.12", "web2"),
        ("198.18.0.13", "web3"),
    ] {
        let body = in_client(&["curl", "-sS", "--max-time", "5", &format!("http://{ip}/")]);
        assert_eq!(body, format!("{name}\n"));
    }
    let body = in_client(&["curl", "-sS", "--max-time", "5", "http://[2001:db8::12]/"]);
    assert_eq!(body, "web2\n");
    // The VIP, through lb1's datapath, on new connections: all three answer.
    let answered: std::collections::BTreeSet<String> = (0..30)
        .map(|_| in_client(&["curl", "-sS", "--max-time", "5", "http://198.18.0.100/"]))
        .collect();
    assert_eq!(
        answered,
        ["web1\n", "web2\n", "web3\n"].map(String::from).into(),
        "the VIP's answers"
    );
    in_client(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2"]);
    let lb1_pins = Path::new(BPFFS).join("halb-lab-lb1");
    let counters = run_checked(
        Command::new(halb_bin())
            .args(["counters", "--pin-dir"])
            .arg(&lb1_pins),
    );
    let counters = String::from_utf8_lossy(&counters.stdout).into_owned();
    let ipv4: u64 = counters
        .lines()
        .find_map(|l| l.strip_prefix("ipv4"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ipv4 line in {counters}"));
    assert!(ipv4 >= 3, "lb1 counted {ipv4} IPv4 packets after 3 pings");
    run_checked(
        Command::new("bpftool")
            .args(["map", "dump", "pinned"])
            .arg(lb1_pins.join("HALB_STATS")),
    );

    let pids: Vec<i32> = lab_namespaces()
        .iter()
        .flat_map(|ns| namespace_pids(ns))
        .collect();
    assert!(
        pids.len() >= 5,
        "expected halb x2 and halb-web x3, got {pids:?}"
    );

    lab.signal(libc::SIGINT);
    let mut status = None;
    for _ in 0..200 {
        status = lab.try_exit_status();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = status.expect("lab did not stop within 10 s of SIGINT");
    assert!(
        status.success(),
        "lab exited with {status}:\n{}",
        lab.lines().snapshot().join("\n")
    );
    assert!(lab_namespaces().is_empty(), "left: {:?}", lab_namespaces());
    let pins: Vec<_> = std::fs::read_dir(BPFFS)
        .expect("read bpffs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("halb-lab"))
        .collect();
    assert!(pins.is_empty(), "pins left: {pins:?}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} of the lab is still running"
        );
    }
}
