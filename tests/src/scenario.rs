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
pub const VIP6: &str = "2001:db8::100";
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
    pub addr6: String,
    pub ns: NetNs,
}

pub struct Scenario {
    pub client: Host,
    pub lb: NetNs,
    pub backends: Vec<Backend>,
    two_arms: bool,
    web_bin: std::path::PathBuf,
    // Drop order: processes, then namespaces.
    webs: Vec<Option<ChildGuard>>,
    _lans: Vec<Lan>,
}

impl Scenario {
    /// Builds the topology for `mode`, with `web_bin` (halb-web) serving on
    /// each backend. `two_arms` forces the two-arm layout for any mode.
    pub fn build(mode: Mode, two_arms: bool, web_bin: &Path) -> Self {
        let two_arms = two_arms || mode.two_arms();
        let mut front = Lan::new();
        let client = front.attach(
            NetNs::new("client"),
            &[&format!("{CLIENT}/24"), "2001:db8::10/64"],
        );
        let lb = NetNs::new("lb");
        front.plug(&lb, HOST_IF, &["198.18.0.2/24", "2001:db8::2/64"]);
        // Clients reach the VIPs through the balancer (VRRP will put them there).
        lb.ip(&["addr", "add", &format!("{VIP}/32"), "dev", HOST_IF]);
        lb.ip(&[
            "addr",
            "add",
            &format!("{VIP6}/128"),
            "dev",
            HOST_IF,
            "nodad",
        ]);
        let mut back = Lan::new();
        if two_arms {
            back.plug(&lb, "eth1", &["198.18.1.2/24", "2001:db8:1::2/64"]);
            client
                .ns
                .ip(&["route", "add", "198.18.1.0/24", "via", "198.18.0.2"]);
            client
                .ns
                .ip(&["route", "add", "2001:db8:1::/64", "via", "2001:db8::2"]);
            lb.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
            lb.exec("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);
        }
        let mut backends = Vec::new();
        for (i, name) in WEBS.into_iter().enumerate() {
            let ns = NetNs::new(name);
            let (addr, addr6) = if two_arms {
                (
                    format!("198.18.1.{}", 11 + i),
                    format!("2001:db8:1::{}", 11 + i),
                )
            } else {
                (
                    format!("198.18.0.{}", 11 + i),
                    format!("2001:db8::{}", 11 + i),
                )
            };
            let lan = if two_arms { &mut back } else { &mut front };
            lan.plug(
                &ns,
                HOST_IF,
                &[&format!("{addr}/24"), &format!("{addr6}/64")],
            );
            if two_arms {
                ns.ip(&["route", "add", "default", "via", "198.18.1.2"]);
                ns.ip(&["-6", "route", "add", "default", "via", "2001:db8:1::2"]);
            }
            if mode == Mode::Dsr {
                // The backend holds the VIPs on lo and never answers ARP for
                // them (neighbour discovery answers only for its own addresses).
                ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
                ns.ip(&["addr", "add", &format!("{VIP6}/128"), "dev", "lo"]);
                ns.exec("sysctl", &["-qw", "net.ipv4.conf.all.arp_ignore=1"]);
                ns.exec("sysctl", &["-qw", "net.ipv4.conf.all.arp_announce=2"]);
            }
            backends.push(Backend {
                name,
                addr,
                addr6,
                ns,
            });
        }
        let webs = backends
            .iter()
            .map(|b| Some(start_web(b, web_bin)))
            .collect();
        Self {
            client,
            lb,
            backends,
            two_arms,
            web_bin: web_bin.to_owned(),
            webs,
            _lans: vec![front, back],
        }
    }

    /// Stops backend `i`'s web server (connections to it are refused).
    pub fn stop_web(&mut self, i: usize) {
        self.webs[i] = None;
    }

    /// The process id of backend `i`'s web server, if it runs (to kill it
    /// while other threads use the scenario).
    pub fn web_pid(&self, i: usize) -> Option<u32> {
        self.webs[i].as_ref().map(ChildGuard::pid)
    }

    /// Starts backend `i`'s web server again.
    pub fn start_web(&mut self, i: usize) {
        self.webs[i] = Some(start_web(&self.backends[i], &self.web_bin));
    }

    pub fn vip(&self) -> SocketAddr {
        format!("{VIP}:80").parse().expect("VIP")
    }

    pub fn vip6(&self) -> SocketAddr {
        format!("[{VIP6}]:80").parse().expect("VIP6")
    }

    /// The config of the service on the VIP (and its twin on the IPv6 VIP)
    /// in `mode`, `weights` for web1-3 (0 leaves one out), with `extra`
    /// lines in `[datapath]`.
    pub fn config(&self, mode: Mode, weights: [u32; 3], pin_dir: &Path, extra: &str) -> String {
        self.config_with(mode, weights, pin_dir, extra, "")
    }

    /// [`Scenario::config`] with `service_extra` lines in each service
    /// (e.g. its `[service.check]`, which must come last).
    pub fn config_with(
        &self,
        mode: Mode,
        weights: [u32; 3],
        pin_dir: &Path,
        extra: &str,
        service_extra: &str,
    ) -> String {
        let interfaces = if self.two_arms {
            "[\"eth0\", \"eth1\"]"
        } else {
            "[\"eth0\"]"
        };
        let (snat, snat6) = if self.two_arms {
            ("198.18.1.2", "2001:db8:1::2")
        } else {
            ("198.18.0.2", "2001:db8::2")
        };
        let mode_lines = |snat: &str| match mode {
            Mode::Nat => format!("snat_address = \"{snat}\""),
            Mode::NatKeepClient => "keep_client_address = true".to_owned(),
            Mode::Dsr => "mode = \"dsr\"".to_owned(),
        };
        let backends = |v6: bool| {
            let mut out = String::new();
            for (b, weight) in self.backends.iter().zip(weights) {
                let addr = if v6 { &b.addr6 } else { &b.addr };
                if weight > 0 {
                    out +=
                        &format!("[[service.backend]]\naddress = \"{addr}\"\nweight = {weight}\n");
                }
            }
            out
        };
        format!(
            "[datapath]\ninterfaces = {interfaces}\npin_dir = \"{}\"\n{extra}\n\n\
             [[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\n{}\n{}\n{service_extra}\n\
             [[service]]\nname = \"web6\"\nvip = \"{VIP6}\"\nport = 80\n{}\n{}\n{service_extra}\n",
            pin_dir.display(),
            mode_lines(snat),
            backends(false),
            mode_lines(snat6),
            backends(true),
        )
    }

    /// Starts halb (`halb_bin`) on the balancer and waits until it is attached.
    pub fn halb(&self, halb_bin: &Path, mode: Mode, weights: [u32; 3]) -> Agent {
        self.halb_with(halb_bin, mode, weights, "")
    }

    /// [`Scenario::halb`] with `service_extra` lines in each service.
    pub fn halb_with(
        &self,
        halb_bin: &Path,
        mode: Mode,
        weights: [u32; 3],
        service_extra: &str,
    ) -> Agent {
        let name = crate::netns::unique_name("lb");
        let pin_dir = Path::new(crate::agent::BPFFS).join(&name);
        let mut agent = Agent::start_named(&self.lb, &name, halb_bin, pin_dir, false, |pin| {
            self.config_with(mode, weights, pin, "", service_extra)
        });
        agent.wait_attached();
        agent
    }
}

fn start_web(backend: &Backend, web_bin: &Path) -> ChildGuard {
    web_server(&backend.ns, backend.name, web_bin)
}

/// Starts halb-web as `name` on port 80 in `ns`, and waits until it listens.
pub fn web_server(ns: &NetNs, name: &str, web_bin: &Path) -> ChildGuard {
    let mut command = ns.command(web_bin.to_str().expect("UTF-8 path"));
    // [::] takes IPv4 too (net.ipv6.bindv6only is 0).
    command.args([name, "[::]:80"]);
    let web = ChildGuard::spawn(name, command, false);
    web.lines()
        .wait_for("listening", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{name} did not start"));
    web
}
