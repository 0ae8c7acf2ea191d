//! The embedded lab: a client, two balancer nodes running halb and three
//! web backends on one LAN, up until Ctrl-C, then torn down completely. The
//! balancers elect the VIP's holder by VRRP; the client learns it from
//! gratuitous ARP, as a router would.
//!
//! ```text
//!  client .10    lb1 .2 (halb)   lb2 .3 (halb)   web1 .11  web2 .12  web3 .13
//!     |              |               |              |         |         |
//!  ---+--------------+---------------+--------------+---------+---------+---
//!                  br0 in halb-lab-sw: 198.18.0.0/24, 2001:db8::/64
//!        VIP 198.18.0.100 on the VRRP master: lb1 (150), else lb2 (100)
//! ```

use std::{
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use halb_tests::{
    agent::{Agent, BPFFS},
    netns::NetNs,
    process::ChildGuard,
    topo::{HOST_IF, Host, Lan},
};

use crate::{
    bpffs,
    build::Binaries,
    console::{self, say, show},
    packages, signals,
};

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
/// Full NAT's source address towards the backends: virtual, it moves with
/// the VIP, so backends' replies reach whichever balancer is master.
const SNAT: &str = "198.18.0.101";
const SYNC_PORT: u16 = 7900;
/// The lab's shared sync key (a real one comes from a file of its own).
const SYNC_KEY: &str = "halb-lab-sync-key-not-a-secret";
/// The VRRP instance both balancers run for the VIP.
const VRRP_NAME: &str = "VI_1";
/// Port of the lab's layer-7 service.
const HTTP_PORT: u16 = 8080;
const VRID: u8 = 51;
/// VRRP priorities of lb1 and lb2: lb1 wins the election.
const PRIORITIES: [u8; 2] = [150, 100];
/// How long lb1 gets to win it. With adverts every second a backup waits
/// Master_Down_Interval, 3.4 s at priority 150, before it takes the VIP.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The scenarios there are.
const SCENARIOS: &[&str] = &["pair", "ecmp"];

pub fn check_scenario(scenario: &str) -> Result<()> {
    if !SCENARIOS.contains(&scenario) {
        bail!(
            "no lab scenario {scenario:?}; there are: pair (VRRP and connection sync), ecmp (three nodes behind a BIRD router)"
        );
    }
    Ok(())
}

/// What a scenario runs besides the harness and the guide's commands.
pub fn needs(scenario: &str) -> &'static [packages::Need] {
    match scenario {
        "ecmp" => std::slice::from_ref(&packages::BIRD),
        _ => &[],
    }
}

pub fn run(bins: &Binaries, scenario: &str) -> Result<()> {
    check_scenario(scenario)?;
    packages::ensure(
        "cargo xtask run",
        &[packages::HARNESS, packages::LAB_GUIDE, needs(scenario)],
    )?;
    bpffs::ensure()?;
    if let Some(stale) = lab_namespaces().first() {
        bail!(
            "namespace {stale} exists: a lab is running, or one was killed; stop it, or clean up with `cargo xtask run --clean`"
        );
    }
    signals::catch_stop();
    // The harness panics with context by design: make that one line, and
    // the lab's error. What `up_until_stopped` set up lives in its locals,
    // so it is torn down when it returns, fails or panics, before anything
    // below is printed; printing itself cannot fail (console.rs).
    console::one_line_panics();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| match scenario {
        "ecmp" => crate::lab_ecmp::up_until_stopped(bins, LAB),
        _ => up_until_stopped(bins),
    }))
    .unwrap_or_else(|_| Err(anyhow!(console::take_panic())));
    let left = leftovers();
    match outcome {
        Ok(()) if left.is_empty() => {
            say!("lab: stopped; no namespace, link, pinned map or process left");
            Ok(())
        }
        Ok(()) => bail!("left behind: {left:?}; `cargo xtask run --clean` removes them"),
        Err(error) if left.is_empty() => Err(error.context("the lab failed, and is torn down")),
        Err(error) => Err(error.context(format!(
            "the lab failed and left {left:?} behind; `cargo xtask run --clean` removes them"
        ))),
    }
}

/// Starts the lab, prints its guide, and waits for a stop signal or for
/// both balancers to exit; returning drops, so tears down, everything.
fn up_until_stopped(bins: &Binaries) -> Result<()> {
    let web_bin = bins
        .web
        .to_str()
        .with_context(|| format!("{} is not a UTF-8 path", bins.web.display()))?;
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
    // Learn (and relearn, on failover) the VIP from gratuitous ARP.
    client.ns.exec(
        "sysctl",
        &["-qw", &format!("net.ipv4.conf.{HOST_IF}.arp_accept=1")],
    );
    let balancers: Vec<_> = BALANCERS.iter().map(&mut attach).collect();
    let webs: Vec<_> = WEBS.iter().map(&mut attach).collect();

    let mut web_processes = Vec::new();
    for (node, host) in WEBS.iter().zip(&webs) {
        let mut command = host.ns.command(web_bin);
        command.args([
            node.role,
            &format!("{}:80", node.v4),
            &format!("[{}]:80", node.v6),
        ]);
        web_processes.push(ChildGuard::spawn(node.role, command, false));
    }
    // Both balancers run the same service; VRRP puts the VIP on one of them.
    let mut agents = Vec::new();
    for ((node, host), priority) in BALANCERS.iter().zip(&balancers).zip(PRIORITIES) {
        let name = format!("{LAB}-{}", node.role);
        let pin_dir = Path::new(BPFFS).join(&name);
        let mut agent = Agent::start_named(&host.ns, &name, &bins.halb, pin_dir, true, |pin_dir| {
            lab_config(pin_dir, node.v4, peer_of(node.v4), priority)
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
    say!("lab: waiting for lb1 to win the VRRP election (about 3.5 s)");
    wait_for_master(&balancers)?;

    if !signals::stop_requested() {
        print_guide(bins, &client.ns, &agents);
    }
    // A balancer's halb stopping is part of the demo (failover): say so, and
    // tear down only when none is left.
    let mut running = [true; BALANCERS.len()];
    while !signals::stop_requested() {
        std::thread::sleep(Duration::from_millis(200));
        // A reader of our output that went away (tee, stopped by the same
        // Ctrl-C) must not break the harness's printing during teardown.
        console::check();
        for ((node, agent), running) in BALANCERS.iter().zip(&mut agents).zip(&mut running) {
            if !*running {
                continue;
            }
            if let Some(status) = agent.process.try_exit_status() {
                say!("lab: halb on {} exited ({status})", node.role);
                *running = false;
            }
        }
        if !running.contains(&true) {
            say!("lab: no balancer is left");
            signals::request_stop();
        }
    }
    console::check();
    say!("lab: tearing down");
    drop(agents);
    drop(web_processes);
    drop((client, balancers, webs, lan));
    Ok(())
}

/// The other balancer's address.
fn peer_of(own_address: &str) -> &'static str {
    if own_address == BALANCERS[0].v4 {
        BALANCERS[1].v4
    } else {
        BALANCERS[0].v4
    }
}

/// halb's config on a balancer of the lab: one full-NAT service on the VIP
/// (from a floating source address, so its flows survive a failover), a
/// layer-7 service on the VIP's port 8080, the VRRP instance that elects
/// which balancer holds the VIP, and connection sync with the other one.
fn lab_config(pin_dir: &Path, own_address: &str, peer_address: &str, priority: u8) -> String {
    let mut config = format!(
        "[datapath]\ninterfaces = [\"{HOST_IF}\"]\npin_dir = \"{}\"\n\n[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nsnat_address = \"{SNAT}\"\n",
        pin_dir.display()
    );
    for web in &WEBS {
        config += &format!("[[service.backend]]\naddress = \"{}\"\n", web.v4);
    }
    // The layer-7 path: the how-to's url_static on port 8080, served by
    // halb's HTTP proxy (web1 static, web2 and web3 the app).
    config += &format!(
        "\n[[service]]\nname = \"www\"\nvip = \"{VIP}\"\nport = {HTTP_PORT}\nkeep_client_address = true\n\
         [service.http]\ndefault_pool = \"app\"\n\
         [[service.http.rule]]\npool = \"static\"\npath_beg = [\"/static\", \"/images\"]\nignore_case = true\n\
         [[service.http.rule]]\npool = \"static\"\npath_end = [\".jpg\", \".gif\", \".png\", \".css\", \".js\"]\nignore_case = true\n\
         [[service.http.pool]]\nname = \"static\"\n[[service.http.pool.backend]]\naddress = \"{}\"\nport = 80\n\
         [[service.http.pool]]\nname = \"app\"\nbalance = \"leastconn\"\n\
         [[service.http.pool.backend]]\naddress = \"{}\"\nport = 80\n[[service.http.pool.backend]]\naddress = \"{}\"\nport = 80\n",
        WEBS[0].v4, WEBS[1].v4, WEBS[2].v4
    );
    config += &format!(
        "\n[[vrrp]]\nname = \"{VRRP_NAME}\"\ninterface = \"{HOST_IF}\"\nvrid = {VRID}\npriority = {priority}\n\
         advert_interval = \"1s\"\nvirtual_addresses = [\"{VIP}/32\", \"{SNAT}/32\"]\nlabel = \"{HOST_IF}:vip\"\n"
    );
    config += &format!(
        "\n[sync]\nlisten = \"{own_address}:{SYNC_PORT}\"\npeers = [\"{peer_address}:{SYNC_PORT}\"]\nkey = \"{SYNC_KEY}\"\n"
    );
    config
}

/// Waits until lb1, the higher priority, has won the election: it holds the
/// VIP and lb2 does not. Returns early on Ctrl-C.
fn wait_for_master(balancers: &[Host]) -> Result<()> {
    let started = Instant::now();
    loop {
        let held: Vec<bool> = balancers.iter().map(holds_vip).collect();
        if held == [true, false] || signals::stop_requested() {
            return Ok(());
        }
        if started.elapsed() > ELECTION_TIMEOUT {
            bail!(
                "VRRP did not put the VIP {VIP} on lb1 alone within {ELECTION_TIMEOUT:?} \
                 (lb1 holds it: {}, lb2 holds it: {}); the [{LAB}-lb1] and [{LAB}-lb2] log lines above say why",
                held[0],
                held[1]
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `host` has the VIP on its eth0.
fn holds_vip(host: &Host) -> bool {
    host.ns
        .ip(&["-br", "addr", "show", "dev", HOST_IF])
        .split_whitespace()
        .any(|a| a.split('/').next() == Some(VIP))
}

fn print_guide(bins: &Binaries, client: &NetNs, agents: &[Agent]) {
    let c = client.name();
    let halb = bins.halb.display();
    let lb1_pins = agents[0].pin_dir.display();
    let [lb1_socket, lb2_socket] = [0, 1].map(|i| agents[i].control_socket.display());
    let try_lines = [
        (
            format!("ip netns exec {c} curl -s http://{VIP}/"),
            "the VIP, through the VRRP master lb1's XDP datapath: web1, web2 or web3",
        ),
        (
            format!(
                "for i in $(seq 12); do ip netns exec {c} curl -s http://{VIP}/; done | sort | uniq -c"
            ),
            "new connections spread over the three",
        ),
        (
            format!("ip netns exec {c} curl -s http://{VIP}:{HTTP_PORT}/static/site.css"),
            "the layer-7 service: halb's HTTP proxy sends static paths to web1",
        ),
        (
            format!("ip netns exec {c} curl -s http://{VIP}:{HTTP_PORT}/cart"),
            "and the rest to web2 or web3 (leastconn); each request is an access-log line",
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
            format!("{halb} status --socket {lb1_socket}"),
            "lb1's services and backends, with counters and rates; last, its VRRP instance: MASTER",
        ),
        (
            format!("{halb} status --socket {lb2_socket}"),
            "lb2: the same service, idle; its VRRP instance is BACKUP, hearing lb1's adverts",
        ),
        (
            format!("ip -n {LAB}-lb1 addr show dev {HOST_IF}"),
            "the VIP on the master's eth0, labelled eth0:vip",
        ),
        (
            format!("ip -n {c} neigh show {VIP}"),
            "the client reaches the VIP at lb1's MAC, learnt from its gratuitous ARP",
        ),
        (
            format!(
                "{halb} backend drain web {}:80 --socket {lb1_socket}",
                WEBS[2].v4
            ),
            "no new flows to web3 (enable undoes it)",
        ),
        (
            format!("{halb} counters --pin-dir {lb1_pins}"),
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
    let stop_what = format!(
        "stop halb on lb1 (as `kill {}` would): it advertises priority 0 and drops the VIP, \
         lb2 becomes MASTER within a second and announces the VIP by gratuitous ARP; \
         the loop above keeps getting answers, now from lb2",
        agents[0].process.pid()
    );
    let failover_lines = [
        (
            format!(
                "while sleep 0.5; do ip netns exec {c} curl -s --max-time 1 http://{VIP}/; done"
            ),
            "in a terminal of its own: keep asking the VIP",
        ),
        (
            format!(
                "ip netns exec {c} curl -s -o /dev/null -w '%{{size_download}} bytes in %{{time_total}} s\\n' http://{VIP}/stream/30000"
            ),
            "in another: a 30 s download (2.9 MB); lb1 syncs its flow to lb2, so it carries on across the failover and ends whole",
        ),
        (
            format!("{halb} stop --socket {lb1_socket}"),
            stop_what.as_str(),
        ),
        (
            format!("{halb} status --socket {lb2_socket}"),
            "lb2's VRRP instance is MASTER, its service counts the new flows; its sync section shows the flows lb1 sent",
        ),
        (
            format!("ip -n {c} neigh show {VIP}"),
            "the client now reaches the VIP at lb2's MAC",
        ),
    ];
    show!("\nhalb lab is up: one LAN, 198.18.0.0/24 and 2001:db8::/64");
    show!("  {:<7} {:<16} {}", "client", c, CLIENT.v4);
    for ((node, agent), priority) in BALANCERS.iter().zip(agents).zip(PRIORITIES) {
        show!(
            "  {:<7} {:<16} {:<12} halb, VRRP priority {priority}, maps pinned in {}",
            node.role,
            format!("{LAB}-{}", node.role),
            node.v4,
            agent.pin_dir.display()
        );
    }
    for node in &WEBS {
        show!(
            "  {:<7} {:<16} {:<12} HTTP on :80, answers {:?}",
            node.role,
            format!("{LAB}-{}", node.role),
            node.v4,
            node.role
        );
    }
    show!("\nTry, as root in another terminal:");
    for (command, what) in &try_lines {
        show!("  # {what}\n  {command}");
    }
    show!("\nFailover, last (it ends halb on lb1):");
    for (command, what) in &failover_lines {
        show!("  # {what}\n  {command}");
    }
    show!(
        "\nlb1 and lb2 elect the holder of the VIP {VIP} by VRRP (VRID {VRID}, an advert a second): \
         lb2 takes it over when halb on lb1 stops, or after 3.6 s without adverts if it dies."
    );
    show!("The lab stays up when one balancer's halb exits; Ctrl-C tears everything down.\n");
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

/// The lab's namespaces and pin folders that exist.
fn leftovers() -> Vec<String> {
    let mut left = lab_namespaces();
    left.extend(lab_pin_dirs().iter().map(|p| p.display().to_string()));
    left
}

/// Folders in bpffs whose name says they belong to the lab.
fn lab_pin_dirs() -> Vec<PathBuf> {
    std::fs::read_dir(BPFFS)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(LAB))
        .map(|e| e.path())
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
        say!("lab: deleted namespace {ns}");
    }
    for path in lab_pin_dirs() {
        std::fs::remove_dir_all(&path).with_context(|| format!("remove {}", path.display()))?;
        say!("lab: removed {}", path.display());
    }
    Ok(())
}
