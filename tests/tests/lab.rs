//! `cargo xtask run`'s lab: it comes up with lb1 VRRP master, what its
//! guide says to type works, failover to lb2 included, and SIGINT (Ctrl-C)
//! tears down every namespace, pin and process, also when its output went
//! into a pipe that Ctrl-C closed.
//!
//! The lab uses fixed names (halb-lab-*), so these tests take turns, and
//! fail if a lab is already running on the machine.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard, PoisonError, mpsc},
    time::{Duration, Instant},
};

use halb_tests::{
    agent::{BPFFS, halb_bin},
    netns::run_checked,
    process::ChildGuard,
};

const VIP: &str = "198.18.0.100";

/// The last line of the guide the lab prints once it is up.
const GUIDE_END: &str = "Ctrl-C tears everything down";

/// Held by each test for its whole run: one lab at a time.
static ONE_LAB: Mutex<()> = Mutex::new(());

fn one_lab() -> MutexGuard<'static, ()> {
    let turn = ONE_LAB.lock().unwrap_or_else(PoisonError::into_inner);
    assert!(
        lab_namespaces().is_empty(),
        "a lab is already running: {:?}",
        lab_namespaces()
    );
    turn
}

/// The xtask binary, built next to halb.
fn xtask_bin() -> PathBuf {
    halb_bin().parent().expect("bin folder").join("xtask")
}

/// `xtask lab`, the privileged half of `cargo xtask run`.
fn lab_command() -> Command {
    let mut command = Command::new(xtask_bin());
    command
        .arg("lab")
        .arg("--halb")
        .arg(halb_bin())
        .arg("--web")
        .arg(halb_bin().with_file_name("halb-web"));
    command
}

/// The lab's pin folders in bpffs.
fn lab_pins() -> Vec<String> {
    std::fs::read_dir(BPFFS)
        .expect("read bpffs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("halb-lab"))
        .collect()
}

/// The pids of every process in the lab's namespaces.
fn lab_pids() -> Vec<i32> {
    lab_namespaces()
        .iter()
        .flat_map(|ns| namespace_pids(ns))
        .collect()
}

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

/// `ip -n halb-lab-ROLE -br ARGS dev eth0`, split in words.
fn brief(role: &str, args: &[&str]) -> Vec<String> {
    let out = run_checked(
        Command::new("ip")
            .args(["-n", &format!("halb-lab-{role}"), "-br"])
            .args(args)
            .args(["dev", "eth0"]),
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn holds_vip(role: &str) -> bool {
    brief(role, &["addr", "show"])
        .iter()
        .any(|a| a.split('/').next() == Some(VIP))
}

fn mac(role: &str) -> String {
    brief(role, &["link", "show"])
        .get(2)
        .cloned()
        .unwrap_or_else(|| panic!("no MAC for {role}'s eth0"))
}

/// The MAC the client has for the VIP, if any.
fn client_vip_mac() -> Option<String> {
    let out = run_checked(Command::new("ip").args([
        "-n",
        "halb-lab-client",
        "neigh",
        "show",
        "to",
        VIP,
        "dev",
        "eth0",
    ]));
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = shown.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_owned)
}

/// The lab agent's control socket (the agent harness puts it there).
fn control_socket(role: &str) -> PathBuf {
    std::env::temp_dir().join(format!("halb-lab-{role}.sock"))
}

/// The state of the lab's VRRP instance on `role`, from `halb status --json`.
fn vrrp_state(role: &str) -> String {
    let out = run_checked(
        Command::new(halb_bin())
            .args(["status", "--json", "--socket"])
            .arg(control_socket(role)),
    );
    let status: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("halb status --json");
    status["vrrp"]
        .as_array()
        .and_then(|all| all.iter().find(|v| v["name"] == "VI_1"))
        .and_then(|v| v["state"].as_str())
        .unwrap_or_else(|| panic!("no VRRP instance VI_1 on {role}: {status}"))
        .to_owned()
}

/// Polls `done` every 50 ms; panics with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// New connections to the VIP from the client, `n` of them; every one must
/// be answered. Returns the set of backends that did.
/// Ctrl-C to the lab; its exit status once it has torn down.
fn stop_lab(lab: &mut ChildGuard, timeout: Duration) -> std::process::ExitStatus {
    lab.signal(libc::SIGINT);
    halb_tests::wait::until("the lab stops after SIGINT", timeout, || {
        lab.try_exit_status()
            .ok_or_else(|| "still running".to_owned())
    })
}

fn ask_vip(n: usize) -> std::collections::BTreeSet<String> {
    (0..n)
        .map(|_| in_client(&["curl", "-sS", "--max-time", "5", &format!("http://{VIP}/")]))
        .collect()
}

#[test]
fn lab_comes_up_works_and_tears_down_on_ctrl_c() {
    let _turn = one_lab();
    let mut lab = ChildGuard::spawn("lab", lab_command(), false);
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
    // lb1 won the VRRP election before the guide was printed: it holds
    // the VIP, lb2 stands by, the client learnt lb1's MAC.
    assert_eq!(vrrp_state("lb1"), "master");
    assert_eq!(vrrp_state("lb2"), "backup");
    assert!(holds_vip("lb1"), "lb1 does not hold the VIP");
    assert!(!holds_vip("lb2"), "lb2 holds the VIP too");
    let all_three: std::collections::BTreeSet<String> =
        ["web1\n", "web2\n", "web3\n"].map(String::from).into();
    // The VIP, through lb1's datapath, on new connections: all three answer.
    assert_eq!(ask_vip(30), all_three, "the VIP's answers");
    assert_eq!(client_vip_mac(), Some(mac("lb1")), "the client's VIP MAC");
    // The layer-7 service on port 8080: static paths to web1, the rest to
    // web2 or web3.
    let curl = |path: &str| {
        in_client(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            &format!("http://{VIP}:8080{path}"),
        ])
    };
    assert_eq!(curl("/static/site.css"), "web1\n");
    let app = curl("/cart");
    assert!(app == "web2\n" || app == "web3\n", "{app:?}");
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

    let pids = lab_pids();
    assert!(
        pids.len() >= 5,
        "expected halb x2 and halb-web x3, got {pids:?}"
    );

    // The guide's failover: halb on lb1 stops (priority 0, VIP dropped);
    // lb2 takes the VIP and the client, told by gratuitous ARP, keeps
    // getting answers. The lab stays up.
    run_checked(
        Command::new(halb_bin())
            .arg("stop")
            .arg("--socket")
            .arg(control_socket("lb1")),
    );
    let lb2_mac = mac("lb2");
    let took = wait_until(
        "the client reaches the VIP at lb2",
        Duration::from_secs(5),
        || holds_vip("lb2") && !holds_vip("lb1") && client_vip_mac().as_ref() == Some(&lb2_mac),
    );
    println!("after `halb stop` on lb1, lb2 holds the VIP and the client has its MAC in {took:?}");
    assert_eq!(vrrp_state("lb2"), "master");
    assert_eq!(ask_vip(30), all_three, "the VIP's answers from lb2");
    lab.lines()
        .wait_for("halb on lb1 exited", Duration::from_secs(2))
        .expect("the lab noticed lb1's halb exit");
    assert!(
        lab.try_exit_status().is_none(),
        "the lab went down with lb1:\n{}",
        lab.lines().snapshot().join("\n")
    );

    let status = stop_lab(&mut lab, Duration::from_secs(10));
    assert!(
        status.success(),
        "lab exited with {status}:\n{}",
        lab.lines().snapshot().join("\n")
    );
    assert_nothing_left(&pids);
}

/// A lab started without the harness's pipes: its process group is killed
/// if the test ends with it running, and whatever it left is cleaned up
/// (`xtask lab-clean`), so a failure here does not break the next test.
struct BareLab(Child);

impl Drop for BareLab {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            // SAFETY: kill the process group of a child we started as its leader.
            unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
            let _ = self.0.wait();
        }
        if !lab_namespaces().is_empty() || !lab_pins().is_empty() {
            let _ = Command::new(xtask_bin())
                .arg("lab-clean")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `cargo xtask run 2>&1 | tee lab.log`, then Ctrl-C, which stops tee as
/// well: everything the lab prints from then on fails (EPIPE). It must tear
/// down all the same. Before the fix, its "tearing down" line panicked, the
/// harness's printing in Drop panicked again and aborted, and all seven
/// namespaces, both pin folders and the web servers stayed.
#[test]
fn lab_tears_down_when_its_output_pipe_is_gone() {
    let _turn = one_lab();
    let (reader, writer) = std::io::pipe().expect("pipe");
    let mut command = lab_command();
    command
        .stdin(Stdio::null())
        .stdout(writer.try_clone().expect("clone the pipe"))
        .stderr(writer)
        // Its own group, as a shell's pipeline: Ctrl-C goes to the group.
        .process_group(0);
    let mut lab = BareLab(command.spawn().expect("start the lab"));
    // Drop the command: it holds the pipe's write ends.
    drop(command);

    // The reader, tee, reads up to the end of the guide, then goes away.
    let (lines, lines_rx) = mpsc::channel();
    let tee = std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            let end = line.contains(GUIDE_END);
            let _ = lines.send(line);
            if end {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !seen.last().is_some_and(|l: &String| l.contains(GUIDE_END)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                drop(lab);
                panic!("the lab did not print its guide:\n{}", seen.join("\n"));
            }
        }
    }
    tee.join().expect("reader thread");
    // The read end is closed now: every write to the pipe fails.

    let pids = lab_pids();
    assert!(
        pids.len() >= 5,
        "expected halb x2 and halb-web x3, got {pids:?}"
    );
    // SAFETY: SIGINT to the process group of a child we started as its leader.
    unsafe { libc::kill(-(lab.0.id() as i32), libc::SIGINT) };
    wait_until(
        "the lab exits after SIGINT",
        Duration::from_secs(30),
        || lab.0.try_wait().expect("try_wait").is_some(),
    );
    let status = lab.0.wait().expect("wait for the lab");

    assert_nothing_left(&pids);
    assert!(
        status.success(),
        "the lab exited with {status} after SIGINT"
    );
}

/// No lab namespace, pin folder or process (of `pids`) is left.
#[track_caller]
fn assert_nothing_left(pids: &[i32]) {
    assert!(lab_namespaces().is_empty(), "left: {:?}", lab_namespaces());
    let pins = lab_pins();
    assert!(pins.is_empty(), "pins left: {pins:?}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} of the lab is still running"
        );
    }
}

/// The router's next hops for the VIP in the ecmp lab.
fn ecmp_next_hops() -> Vec<String> {
    let out = run_checked(Command::new("ip").args(["-n", "halb-lab-router", "route", "show", VIP]));
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let words: Vec<&str> = out.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_owned())
        .collect()
}

#[test]
fn ecmp_lab_spreads_over_three_nodes_survives_a_dead_one_and_tears_down() {
    let _turn = one_lab();
    let mut command = lab_command();
    command.args(["--scenario", "ecmp"]);
    let mut lab = ChildGuard::spawn("lab", command, false);
    if lab
        .lines()
        .wait_for("halb lab (ecmp) is up", Duration::from_secs(60))
        .is_none()
    {
        panic!(
            "ecmp lab did not come up:\n{}",
            lab.lines().snapshot().join("\n")
        );
    }
    // The guide's first commands: one route, a next hop per node, and the
    // client's connections answered by all three backends.
    assert_eq!(ecmp_next_hops().len(), 3, "{:?}", ecmp_next_hops());
    let all_three: std::collections::BTreeSet<String> =
        ["web1\n", "web2\n", "web3\n"].map(String::from).into();
    assert_eq!(ask_vip(30), all_three, "the VIP's answers");
    let pids = lab_pids();
    // Its last: node1's link goes down; BFD withdraws it, the VIP answers on.
    run_checked(Command::new("ip").args(["-n", "halb-lab-node1", "link", "set", "eth0", "down"]));
    let took = wait_until("node1 withdrawn", Duration::from_secs(3), || {
        ecmp_next_hops() == ["198.18.1.3", "198.18.1.4"]
    });
    println!("node1's link down: withdrawn by the router in {took:?}");
    assert_eq!(
        ask_vip(30),
        all_three,
        "the VIP's answers through node2 and node3"
    );

    let status = stop_lab(&mut lab, Duration::from_secs(15));
    assert!(
        status.success(),
        "lab exited with {status}:\n{}",
        lab.lines().snapshot().join("\n")
    );
    assert_nothing_left(&pids);
}
