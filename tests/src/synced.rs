//! A halb pair with connection sync on [`HaPair`]'s LAN: the web service
//! in full NAT from a floating address, in keep-client NAT with a floating
//! gateway, or in DSR; for the stateful failover tests and `bench sync`.

use std::path::{Path, PathBuf};

use crate::{
    agent::{Agent, BPFFS},
    ha::{HaPair, NODE_ADDRS, VIP},
    netns::unique_name,
};

/// The address backends see in full NAT: virtual, so it moves with the VIP.
pub const SNAT: &str = "198.18.0.101";
/// Keep-client NAT: the backends' gateway to the client's subnet, virtual too.
pub const GATEWAY: &str = "198.18.0.102";
/// Keep-client NAT: the client's address, in a subnet routed through the
/// balancers (on the same LAN, backends would answer it directly).
pub const ROUTED_CLIENT: &str = "198.19.0.10";
pub const SYNC_PORT: u16 = 7900;
pub const KEY: &str = "halb-test-sync-key-0123456789";
pub const PRIORITIES: [u8; 2] = [150, 100];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    FullNat,
    KeepClient,
    Dsr,
}

/// Node `i`'s config: the web service in `mode`, VRRP with the VIP (and
/// the floating address `mode` needs), `[sync]` when `sync`, and `extra`
/// (more services).
pub fn config(i: usize, pin_dir: &Path, mode: Mode, sync: bool, extra: &str) -> String {
    let service_mode = match mode {
        Mode::FullNat => format!("snat_address = \"{SNAT}\"\n"),
        Mode::KeepClient => "keep_client_address = true\n".to_owned(),
        Mode::Dsr => "mode = \"dsr\"\n".to_owned(),
    };
    let virtual_addresses = match mode {
        Mode::FullNat => format!("\"{VIP}/32\", \"{SNAT}/32\""),
        Mode::KeepClient => format!("\"{VIP}/32\", \"{GATEWAY}/32\""),
        Mode::Dsr => format!("\"{VIP}/32\""),
    };
    let backends: String = (0..3)
        .map(|b| format!("[[service.backend]]\naddress = \"198.18.0.{}\"\n", 11 + b))
        .collect();
    let sync_table = if sync {
        format!(
            "[sync]\nlisten = \"{me}:{SYNC_PORT}\"\npeers = [\"{peer}:{SYNC_PORT}\"]\nkey = \"{KEY}\"\nresync_timeout = \"5s\"\n",
            me = NODE_ADDRS[i],
            peer = NODE_ADDRS[1 - i],
        )
    } else {
        String::new()
    };
    format!(
        "[datapath]\ninterfaces = [\"eth0\"]\npin_dir = \"{pin}\"\n\n\
         [[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\n{service_mode}\
         [service.check]\ntype = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\nfall = 2\nrise = 2\n\
         {backends}\n{extra}\n\
         [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         advert_interval = \"100ms\"\nvirtual_addresses = [{virtual_addresses}]\n\n{sync_table}",
        pin = pin_dir.display(),
        priority = PRIORITIES[i],
    )
}

/// Starts halb (the binary at `halb`) on node `i` and waits until its
/// datapath is attached.
pub fn start(pair: &HaPair, halb: &Path, i: usize, mode: Mode, sync: bool, extra: &str) -> Agent {
    let name = unique_name(&format!("lb{}", i + 1));
    let pin_dir = PathBuf::from(BPFFS).join(&name);
    let mut agent = Agent::start_named(&pair.nodes[i].ns, &name, halb, pin_dir, false, |pin| {
        config(i, pin, mode, sync, extra)
    });
    agent.wait_attached();
    agent
}

/// Sets the LAN up for `mode`: DSR backends hold the VIP on their
/// loopback; keep-client NAT routes the client's own subnet through the
/// balancers' virtual gateway.
pub fn prepare(pair: &HaPair, mode: Mode) {
    match mode {
        Mode::FullNat => {}
        Mode::Dsr => {
            for web in pair.backends() {
                web.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
                web.exec("sysctl", &["-qw", "net.ipv4.conf.all.arp_ignore=1"]);
                web.exec("sysctl", &["-qw", "net.ipv4.conf.all.arp_announce=2"]);
            }
        }
        Mode::KeepClient => {
            let client = &pair.client.ns;
            client.ip(&["addr", "add", &format!("{ROUTED_CLIENT}/32"), "dev", "eth0"]);
            client.ip(&[
                "route",
                "add",
                &format!("{VIP}/32"),
                "dev",
                "eth0",
                "src",
                ROUTED_CLIENT,
            ]);
            for web in pair.backends() {
                web.ip(&["route", "add", "198.19.0.0/24", "via", GATEWAY]);
            }
        }
    }
}
