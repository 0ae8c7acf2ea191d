//! Connection sync between a halb pair, printed, never asserted:
//!
//! 1. the flow-to-peer lag (from the datapath's flow event on the master
//!    to the backup's acknowledgement that it installed the flow), p50 and
//!    p99, at 1k and 10k new flows per second and rising until the backup
//!    no longer gets every flow; the new flows are UDP datagrams from fresh
//!    source ports, sent from the client by a raw socket at a paced rate;
//! 2. in the same run, how many of 200 kept-alive connections survive the
//!    master's death (kill -9 and link down) with halb and sync, halb
//!    without sync, and keepalived + haproxy as the classic how-to sets
//!    them up (haproxy on both nodes, binding the VIP with
//!    ip_nonlocal_bind).

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use halb_tests::{
    agent::Agent,
    failover_load::{FailoverLoad, LoadSpec},
    ha::{HaPair, VIP},
    keepalived::{Instance, Keepalived},
    process::ChildGuard,
    synced::{self, Mode},
};

/// The UDP service whose new flows the lag is measured with (DSR: no NAT
/// port per flow, so the flow table, not the ports, bounds a step).
const UDP_PORT: u16 = 5353;
/// Extra client addresses, so that there are enough fresh 5-tuples.
const SOURCES: u8 = 20;
const STEP: Duration = Duration::from_secs(2);

pub fn run(halb: &Path, web: &Path) -> anyhow::Result<()> {
    lag(halb, web)?;
    survival(halb, web)
}

fn udp_service() -> String {
    let backends: String = (0..3)
        .map(|b| format!("[[service.backend]]\naddress = \"198.18.0.{}\"\n", 11 + b))
        .collect();
    format!(
        "[[service]]\nname = \"dns\"\nvip = \"{VIP}\"\nport = {UDP_PORT}\nprotocol = \"udp\"\nmode = \"dsr\"\n{backends}"
    )
}

fn status(agent: &Agent) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&agent.ctl(&["status", "--json"]))?)
}

/// The master's one peer: (flows acknowledged, the lag's bucket counts).
fn acked(master: &Agent) -> anyhow::Result<(u64, Vec<u64>)> {
    let peer = status(master)?["sync"]["peers"][0]["lag"].clone();
    let counts = peer["counts"]
        .as_array()
        .context("lag counts")?
        .iter()
        .map(|v| v.as_u64().unwrap_or(0))
        .collect();
    Ok((peer["samples"].as_u64().unwrap_or(0), counts))
}

fn wait_master(pair: &HaPair, agent: &Agent, i: usize) -> anyhow::Result<()> {
    let mac = pair.nodes[i].mac();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let master = status(agent)?["vrrp"][0]["state"] == "master";
        if master && pair.client_vip_mac().as_deref() == Some(mac.as_str()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("node {i} did not become master");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lag(halb: &Path, web: &Path) -> anyhow::Result<()> {
    let pair = HaPair::build(Some(web));
    pair.wait_link_local();
    for s in 0..SOURCES {
        pair.client.ns.ip(&[
            "addr",
            "add",
            &format!("198.18.0.{}/24", 20 + s),
            "dev",
            "eth0",
        ]);
    }
    let master = synced::start(&pair, halb, 0, Mode::FullNat, true, &udp_service());
    wait_master(&pair, &master, 0)?;
    let _backup = synced::start(&pair, halb, 1, Mode::FullNat, true, &udp_service());
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&master)?["sync"]["peers"][0]["connected"] != true {
        if Instant::now() > deadline {
            bail!("the backup never connected");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let vip_mac = pair
        .client_vip_mac()
        .context("the client has no MAC for the VIP")?;
    println!(
        "\nsync lag: new UDP flows at a paced rate, {STEP:?} per step; lag = datapath event on the master to the backup's acknowledgement"
    );
    println!(
        "  {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "flows/s", "sent", "flows", "synced", "missing", "p50 ms", "p99 ms"
    );
    let events = || -> anyhow::Result<(u64, u64)> {
        let maps = halb::dataplane::maps::DatapathMaps::open_pinned(&master.pin_dir)?;
        let c = maps.packet_counters()?;
        Ok((c.flow_events, c.flow_events_lost))
    };
    let mut generator = Generator::new(&pair, &vip_mac)?;
    let mut best = None;
    for rate in [1_000u32, 10_000, 20_000, 40_000, 80_000, 160_000] {
        let (acked_before, counts_before) = acked(&master)?;
        let (events_before, lost_before) = events()?;
        let sent = generator.send(rate, STEP)?;
        // The flows the master made: a frame the LAN or the master's queue
        // dropped made none.
        let (events_after, lost_after) = events()?;
        let made = (events_after - events_before) + (lost_after - lost_before);
        // Wait until the backup has everything, or it stops coming.
        let mut last = (0, Instant::now());
        let (acked_after, counts_after) = loop {
            let now = acked(&master)?;
            if now.0 - acked_before >= made || last.1.elapsed() > Duration::from_secs(2) {
                break now;
            }
            if now.0 != last.0 {
                last = (now.0, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let synced = acked_after - acked_before;
        let delta: Vec<u64> = counts_after
            .iter()
            .zip(counts_before.iter().chain(std::iter::repeat(&0)))
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let ms = |q| {
            halb::connsync::lag::quantile_of(&delta, q).map_or("-".to_owned(), |d| {
                format!("{:.2}", d.as_secs_f64() * 1000.0)
            })
        };
        let achieved = sent as f64 / STEP.as_secs_f64();
        println!(
            "  {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            achieved,
            sent,
            made,
            synced,
            made.saturating_sub(synced),
            ms(0.5),
            ms(0.99)
        );
        if made < sent * 9 / 10 {
            println!(
                "  the master made flows of only {made} of {sent} frames: that is its limit here, not sync's"
            );
            break;
        }
        let p99_ok = halb::connsync::lag::quantile_of(&delta, 0.99)
            .is_some_and(|d| d <= Duration::from_millis(50));
        if synced >= made && p99_ok {
            best = Some(achieved);
        } else {
            break;
        }
        if achieved < rate as f64 * 0.8 {
            // The generator itself is the limit.
            break;
        }
    }
    match best {
        Some(r) => println!(
            "  highest rate with every flow synced and a p99 lag within 50 ms: {r:.0} flows/s"
        ),
        None => println!("  not even the lowest rate had every flow synced"),
    }
    Ok(())
}

/// Crafted UDP datagrams from the client, each from a 5-tuple not used
/// before, straight onto the wire (AF_PACKET) towards the VIP's MAC.
struct Generator {
    socket: libc::c_int,
    ifindex: i32,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    next: u32,
}

fn mac(text: &str) -> anyhow::Result<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad MAC {text}"))
}

impl Generator {
    fn new(pair: &HaPair, vip_mac: &str) -> anyhow::Result<Self> {
        let src_mac = mac(&pair.client.mac())?;
        let (socket, ifindex) = pair.client.ns.run(|| {
            // SAFETY: plain socket(2) and if_nametoindex(3) calls.
            unsafe {
                let s = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW,
                    (libc::ETH_P_ALL as u16).to_be() as i32,
                );
                let name = std::ffi::CString::new("eth0").expect("no NUL");
                (s, libc::if_nametoindex(name.as_ptr()) as i32)
            }
        });
        if socket < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        Ok(Self {
            socket,
            ifindex,
            src_mac,
            dst_mac: mac(vip_mac)?,
            next: 0,
        })
    }

    /// Sends `rate` new flows a second for `span`; returns how many.
    fn send(&mut self, rate: u32, span: Duration) -> anyhow::Result<u64> {
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < span {
            let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                let i = self.next;
                self.next += 1;
                let src = Ipv4Addr::new(198, 18, 0, 20 + (i / 60_000 % SOURCES as u32) as u8);
                let sport = 1024 + (i % 60_000) as u16;
                let frame = udp_frame(
                    self.src_mac,
                    self.dst_mac,
                    SocketAddrV4::new(src, sport),
                    SocketAddrV4::new(VIP.parse()?, UDP_PORT),
                );
                self.transmit(&frame)?;
                sent += 1;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(sent)
    }

    /// Sends one frame; a full device queue is waited out, not skipped.
    fn transmit(&self, frame: &[u8]) -> anyhow::Result<()> {
        for _ in 0..10_000 {
            match self.try_transmit(frame) {
                Err(e) if e.to_string().contains("No buffer space") => {
                    std::thread::sleep(Duration::from_micros(20));
                }
                other => return other,
            }
        }
        bail!("the client's device queue stayed full")
    }

    fn try_transmit(&self, frame: &[u8]) -> anyhow::Result<()> {
        // SAFETY: a zeroed sockaddr_ll filled for one send on our socket.
        let rc = unsafe {
            let mut to: libc::sockaddr_ll = std::mem::zeroed();
            to.sll_family = libc::AF_PACKET as u16;
            to.sll_ifindex = self.ifindex;
            to.sll_halen = 6;
            to.sll_addr[..6].copy_from_slice(&self.dst_mac);
            libc::sendto(
                self.socket,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            bail!("send: {e}");
        }
        Ok(())
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        // SAFETY: our own fd, closed once.
        unsafe { libc::close(self.socket) };
    }
}

fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .udp(src.port(), dst.port());
    let payload = b"halb-bench";
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload).expect("frame");
    frame
}

/// What kept 200 kept-alive connections through the master's death.
fn survival(halb: &Path, web: &Path) -> anyhow::Result<()> {
    println!(
        "\nfailover survival: 200 kept-alive connections through the master, which is killed (kill -9) and its link taken down"
    );
    let mut rows = Vec::new();
    for (name, sync, floating) in [
        ("halb, sync", true, true),
        ("halb, no sync", false, true),
        ("halb, no sync, own SNAT", false, false),
    ] {
        let pair = HaPair::build(Some(web));
        pair.wait_link_local();
        let start = |i| {
            if floating {
                synced::start(&pair, halb, i, Mode::FullNat, sync, "")
            } else {
                // The node's own address as the source backends see, as
                // configs without sync have it: its flows die with it.
                let vrrp = format!(
                    "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = {}\n\
                     advert_interval = \"100ms\"\nvirtual_addresses = [\"{VIP}/32\"]\n",
                    synced::PRIORITIES[i]
                );
                pair.start_halb_bin(halb, i, &vrrp)
            }
        };
        let master = start(0);
        wait_master(&pair, &master, 0)?;
        let backup = start(1);
        // The backup hears a few adverts and settles as backup (as the
        // failover bench does); without sync there is no event to wait for.
        std::thread::sleep(Duration::from_millis(500));
        let mut master = master;
        rows.push((name, trial(&pair, || master.crash(), &backup_mac(&pair))?));
        drop(backup);
    }
    rows.push(("keepalived + haproxy", keepalived_haproxy(web)?));
    for (name, (survived, total, took)) in &rows {
        println!(
            "  {name:<24} {survived:>4} of {total} survived ({:.1}%), VIP moved in {took:?}",
            100.0 * *survived as f64 / *total as f64
        );
    }
    Ok(())
}

fn backup_mac(pair: &HaPair) -> String {
    pair.nodes[1].mac()
}

/// Opens the connections, kills the master with `crash`, takes its link
/// down, waits for the VIP to move and for each connection to answer once
/// more (or break); returns (survived, total, failover time).
fn trial(
    pair: &HaPair,
    crash: impl FnOnce(),
    backup_mac: &str,
) -> anyhow::Result<(usize, usize, Duration)> {
    let vip: SocketAddr = format!("{VIP}:80").parse()?;
    let load = FailoverLoad::start(
        &pair.client.ns,
        vip,
        LoadSpec {
            kept_alive: 200,
            downloads: 0,
            download_ms: 0,
            new_conn_workers: 0,
        },
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while load.progress().kept_alive_requests < 400 {
        if Instant::now() > deadline {
            bail!("no traffic before the failover");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every flow made is synced well within this (p99 lag above).
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    crash();
    pair.nodes[0].ns.ip(&["link", "set", "eth0", "down"]);
    while pair.client_vip_mac().as_deref() != Some(backup_mac) {
        if started.elapsed() > Duration::from_secs(15) {
            bail!("the VIP did not move");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    // Each connection gets 10 requests' time (100 ms apart) on the backup,
    // and its 10 s read timeout to notice a broken connection.
    let after = load.progress().kept_alive_requests;
    let wait_until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < wait_until {
        let p = load.progress();
        if p.kept_alive_requests + p.kept_alive_broken * 10 >= after + 2000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = load.stop();
    pair.nodes[0].ns.ip(&["link", "set", "eth0", "up"]);
    Ok((
        report.kept_alive - report.kept_alive_broken,
        report.kept_alive,
        took,
    ))
}

/// keepalived moves the VIP; haproxy (mode http, keep-alive, roundrobin
/// over web1-3) runs on both nodes and binds the VIP whether or not it is
/// there (net.ipv4.ip_nonlocal_bind = 1), as the classic how-to has it.
fn keepalived_haproxy(web: &Path) -> anyhow::Result<(usize, usize, Duration)> {
    let pair = HaPair::build(Some(web));
    let config = format!(
        "global\n  maxconn 8000\ndefaults\n  mode http\n  timeout connect 10s\n  timeout client 1m\n  \
         timeout server 1m\n  timeout http-keep-alive 10s\nfrontend main\n  bind {VIP}:80\n  default_backend app\n\
         backend app\n  balance roundrobin\n  server web1 198.18.0.11:80 check inter 2s\n  \
         server web2 198.18.0.12:80 check inter 2s\n  server web3 198.18.0.13:80 check inter 2s\n"
    );
    let path = std::env::temp_dir().join(format!(
        "halb-bench-sync-haproxy-{}.cfg",
        std::process::id()
    ));
    std::fs::write(&path, &config)?;
    let mut haproxies: Vec<ChildGuard> = Vec::new();
    let mut keepaliveds = Vec::new();
    for (i, priority) in synced::PRIORITIES.iter().enumerate() {
        let ns = &pair.nodes[i].ns;
        ns.exec("sysctl", &["-qw", "net.ipv4.ip_nonlocal_bind=1"]);
        let mut command = ns.command("haproxy");
        command.arg("-db").arg("-f").arg(&path);
        haproxies.push(ChildGuard::spawn("haproxy", command, false));
        keepaliveds.push(Keepalived::start(
            ns,
            &Instance {
                version: 3,
                vrid: 51,
                priority: *priority,
                advert_int: 0.1,
                preempt: true,
                auth_pass: None,
                virtual_address: VIP.to_owned(),
            },
        ));
    }
    let mac = pair.nodes[0].mac();
    let deadline = Instant::now() + Duration::from_secs(15);
    while pair.client_vip_mac().as_deref() != Some(mac.as_str()) {
        if Instant::now() > deadline {
            bail!("keepalived on lb1 never became master");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&path);
    let mut keepaliveds = keepaliveds.into_iter();
    let mut master = keepaliveds.next().expect("two");
    let backup = keepaliveds.next().expect("two");
    let mut master_haproxy = haproxies.remove(0);
    let result = trial(
        &pair,
        || {
            master.crash();
            master_haproxy.kill();
        },
        &backup_mac(&pair),
    );
    drop(backup);
    result
}
