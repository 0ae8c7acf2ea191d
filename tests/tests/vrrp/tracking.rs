//! Tracking and notify: a master that loses every backend of a tracked
//! service, or a tracked interface, advertises a lower priority and the
//! backup takes over; a weight-0 item puts the instance in FAULT. Each
//! change runs the configured notify command.

use std::{path::PathBuf, time::Duration};

use halb_tests::{
    agent::Agent,
    ha::{HaPair, VIP},
    netns::unique_name,
};

use super::{instance, vrrp_v4, wait_state};

/// A file notify commands append "STATE INSTANCE" lines to; removed on drop.
struct NotifyLog(PathBuf);

impl NotifyLog {
    fn new() -> Self {
        Self(std::env::temp_dir().join(unique_name("notify")))
    }

    fn lines(&self) -> String {
        format!(
            "notify_master = \"echo $HALB_VRRP_STATE $HALB_VRRP_INSTANCE >> {0}\"\n\
             notify_backup = \"echo $HALB_VRRP_STATE $HALB_VRRP_INSTANCE >> {0}\"\n\
             notify_fault = \"echo $HALB_VRRP_STATE $HALB_VRRP_INSTANCE >> {0}\"\n",
            self.0.display()
        )
    }

    /// Waits until the log's last line is `wanted`.
    fn wait_last(&self, wanted: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let text = std::fs::read_to_string(&self.0).unwrap_or_default();
            if text.lines().last() == Some(wanted) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "notify log ends {:?}, not {wanted:?}: {text}",
                text.lines().last()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NotifyLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn priority(agent: &Agent) -> u64 {
    instance(agent, "VI_1")["priority"].as_u64().unwrap()
}

#[test]
fn a_master_without_backends_hands_the_vip_over_and_takes_it_back() {
    let mut pair = HaPair::build(Some(env!("CARGO_BIN_EXE_halb-web").as_ref()));
    let notify = NotifyLog::new();
    let lb1 = pair.start_halb(
        0,
        &vrrp_v4(
            "VI_1",
            51,
            150,
            "100ms",
            &format!(
                "track_service = [{{ name = \"web\", weight = -60 }}]\n{}",
                notify.lines()
            ),
        ),
    );
    wait_state(&lb1, "VI_1", "master", Duration::from_secs(5));
    notify.wait_last("MASTER VI_1");
    let lb2 = pair.start_halb(1, &vrrp_v4("VI_1", 51, 100, "100ms", ""));
    wait_state(&lb2, "VI_1", "backup", Duration::from_secs(5));

    // Every web server stops: lb1's checks fail (fall 2 x 200 ms), its
    // priority drops to 90 and lb2 (100) preempts it.
    pair.stop_webs();
    pair.wait_until("lb2 takes the VIP", Duration::from_secs(5), |p| {
        p.holders() == [false, true]
    });
    assert_eq!(priority(&lb1), 90);
    wait_state(&lb1, "VI_1", "backup", Duration::from_secs(1));
    notify.wait_last("BACKUP VI_1");
}

#[test]
fn a_tracked_interface_lowers_priority_and_weight_zero_means_fault() {
    let pair = HaPair::build(None);
    let lb1_ns = &pair.nodes[0].ns;
    for (a, b) in [("up0", "up0p"), ("up1", "up1p")] {
        lb1_ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        lb1_ns.ip(&["link", "set", b, "up"]);
        lb1_ns.ip(&["link", "set", a, "up"]);
    }
    let notify = NotifyLog::new();
    let lb1 = pair.start_halb(
        0,
        &vrrp_v4(
            "VI_1",
            51,
            150,
            "100ms",
            &format!(
                "track_interface = [{{ name = \"up0\", weight = -60 }}, {{ name = \"up1\", weight = 0 }}]\n{}",
                notify.lines()
            ),
        ),
    );
    wait_state(&lb1, "VI_1", "master", Duration::from_secs(5));
    let lb2 = pair.start_halb(1, &vrrp_v4("VI_1", 51, 100, "100ms", ""));
    wait_state(&lb2, "VI_1", "backup", Duration::from_secs(5));

    // Losing carrier counts as down: take the peer end down.
    lb1_ns.ip(&["link", "set", "up0p", "down"]);
    pair.wait_until("lb2 takes the VIP", Duration::from_secs(5), |p| {
        p.holders() == [false, true]
    });
    assert_eq!(priority(&lb1), 90);
    lb1_ns.ip(&["link", "set", "up0p", "up"]);
    pair.wait_until("lb1 preempts back", Duration::from_secs(5), |p| {
        p.holders() == [true, false]
    });
    assert_eq!(priority(&lb1), 150);
    notify.wait_last("MASTER VI_1");

    // A weight-0 interface: FAULT, silent, no address; lb2 takes over.
    lb1_ns.ip(&["link", "set", "up1", "down"]);
    wait_state(&lb1, "VI_1", "fault", Duration::from_secs(2));
    notify.wait_last("FAULT VI_1");
    let seen = instance(&lb1, "VI_1");
    assert!(seen["fault"].as_str().unwrap().contains("up1"), "{seen}");
    pair.wait_until("lb2 takes the VIP", Duration::from_secs(5), |p| {
        p.holders() == [false, true] && !p.holds(0, VIP)
    });
    // Out of fault, lb1 is a backup first and then preempts.
    lb1_ns.ip(&["link", "set", "up1", "up"]);
    pair.wait_until("lb1 preempts back", Duration::from_secs(5), |p| {
        p.holders() == [true, false]
    });
    wait_state(&lb2, "VI_1", "backup", Duration::from_secs(1));
}
