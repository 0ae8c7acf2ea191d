//! Active-active behind a router: the router (BIRD, `merge paths`, the
//! 5-tuple multipath hash) spreads the VIP over every halb node that
//! announces it through its own BIRD; the backends answer clients
//! directly (DSR), their default route via the router.
//!
//! ```text
//!   client .10              router                nodes .2 .3 .4, web1-3 .11-.13
//!   --- 198.18.2.0/24 --- .1 [eth0  eth1] .1 --- 198.18.1.0/24 ---
//!   VIP 198.18.0.100: a route on the router with one next hop per node announcing it
//! ```

use std::{path::Path, time::Duration};

use crate::{
    agent::Agent,
    bird::Bird,
    netns::NetNs,
    process::ChildGuard,
    topo::{HOST_IF, Host, Lan},
    wait,
};

pub const VIP: &str = "198.18.0.100";
pub const CLIENT: &str = "198.18.2.10";
pub const ROUTER: &str = "198.18.1.1";
pub const ROUTER_AS: u32 = 65000;
pub const NODES_AS: u32 = 65001;

/// Node `i`'s address on the node LAN.
pub fn node_addr(i: usize) -> String {
    format!("198.18.1.{}", 2 + i)
}

pub struct Ecmp {
    pub client: Host,
    pub router: NetNs,
    pub router_bird: Bird,
    pub nodes: Vec<Host>,
    pub node_birds: Vec<Bird>,
    // Drop order: processes, then namespaces and LANs.
    _webs: Vec<ChildGuard>,
    backends: Vec<NetNs>,
    _lans: [Lan; 2],
}

impl Ecmp {
    /// The router, `nodes` nodes each with a BIRD (halb not started yet),
    /// and web1-3 serving `web_bin` for DSR, in namespaces of unique names.
    pub fn build(nodes: usize, web_bin: &Path) -> Self {
        Self::build_with(nodes, web_bin, &NetNs::new)
    }

    /// [`Ecmp::build`] with the namespace of each role (`client`, `router`,
    /// `node1`..., `web1`..., `sw-clients`, `sw-servers`) from `namespace`.
    pub fn build_with(nodes: usize, web_bin: &Path, namespace: &dyn Fn(&str) -> NetNs) -> Self {
        let mut clients = Lan::with_switch(namespace("sw-clients"));
        let mut servers = Lan::with_switch(namespace("sw-servers"));
        let client = clients.attach(namespace("client"), &[&format!("{CLIENT}/24")]);
        client
            .ns
            .ip(&["route", "add", "default", "via", "198.18.2.1"]);
        let router = namespace("router");
        clients.plug(&router, "eth0", &["198.18.2.1/24"]);
        servers.plug(&router, "eth1", &[&format!("{ROUTER}/24")]);
        for setting in [
            "net.ipv4.ip_forward=1",
            // Every flow of one client on its own path: spread by 5-tuple.
            "net.ipv4.fib_multipath_hash_policy=1",
        ] {
            router.exec("sysctl", &["-qw", setting]);
        }
        let router_bird = Bird::start(&router, "bird-router", |_| router_config(nodes));
        let nodes: Vec<Host> = (0..nodes)
            .map(|i| {
                servers.attach(
                    namespace(&format!("node{}", i + 1)),
                    &[&format!("{}/24", node_addr(i))],
                )
            })
            .collect();
        let node_birds = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                Bird::start(&node.ns, &format!("bird-node{}", i + 1), |include| {
                    format!(
                        "router id {};\nprotocol device {{ }}\ninclude \"{}\";\n",
                        node_addr(i),
                        include.display()
                    )
                })
            })
            .collect();
        let mut webs = Vec::new();
        let mut backends = Vec::new();
        for i in 0..3 {
            let name = ["web1", "web2", "web3"][i];
            let ns = namespace(name);
            servers.plug(&ns, HOST_IF, &[&format!("198.18.1.{}/24", 11 + i)]);
            ns.ip(&["route", "add", "default", "via", ROUTER]);
            // DSR: the VIP is the backend's own, but never answered for by ARP.
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
            ns.exec("sysctl", &["-qw", "net.ipv4.conf.all.arp_ignore=1"]);
            ns.exec("sysctl", &["-qw", "net.ipv4.conf.all.arp_announce=2"]);
            webs.push(crate::scenario::web_server(&ns, name, web_bin));
            backends.push(ns);
        }
        Self {
            client,
            router,
            router_bird,
            nodes,
            node_birds,
            _webs: webs,
            backends,
            _lans: [clients, servers],
        }
    }

    pub fn backends(&self) -> &[NetNs] {
        &self.backends
    }

    /// halb's config for node `i`: the DSR web service on the VIP, and
    /// `[bgp]` towards the router through the node's BIRD, plus `extra`.
    pub fn halb_config(&self, i: usize, pin_dir: &Path, extra: &str) -> String {
        let bird = &self.node_birds[i];
        let backends: String = (0..3)
            .map(|b| format!("[[service.backend]]\naddress = \"198.18.1.{}\"\n", 11 + b))
            .collect();
        format!(
            "[datapath]\ninterfaces = [\"eth0\"]\npin_dir = \"{pin}\"\n\n\
             [[service]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nmode = \"dsr\"\n\
             [service.check]\ntype = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\nfall = 2\nrise = 2\n\
             {backends}\n\
             [bgp]\ninclude = \"{include}\"\nbird_socket = \"{socket}\"\nlocal_as = {NODES_AS}\n\
             shutdown_grace = \"1s\"\n{extra}\n\
             [[bgp.neighbor]]\naddress = \"{ROUTER}\"\nas = {ROUTER_AS}\n",
            pin = pin_dir.display(),
            include = bird.include.display(),
            socket = bird.socket.display(),
        )
    }

    /// Starts halb on node `i`.
    pub fn start_halb(&self, i: usize, extra: &str) -> Agent {
        self.start_halb_bin(&crate::agent::halb_bin(), i, extra)
    }

    /// Starts the `halb` binary at `halb` on node `i`.
    pub fn start_halb_bin(&self, halb: &Path, i: usize, extra: &str) -> Agent {
        let name = crate::netns::unique_name(&format!("halb-node{}", i + 1));
        let pin_dir = Path::new(crate::agent::BPFFS).join(&name);
        let mut agent = Agent::start_named(&self.nodes[i].ns, &name, halb, pin_dir, false, |pin| {
            self.halb_config(i, pin, extra)
        });
        agent.wait_attached();
        agent
    }

    /// The next hops of the router's route to the VIP (none: no route).
    pub fn next_hops(&self) -> Vec<String> {
        let out = self
            .router
            .ip(&["-4", "route", "show", &format!("{VIP}/32")]);
        out.split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_owned())
            .collect()
    }

    /// Whether the router's route to the VIP goes through exactly the nodes
    /// `want` (by index); Err says which it goes through.
    pub fn routes_through(&self, want: &[usize]) -> Result<(), Vec<String>> {
        let mut want: Vec<String> = want.iter().map(|i| node_addr(*i)).collect();
        want.sort();
        let mut got = self.next_hops();
        got.sort();
        if got == want { Ok(()) } else { Err(got) }
    }

    /// Waits until the router's route to the VIP goes through exactly the
    /// nodes `want` (by index).
    pub fn wait_next_hops(&self, want: &[usize], timeout: Duration) {
        wait::until("the router's next hops for the VIP", timeout, || {
            self.routes_through(want).map_err(|got| {
                format!(
                    "next hops {got:?}, want nodes {want:?}; router BIRD: {}",
                    self.router_bird.birdc("show protocols")
                )
            })
        });
    }

    /// `halb backend VERB` (drain or enable) for every backend of the web
    /// service on `agent`.
    pub fn set_backends(agent: &Agent, verb: &str) {
        for b in 0..3 {
            agent.ctl(&["backend", verb, "web", &format!("198.18.1.{}:80", 11 + b)]);
        }
    }
}

/// The router's BIRD: a session with BFD to every node, routes into the
/// kernel with ECMP, and GRACEFUL_SHUTDOWN honoured (RFC 8326: such a
/// route's preference drops to 0, so the others win while it lasts).
fn router_config(nodes: usize) -> String {
    let mut conf = format!(
        "router id {ROUTER};\n\
         protocol device {{ }}\n\
         protocol kernel {{\n  ipv4 {{ export all; }};\n  merge paths on;\n}}\n\
         protocol bfd {{\n  interface \"*\" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }};\n}}\n\
         filter graceful_shutdown {{\n  if (65535, 0) ~ bgp_community then bgp_local_pref = 0;\n  accept;\n}}\n\
         template bgp nodes {{\n  local as {ROUTER_AS};\n  bfd on;\n  connect delay time 1;\n  connect retry time 5;\n  error wait time 1, 10;\n  error forget time 30;\n  ipv4 {{ import filter graceful_shutdown; export none; }};\n}}\n"
    );
    for i in 0..nodes {
        conf += &format!(
            "protocol bgp node{} from nodes {{ neighbor {} as {NODES_AS}; }}\n",
            i + 1,
            node_addr(i)
        );
    }
    conf
}
