mod interop;
mod malformed;
mod pair;
mod split_brain;
mod tracking;

use std::time::Duration;

use halb_tests::agent::Agent;

/// One `[[vrrp]]` table on eth0 for the IPv4 VIP (`extra` lines appended).
pub fn vrrp_v4(name: &str, vrid: u8, priority: u8, interval: &str, extra: &str) -> String {
    format!(
        "[[vrrp]]\nname = \"{name}\"\ninterface = \"eth0\"\nvrid = {vrid}\npriority = {priority}\n\
         advert_interval = \"{interval}\"\nvirtual_addresses = [\"{}/32\"]\nlabel = \"eth0:vip\"\n{extra}\n",
        halb_tests::ha::VIP
    )
}

/// The same for the IPv6 VIP (VRRPv3).
pub fn vrrp_v6(name: &str, vrid: u8, priority: u8, interval: &str, extra: &str) -> String {
    format!(
        "[[vrrp]]\nname = \"{name}\"\ninterface = \"eth0\"\nvrid = {vrid}\npriority = {priority}\n\
         advert_interval = \"{interval}\"\nvirtual_addresses = [\"{}/128\"]\n{extra}\n",
        halb_tests::ha::VIP6
    )
}

/// Instance `name` as `halb status --json` shows it.
pub fn instance(agent: &Agent, name: &str) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&agent.ctl(&["status", "--json"])).expect("status JSON");
    status["vrrp"]
        .as_array()
        .and_then(|all| all.iter().find(|v| v["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no VRRP instance {name} in {status}"))
}

pub fn state(agent: &Agent, name: &str) -> String {
    instance(agent, name)["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits until instance `name` of `agent` is in `wanted`.
pub fn wait_state(agent: &Agent, name: &str, wanted: &str, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let now = state(agent, name);
        if now == wanted {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} is {now}, not {wanted}, after {timeout:?}: {}",
            instance(agent, name)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// RFC 9568 §6.1 Master_Down_Interval of a backup at `priority`.
pub fn master_down_interval(interval: Duration, priority: u8) -> Duration {
    interval * 3 + interval.mul_f64((256 - priority as u32) as f64 / 256.0)
}
