//! The balancer scenario the forwarding tests and the benchmarks share: a
//! client, a balancer node and three halb-web backends.
//!
//! ```text
//! one arm:
//!   client .10 ---+--- lb .2 (VIP .100 on eth0) ---+--- web1-3 .11-.13
//!                 198.18.0.0/24, one bridge
//! two arms:
//!   client 198.18.0.10 --- eth0 [lb] eth1 --- web1-3 198.18.1.11-.13
//!          198.18.0.0/24   .0.2     .1.2      default route via 198.18.1.2
//!   (the client routes 198.18.1.0/24 via the balancer too)
//! ```

use std::{net::SocketAddr, path::Path, time::Duration};

use crate::{
    agent::Agent,
    netns::NetNs,
    process::ChildGuard,
    topo::{HOST_IF, Host, Lan},
};

pub const VIP: &str = "198.18.0.100";
pub const CLIENT: &str = "198.18.0.10";
pub const WEBS: [&str; 3] = ["web1", "web2", "web3"];

/// How halb forwards to the backends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Full NAT; one arm.
    Nat,
    /// Destination-only NAT; two arms, backends route back via the balancer.
    NatKeepClient,
    /// Direct server return; one arm, backends hold the VIP on lo.
    Dsr,
}

impl Mode {
    pub fn two_arms(self) -> bool {
        self == Mode::NatKeepClient
    }
}

pub struct Backend {
    pub name: &'static str,
    pub addr: String,
    pub ns: NetNs,
}

pub struct Scenario {
    pub client: Host,
    pub lb: NetNs,
    pub backends: Vec<Backend>,
    two_arms: bool,
    // Drop order: processes, then namespaces.
    _webs: Vec<ChildGuard>,
    _lans: Vec<Lan>,
}

impl Scenario {
    /// Builds the topology for `mode`, with `web_bin` (halb-web) serving on
    /// each backend. `two_arms` forces the two-arm layout for any mode.
    pub fn build(mode: Mode, two_arms: bool, web_bin: &Path) -> Self {
        let two_arms = two_arms || mode.two_arms();
        let mut front = Lan::new();
        let client = front.attach(NetNs::new("client"), &[&format!("{CLIENT}/24")]);
        let lb = NetNs::new("lb");
        front.plug(&lb, HOST_IF, &["198.18.0.2/24"]);
        // Clients reach the VIP through the balancer (VRRP will put it there).
        lb.ip(&["addr", "add", &format!("{VIP}/32"), "dev", HOST_IF]);
        let mut back = Lan::new();
        if two_arms {
            back.plug(&lb, "eth1", &["198.18.1.2/24"]);
            client
                .ns
                .ip(&["route", "add", "198.18.1.0/24", "via", "198.18.0.2"]);
            lb.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        }
        let mut backends = Vec::new();
        for (i, name) in WEBS.into_iter().enumerate() {
            let ns = NetNs::new(name);
            let addr = if two_arms {
                format!("198.18.1.{}", 11 + i)
            } else {
                format!("198.18.0.{}", 11 + i)
            };
            let lan = if two_arms { &mut back } else { &mut front };
            lan.plug(&ns, HOST_IF, &[&format!("{addr}/24")]);
            if two_arms {
                ns.ip(&["route", "add", "default", "via", "198.18.1.2"]);
            }
            if mode == Mode::Dsr {
                // The backend holds the VIP on lo and never answers ARP for it.
                ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
                ns.exec("sysctl", &["-qw", "net.ipv4.conf.all.arp_ignore=1"]);
                ns.exec("sysctl", &["-qw", "net.ipv4.conf.all.arp_announce=2"]);
            }
            backends.push(Backend { name, addr, ns });
        }
        let webs = backends
            .iter()
            .map(|b| {
                let mut command = b.ns.command(web_bin.to_str().expect("UTF-8 path"));
                command.args([b.name, "0.0.0.0:80"]);
                let web = ChildGuard::spawn(b.name, command, false);
                web.lines()
                    .wait_for("listening", Duration::from_secs(5))
                    .unwrap_or_else(|| panic!("{} did not start", b.name));
                web
            })
            .collect();
        Self {
            client,
            lb,
            backends,
            two_arms,
            _webs: webs,
            _lans: vec![front, back],
        }
    }

    pub fn vip(&self) -> SocketAddr {
        format!("{VIP}:80").parse().expect("VIP")
    }

    /// The config of one service on the VIP in `mode`, `weights` for
    /// web1-3 (0 leaves one out), with `extra` lines in `[datapath]`.
    pub fn config(&self, mode: Mode, weights: [u32; 3], pin_dir: &Path, extra: &str) -> String {
        let interfaces = if self.two_arms {
            "[\"eth0\", \"eth1\"]"
        } else {
            "[\"eth0\"]"
        };
        let snat = if self.two_arms {
            "198.18.1.2"
        } else {
            "198.18.0.2"
        };
        let mode_lines = match mode {
            Mode::Nat => format!("snat_address = \"{snat}\""),
            Mode::NatKeepClient => "keep_client_address = true".to_owned(),
            Mode::Dsr => "mode = \"dsr\"".to_owned(),
        };
        let mut backends = String::new();
        for (b, weight) in self.backends.iter().zip(weights) {
            if weight > 0 {
                backends += &format!(
                    "[[service.backend]]\naddress = \"{}\"\nweight = {weight}\n",
                    b.addr
                );
            }
        }
        format!(
            "[datapath]\ninterfaces = {interfaces}\npin_dir = \"{}\"\n{extra}\n\n[[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\n{mode_lines}\n{backends}",
            pin_dir.display()
        )
    }

    /// Starts halb (`halb_bin`) on the balancer and waits until it is attached.
    pub fn halb(&self, halb_bin: &Path, mode: Mode, weights: [u32; 3]) -> Agent {
        let name = crate::netns::unique_name("lb");
        let pin_dir = Path::new(crate::agent::BPFFS).join(&name);
        let mut agent = Agent::start_named(&self.lb, &name, halb_bin, pin_dir, false, |pin| {
            self.config(mode, weights, pin, "")
        });
        agent.wait_attached();
        agent
    }
}
