//! The embedded lab: a client, two balancer nodes running halb and three
//! web backends on one LAN, up until Ctrl-C, then torn down completely.
//!
//! ```text
//!  client .10    lb1 .2 (halb)   lb2 .3 (halb)   web1 .11  web2 .12  web3 .13
//!     |              |               |              |         |         |
//!  ---+--------------+---------------+--------------+---------+---------+---
//!                  br0 in halb-lab-sw: 198.18.0.0/24, 2001:db8::/64
//! ```

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Result, bail};
use halb_tests::{
    agent::{Agent, BPFFS},
    netns::NetNs,
    process::ChildGuard,
    topo::{HOST_IF, Lan},
};

use crate::{build::Binaries, signals};

/// Every namespace and pin folder of the lab starts with this.
const LAB: &str = "halb-lab";

struct Node {
    role: &'static str,
    v4: &'static str,
    v6: &'static str,
}

const CLIENT: Node = Node {
    role: "client",
    v4: "198.18.0.10",
    v6: "2001:db8::10",
};
const BALANCERS: [Node; 2] = [
    Node {
        role: "lb1",
        v4: "198.18.0.2",
        v6: "2001:db8::2",
    },
    Node {
        role: "lb2",
        v4: "198.18.0.3",
        v6: "2001:db8::3",
    },
];
const WEBS: [Node; 3] = [
    Node {
        role: "web1",
        v4: "198.18.0.11",
        v6: "2001:db8::11",
    },
    Node {
        role: "web2",
        v4: "198.18.0.12",
        v6: "2001:db8::12",
    },
    Node {
        role: "web3",
        v4: "198.18.0.13",
        v6: "2001:db8::13",
    },
];
/// The virtual service: full NAT to web1-3, port 80.
const VIP: &str = "198.18.0.100";

pub fn run(bins: &Binaries) -> Result<()> {
    if let Some(stale) = lab_namespaces().first() {
        bail!(
            "namespace {stale} exists: a lab is running, or one was killed; stop it, or clean up with `cargo xtask run --clean`"
        );
    }
    signals::catch_stop();

    // Declared in teardown order, last first: processes, then hosts, then the switch.
    let mut lan = Lan::with_switch(NetNs::named(&format!("{LAB}-sw")));
    let mut attach = |node: &Node| {
        let ns = NetNs::named(&format!("{LAB}-{}", node.role));
        lan.attach(
            ns,
            &[&format!("{}/24", node.v4), &format!("{}/64", node.v6)],
        )
    };
    let client = attach(&CLIENT);
    let balancers: Vec<_> = BALANCERS.iter().map(&mut attach).collect();
    let webs: Vec<_> = WEBS.iter().map(&mut attach).collect();

    let mut web_processes = Vec::new();
    for (node, host) in WEBS.iter().zip(&webs) {
        let mut command = host.ns.command(bins.web.to_str().expect("UTF-8 path"));
        command.args([
            node.role,
            &format!("{}:80", node.v4),
            &format!("[{}]:80", node.v6),
        ]);
        web_processes.push(ChildGuard::spawn(node.role, command, false));
    }
    // Until VRRP lands, the VIP is put on lb1 by hand; lb2 runs the same
    // service, ready, without it (a backup that never takes over yet).
    balancers[0]
        .ns
        .ip(&["addr", "add", &format!("{VIP}/32"), "dev", HOST_IF]);
    let mut agents = Vec::new();
    for (node, host) in BALANCERS.iter().zip(&balancers) {
        let name = format!("{LAB}-{}", node.role);
        let pin_dir = Path::new(BPFFS).join(&name);
        let mut agent = Agent::start_named(&host.ns, &name, &bins.halb, pin_dir, true, |pin_dir| {
            lab_config(pin_dir, node.v4)
        });
        agent.wait_attached();
        agents.push(agent);
    }
    for (node, web) in WEBS.iter().zip(&web_processes) {
        if web
            .lines()
            .wait_for("listening", Duration::from_secs(5))
            .is_none()
        {
            bail!("{} did not start: {:?}", node.role, web.lines().snapshot());
        }
    }

    print_guide(bins, &client.ns, &agents);
    while !signals::stop_requested() {
        std::thread::sleep(Duration::from_millis(200));
        for (node, agent) in BALANCERS.iter().zip(agents.iter_mut()) {
            if let Some(status) = agent.process.try_exit_status() {
                eprintln!("lab: halb on {} exited ({status}); tearing down", node.role);
                signals::request_stop();
            }
        }
    }
    eprintln!("lab: tearing down");
    drop(agents);
    drop(web_processes);
    drop((client, balancers, webs, lan));
    let left = lab_namespaces();
    if !left.is_empty() {
        bail!("namespaces left behind: {left:?}");
    }
    eprintln!("lab: stopped; no namespace, link, pinned map or process left");
    Ok(())
}

/// halb's config on a balancer of the lab: one full-NAT service on the VIP.
fn lab_config(pin_dir: &Path, own_address: &str) -> String {
    let mut config = format!(
        "[datapath]\ninterfaces = [\"{HOST_IF}\"]\npin_dir = \"{}\"\n\n[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nsnat_address = \"{own_address}\"\n",
        pin_dir.display()
    );
    for web in &WEBS {
        config += &format!("[[service.backend]]\naddress = \"{}\"\n", web.v4);
    }
    config
}

fn print_guide(bins: &Binaries, client: &NetNs, agents: &[Agent]) {
    let c = client.name();
    let lb1_pins = agents[0].pin_dir.display();
    let try_lines = [
        (
            format!("ip netns exec {c} curl -s http://{VIP}/"),
            "the VIP, through lb1's XDP datapath: web1, web2 or web3",
        ),
        (
            format!(
                "for i in $(seq 12); do ip netns exec {c} curl -s http://{VIP}/; done | sort | uniq -c"
            ),
            "new connections spread over the three",
        ),
        (
            format!("ip netns exec {c} ping -c 3 {}", BALANCERS[0].v4),
            "crosses lb1's XDP program",
        ),
        (
            format!("bpftool map dump pinned {lb1_pins}/HALB_FLOWS"),
            "tracked flows: client -> VIP, backend, NAT port",
        ),
        (
            format!("bpftool map dump pinned {lb1_pins}/HALB_VERDICTS"),
            "what the datapath did with each packet, and why",
        ),
        (
            format!(
                "{} status --socket {}",
                bins.halb.display(),
                agents[0].control_socket.display()
            ),
            "lb1's services and backends, with counters and rates",
        ),
        (
            format!(
                "{} backend drain web {}:80 --socket {}",
                bins.halb.display(),
                WEBS[2].v4,
                agents[0].control_socket.display()
            ),
            "no new flows to web3 (enable undoes it)",
        ),
        (
            format!("{} counters --pin-dir {lb1_pins}", bins.halb.display()),
            "counters summed over CPUs, from the pins",
        ),
        (
            "bpftool prog show name halb_xdp".to_owned(),
            "the loaded XDP programs",
        ),
        (
            format!("ip -n {LAB}-lb1 -d link show {HOST_IF}"),
            "'prog/xdp id N': attached in native mode",
        ),
    ];
    println!("\nhalb lab is up: one LAN, 198.18.0.0/24 and 2001:db8::/64");
    println!("  {:<7} {:<16} {}", "client", c, CLIENT.v4);
    for (node, agent) in BALANCERS.iter().zip(agents) {
        println!(
            "  {:<7} {:<16} {:<12} halb, maps pinned in {}",
            node.role,
            format!("{LAB}-{}", node.role),
            node.v4,
            agent.pin_dir.display()
        );
    }
    for node in &WEBS {
        println!(
            "  {:<7} {:<16} {:<12} HTTP on :80, answers {:?}",
            node.role,
            format!("{LAB}-{}", node.role),
            node.v4,
            node.role
        );
    }
    println!("\nTry, as root in another terminal:");
    for (command, what) in &try_lines {
        println!("  # {what}\n  {command}");
    }
    println!(
        "\nThe VIP {VIP} sits on lb1 by hand: VRRP (moving it to lb2 when lb1 fails) is not there yet."
    );
    println!("Ctrl-C tears everything down.\n");
}

/// Namespaces whose name says they belong to the lab.
fn lab_namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{LAB}-")))
        .map(str::to_owned)
        .collect()
}

/// Removes what a killed lab left: its processes die with their namespaces'
/// interfaces unreachable, so kill them, then delete namespaces and pins.
pub fn clean() -> Result<()> {
    for ns in lab_namespaces() {
        let pids = std::process::Command::new("ip")
            .args(["netns", "pids", &ns])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill with a pid read from the kernel; at worst ESRCH.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    for ns in lab_namespaces() {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &ns])
            .status();
        eprintln!("lab: deleted namespace {ns}");
    }
    for entry in std::fs::read_dir(BPFFS).into_iter().flatten().flatten() {
        let path: PathBuf = entry.path();
        if entry.file_name().to_string_lossy().starts_with(LAB) {
            std::fs::remove_dir_all(&path)?;
            eprintln!("lab: removed {}", path.display());
        }
    }
    Ok(())
}
