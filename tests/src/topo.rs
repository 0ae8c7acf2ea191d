//! Topologies built from namespaces: a LAN is a bridge in a "switch"
//! namespace of its own; every host is a namespace whose `eth0` is one end
//! of a veth pair, the other end a port of that bridge.
//!
//! ```text
//!   [client]   [lb1]   [lb2]   [web1] [web2] [web3]
//!      eth0     eth0    eth0    eth0   eth0   eth0
//!       |        |       |       |      |      |
//!   ----p0-------p1------p2------p3-----p4-----p5----  br0 in [switch]
//! ```

use crate::{netns::NetNs, xdp_pass::XdpPass};

/// Name of a host's interface on the LAN.
pub const HOST_IF: &str = "eth0";

/// One layer-2 segment.
pub struct Lan {
    switch: NetNs,
    ports: usize,
    pass: XdpPass,
}

impl Lan {
    /// A LAN whose switch namespace has a unique name.
    pub fn new() -> Self {
        Self::with_switch(NetNs::new("sw"))
    }

    /// A LAN whose bridge lives in `switch`.
    pub fn with_switch(switch: NetNs) -> Self {
        switch.ip(&["link", "add", "br0", "type", "bridge"]);
        // VRRP and IPv6 neighbour discovery are multicast: flood it to every
        // port instead of waiting for IGMP/MLD reports no one sends here.
        switch.ip(&[
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        switch.ip(&["link", "set", "br0", "up"]);
        Self {
            switch,
            ports: 0,
            pass: XdpPass::load(),
        }
    }

    pub fn switch(&self) -> &NetNs {
        &self.switch
    }

    /// Plugs `ns` into the LAN as `eth0` with `addrs` (CIDR, IPv4 or IPv6;
    /// IPv6 ones skip duplicate address detection so they are usable at once).
    pub fn attach(&mut self, ns: NetNs, addrs: &[&str]) -> Host {
        let switch_port = self.plug(&ns, HOST_IF, addrs);
        Host { ns, switch_port }
    }

    /// Plugs `ns` into the LAN as `ifname` (a host on several LANs keeps
    /// its namespace elsewhere); returns the bridge port's name.
    pub fn plug(&mut self, ns: &NetNs, ifname: &str, addrs: &[&str]) -> String {
        let port = format!("p{}", self.ports);
        self.ports += 1;
        self.switch.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            ns.name(),
        ]);
        self.switch
            .ip(&["link", "set", &port, "master", "br0", "up"]);
        // Frames an XDP program sends back or redirects into a veth need
        // XDP on the peer (see xdp_pass.rs). GRO stays off, as a switch
        // has none: with it, a backend's burst reaches the balancer as one
        // super-frame, which XDP sees (linearised) and sends on whole, and
        // the next bridge drops it as larger than the MTU.
        self.switch.exec("ethtool", &["-K", &port, "gro", "off"]);
        self.pass.attach(&self.switch, &port);
        ns.ip(&["link", "set", ifname, "up"]);
        // veth leaves checksums to "hardware" (CHECKSUM_PARTIAL); a packet
        // that crosses an XDP program must carry a complete one, as on a
        // real wire, or its incremental updates are meaningless.
        ns.exec("ethtool", &["-K", ifname, "tx", "off"]);
        for addr in addrs {
            if addr.contains(':') {
                ns.ip(&["addr", "add", addr, "dev", ifname, "nodad"]);
            } else {
                ns.ip(&["addr", "add", addr, "dev", ifname]);
            }
        }
        port
    }
}

impl Default for Lan {
    fn default() -> Self {
        Self::new()
    }
}

/// A namespace plugged into a [`Lan`].
pub struct Host {
    pub ns: NetNs,
    /// The bridge port (in the switch namespace) this host's eth0 is paired with.
    pub switch_port: String,
}

impl Host {
    /// The MAC address of this host's eth0.
    pub fn mac(&self) -> String {
        let out = self.ns.ip(&["-br", "link", "show", HOST_IF]);
        out.split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("no MAC in `ip -br link` output {out:?}"))
            .to_owned()
    }
}
