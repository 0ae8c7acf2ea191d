//! A highly available pair on one LAN: a client (a router's stand-in that
//! learns the VIP from gratuitous ARP), two balancer nodes that elect a
//! master by VRRP (halb or keepalived), and three halb-web backends.
//!
//! ```text
//!   client .10   lb1 .2   lb2 .3   web1-3 .11-.13      198.18.0.0/24
//!   ----------------------------------------------     one bridge
//!   VIP 198.18.0.100 (and 2001:db8::100) on whichever node is MASTER
//! ```

use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    agent::{Agent, BPFFS},
    netns::{NetNs, unique_name},
    process::ChildGuard,
    topo::{HOST_IF, Host, Lan},
};

pub const VIP: &str = "198.18.0.100";
pub const VIP6: &str = "2001:db8::100";
pub const NODE_ADDRS: [&str; 2] = ["198.18.0.2", "198.18.0.3"];
const NODE_ADDRS6: [&str; 2] = ["2001:db8::2", "2001:db8::3"];

pub struct HaPair {
    pub client: Host,
    pub nodes: [Host; 2],
    // Drop order: processes, then namespaces.
    webs: Vec<ChildGuard>,
    backends: Vec<NetNs>,
    lan: Lan,
}

impl HaPair {
    /// Builds the LAN; with `web_bin`, web1-3 serve on it.
    pub fn build(web_bin: Option<&Path>) -> Self {
        let mut lan = Lan::new();
        let client = lan.attach(NetNs::new("client"), &["198.18.0.10/24", "2001:db8::10/64"]);
        // Learn (and relearn) the VIP from gratuitous ARP, as routers do.
        client
            .ns
            .exec("sysctl", &["-qw", "net.ipv4.conf.eth0.arp_accept=1"]);
        // And at once: the default locktime ignores an update within 1 s
        // of the last one, which would hide the new master's first burst
        // behind the old master's latest announcement.
        client
            .ns
            .exec("sysctl", &["-qw", "net.ipv4.neigh.eth0.locktime=0"]);
        let nodes = [0, 1].map(|i| {
            lan.attach(
                NetNs::new(&format!("lb{}", i + 1)),
                &[
                    &format!("{}/24", NODE_ADDRS[i]),
                    &format!("{}/64", NODE_ADDRS6[i]),
                ],
            )
        });
        let mut backends = Vec::new();
        let mut webs = Vec::new();
        if let Some(web_bin) = web_bin {
            for i in 0..3 {
                let name = ["web1", "web2", "web3"][i];
                let ns = NetNs::new(name);
                lan.plug(
                    &ns,
                    HOST_IF,
                    &[
                        &format!("198.18.0.{}/24", 11 + i),
                        &format!("2001:db8::{}/64", 11 + i),
                    ],
                );
                webs.push(crate::scenario::web_server(&ns, name, web_bin));
                backends.push(ns);
            }
        }
        Self {
            client,
            nodes,
            webs,
            backends,
            lan,
        }
    }

    /// Waits until both nodes' IPv6 link-local addresses have passed
    /// duplicate address detection: VRRPv3 over IPv6 sends from them, and
    /// a tentative one cannot send.
    pub fn wait_link_local(&self) {
        for node in &self.nodes {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !node
                .ns
                .ip(&["-6", "addr", "show", "dev", HOST_IF, "tentative"])
                .trim()
                .is_empty()
            {
                assert!(Instant::now() < deadline, "link-local still tentative");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The namespaces of web1-3 (empty without `web_bin`).
    pub fn backends(&self) -> &[NetNs] {
        &self.backends
    }

    pub fn switch(&self) -> &NetNs {
        self.lan.switch()
    }

    /// Stops every web server: services lose their last backend.
    pub fn stop_webs(&mut self) {
        self.webs.clear();
    }

    /// halb's config for node `i`: the datapath on eth0, the web services
    /// on the VIPs in full NAT from the node's own address, and `vrrp`.
    pub fn halb_config(&self, i: usize, pin_dir: &Path, vrrp: &str) -> String {
        let backends = |v6: bool| {
            (0..3)
                .map(|b| {
                    let addr = if v6 {
                        format!("2001:db8::{}", 11 + b)
                    } else {
                        format!("198.18.0.{}", 11 + b)
                    };
                    format!("[[service.backend]]\naddress = \"{addr}\"\n")
                })
                .collect::<String>()
        };
        format!(
            "[datapath]\ninterfaces = [\"eth0\"]\npin_dir = \"{}\"\n\n\
             [[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nsnat_address = \"{}\"\n\
             [service.check]\ntype = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\nfall = 2\nrise = 2\n{}\n\
             [[service]]\nname = \"web6\"\nvip = \"{VIP6}\"\nport = 80\nsnat_address = \"{}\"\n{}\n{vrrp}\n",
            pin_dir.display(),
            NODE_ADDRS[i],
            backends(false),
            NODE_ADDRS6[i],
            backends(true),
        )
    }

    /// Starts halb on node `i` with `vrrp` (one or more `[[vrrp]]` tables)
    /// and waits until its datapath is attached.
    pub fn start_halb(&self, i: usize, vrrp: &str) -> Agent {
        self.start_halb_bin(&crate::agent::halb_bin(), i, vrrp)
    }

    /// [`HaPair::start_halb`] with the `halb` binary at `halb`.
    pub fn start_halb_bin(&self, halb: &Path, i: usize, vrrp: &str) -> Agent {
        let name = unique_name(&format!("lb{}", i + 1));
        let pin_dir = Path::new(BPFFS).join(&name);
        let mut agent = Agent::start_named(&self.nodes[i].ns, &name, halb, pin_dir, false, |pin| {
            self.halb_config(i, pin, vrrp)
        });
        agent.wait_attached();
        agent
    }

    /// Whether node `i` holds `addr` on eth0.
    pub fn holds(&self, i: usize, addr: &str) -> bool {
        let shown = self.nodes[i]
            .ns
            .ip(&["-br", "addr", "show", "dev", HOST_IF]);
        shown
            .split_whitespace()
            .any(|a| a.split('/').next() == Some(addr))
    }

    /// Which nodes hold the IPv4 VIP.
    pub fn holders(&self) -> [bool; 2] {
        [self.holds(0, VIP), self.holds(1, VIP)]
    }

    /// The MAC the client has for the VIP, if any.
    pub fn client_vip_mac(&self) -> Option<String> {
        self.client_mac_for(VIP)
    }

    /// The MAC the client's neighbour table has for `addr`, if any.
    pub fn client_mac_for(&self, addr: &str) -> Option<String> {
        let shown = self
            .client
            .ns
            .ip(&["neigh", "show", "to", addr, "dev", HOST_IF]);
        let mut words = shown.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_owned)
    }

    /// Waits until `done` holds, polling every 5 ms; returns how long it took.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            if done(self) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "{what}: not within {timeout:?} (holders {:?}, client has VIP at {:?})",
                self.holders(),
                self.client_vip_mac()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
