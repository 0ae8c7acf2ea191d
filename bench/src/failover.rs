//! Failover time of a halb pair, and in the same run of a keepalived pair
//! with the same timers (VRRPv3, 100 ms adverts, priorities 150 and 100):
//! from `kill -9` of the master until the client's ARP entry for the VIP
//! points at the backup, which is when its traffic moves.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use halb_tests::{
    agent::Agent,
    ha::{HaPair, VIP},
    keepalived::{Instance, Keepalived},
};

const TRIALS: usize = 20;
const INTERVAL: Duration = Duration::from_millis(100);
const PRIORITIES: [u8; 2] = [150, 100];

pub fn run(halb: &Path) -> anyhow::Result<()> {
    let pair = HaPair::build(None);
    let mdi = INTERVAL * 3 + INTERVAL.mul_f64((256 - PRIORITIES[1] as u32) as f64 / 256.0);
    println!(
        "\nfailover: VRRPv3, {INTERVAL:?} adverts, backup priority {} (Master_Down_Interval {mdi:?}); \
         time from kill -9 of the master to the client's ARP entry pointing at the backup, {TRIALS} trials each",
        PRIORITIES[1]
    );
    let halb_times = trials("halb", &pair, |pair| {
        let vrrp = |priority: u8| {
            format!(
                "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
                 advert_interval = \"100ms\"\nvirtual_addresses = [\"{VIP}/32\"]\n"
            )
        };
        let master = pair.start_halb_bin(halb, 0, &vrrp(PRIORITIES[0]));
        wait_master(pair, 0)?;
        let backup = pair.start_halb_bin(halb, 1, &vrrp(PRIORITIES[1]));
        // Let the backup hear a few adverts: it is settled as backup.
        std::thread::sleep(INTERVAL * 5);
        Ok(Box::new(HalbPair {
            master,
            _backup: backup,
        }))
    })?;
    let keepalived_times = trials("keepalived", &pair, |pair| {
        let instance = |priority: u8| Instance {
            version: 3,
            vrid: 51,
            priority,
            advert_int: INTERVAL.as_secs_f64(),
            preempt: true,
            auth_pass: None,
            virtual_address: VIP.to_owned(),
        };
        let master = Keepalived::start(&pair.nodes[0].ns, &instance(PRIORITIES[0]));
        wait_master(pair, 0)?;
        let backup = Keepalived::start(&pair.nodes[1].ns, &instance(PRIORITIES[1]));
        std::thread::sleep(INTERVAL * 5);
        Ok(Box::new(KeepalivedPair {
            master,
            _backup: backup,
        }))
    })?;
    let (h, k) = (summary(&halb_times), summary(&keepalived_times));
    println!(
        "  {:<11} median {:>6.1} ms  max {:>6.1} ms  min {:>6.1} ms",
        "halb", h.0, h.1, h.2
    );
    println!(
        "  {:<11} median {:>6.1} ms  max {:>6.1} ms  min {:>6.1} ms",
        "keepalived", k.0, k.1, k.2
    );
    println!(
        "  halb / keepalived: median {:.2}, max {:.2}",
        h.0 / k.0,
        h.1 / k.1
    );
    Ok(())
}

/// A running pair whose master can be crashed; dropping it stops the rest.
trait Running {
    fn crash_master(&mut self);
}

struct HalbPair {
    master: Agent,
    _backup: Agent,
}

impl Running for HalbPair {
    fn crash_master(&mut self) {
        self.master.crash();
    }
}

struct KeepalivedPair {
    master: Keepalived,
    _backup: Keepalived,
}

impl Running for KeepalivedPair {
    fn crash_master(&mut self) {
        self.master.crash();
    }
}

/// Runs `TRIALS` failovers of the pair `start` builds; returns each time.
fn trials(
    name: &str,
    pair: &HaPair,
    start: impl Fn(&HaPair) -> anyhow::Result<Box<dyn Running>>,
) -> anyhow::Result<Vec<Duration>> {
    let backup_mac = pair.nodes[1].mac();
    let mut times = Vec::new();
    for trial in 0..TRIALS {
        clear_vip(pair);
        let mut running = start(pair)?;
        let started = Instant::now();
        running.crash_master();
        let took = loop {
            if pair.client_vip_mac().as_deref() == Some(backup_mac.as_str()) {
                break started.elapsed();
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "{name}: no failover within 10 s in trial {trial}"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        drop(running);
        times.push(took);
    }
    Ok(times)
}

/// Waits until node `i` holds the VIP and the client has learned it.
fn wait_master(pair: &HaPair, i: usize) -> anyhow::Result<()> {
    let mac = pair.nodes[i].mac();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(pair.holds(i, VIP) && pair.client_vip_mac().as_deref() == Some(mac.as_str())) {
        anyhow::ensure!(Instant::now() < deadline, "node {i} never became master");
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// A crashed master leaves the VIP on its interface: clear both nodes.
fn clear_vip(pair: &HaPair) {
    for node in &pair.nodes {
        let _ = node
            .ns
            .command("ip")
            .args(["addr", "del", &format!("{VIP}/32"), "dev", "eth0"])
            .output();
    }
}

/// Median, max and min in milliseconds.
fn summary(times: &[Duration]) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[ms.len() - 1], ms[0])
}
