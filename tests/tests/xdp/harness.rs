//! BPF_PROG_TEST_RUN fixtures, in the manner of Katran's tester but on
//! their own: every case gets a fresh network namespace and a freshly
//! loaded program, provisions the maps through the agent's own code
//! (config parsing and `Sync`), runs one packet and returns what came out.
//!
//! ```text
//!  one arm:   [fixture ns]  lan0 198.18.0.2/24 2001:db8::2/64 (02:00:00:00:00:02)
//!             neighbours on lan0: client .10/::10, backends .11-.13/::11-::13
//!  two arms:  plus lan1 198.18.1.2/24 2001:db8:1::2/64 (02:00:00:00:01:02),
//!             backends 198.18.1.11-.13 / 2001:db8:1::11-13 on lan1
//! ```

use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions};
use halb::{
    config,
    dataplane::{LoadOptions, LoadedDatapath, sync::Sync},
};
use halb_common::stats::VerdictCounters;
use halb_tests::netns::NetNs;

pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const LB1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
/// MAC of backend `n` (1..=3) on either arm.
pub fn backend_mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, 0x10 + n]
}
/// Small prime ring: fast to write, still a real Maglev table.
pub const RING_SIZE: u32 = 251;

pub struct Iface {
    pub ifindex: u32,
}

pub struct Fixture {
    pub dp: LoadedDatapath,
    pub sync: Sync,
    pub lan0: Iface,
    pub lan1: Option<Iface>,
    ns_name: String,
}

#[derive(Debug)]
pub struct Outcome {
    pub action: u32,
    pub data: Vec<u8>,
}

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

#[derive(Clone, Copy)]
pub enum Arms {
    One,
    Two,
}

/// Runs `body` on a thread inside a fresh fixture namespace.
pub fn with_fixture(arms: Arms, nat_ports: (u16, u16), body: impl FnOnce(&mut Fixture) + Send) {
    let ns = NetNs::new("xdp");
    let ns_ref = &ns;
    ns.run(move || {
        let lan0 = iface(ns_ref, "lan0", LB_MAC, "198.18.0.2/24", "2001:db8::2/64");
        neighbour(ns_ref, "lan0", "198.18.0.10", CLIENT_MAC);
        neighbour(ns_ref, "lan0", "2001:db8::10", CLIENT_MAC);
        let lan1 = match arms {
            Arms::One => {
                backend_neighbours(ns_ref, "lan0", "198.18.0", "2001:db8:");
                None
            }
            Arms::Two => {
                let lan1 = iface(ns_ref, "lan1", LB1_MAC, "198.18.1.2/24", "2001:db8:1::2/64");
                backend_neighbours(ns_ref, "lan1", "198.18.1", "2001:db8:1:");
                Some(lan1)
            }
        };
        let options = LoadOptions {
            pin_dir: None,
            log_level: config::validate::DatapathLogLevel::Off,
            ring_size: RING_SIZE,
            nat_ports,
            shared_nat_ports: nat_ports,
            tcp_timeout: Duration::from_secs(900),
            tcp_closing_timeout: Duration::from_secs(10),
            udp_timeout: Duration::from_secs(300),
            // On, so every fixture runs the program as sync uses it.
            flow_events: true,
        };
        let dp = LoadedDatapath::load(&options).expect("load the XDP program");
        let mut fixture = Fixture {
            dp,
            sync: Sync::new(RING_SIZE),
            lan0,
            lan1,
            ns_name: ns_ref.name().to_owned(),
        };
        body(&mut fixture);
    });
}

fn iface(ns: &NetNs, name: &'static str, mac: [u8; 6], v4: &str, v6: &str) -> Iface {
    let peer = format!("{name}p");
    ns.ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
    ns.ip(&["link", "set", name, "address", &mac_str(mac)]);
    ns.ip(&["addr", "add", v4, "dev", name]);
    ns.ip(&["addr", "add", v6, "dev", name, "nodad"]);
    ns.ip(&["link", "set", name, "up"]);
    ns.ip(&["link", "set", &peer, "up"]);
    // bpf_fib_lookup answers only for interfaces that forward.
    ns.exec(
        "sysctl",
        &["-qw", &format!("net.ipv4.conf.{name}.forwarding=1")],
    );
    ns.exec(
        "sysctl",
        &["-qw", &format!("net.ipv6.conf.{name}.forwarding=1")],
    );
    // This thread is in the fixture namespace, so the lookup is too.
    let c_name = std::ffi::CString::new(name).expect("no NUL");
    // SAFETY: a valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    assert_ne!(ifindex, 0, "no interface {name} in the fixture namespace");
    Iface { ifindex }
}

/// Backends 1-3 (`v4.1N`, `v6:1N`) as permanent neighbours on `dev`.
fn backend_neighbours(ns: &NetNs, dev: &str, v4: &str, v6: &str) {
    for n in 1..=3u8 {
        neighbour(ns, dev, &format!("{v4}.{}", 10 + n), backend_mac(n));
        neighbour(ns, dev, &format!("{v6}:{}", 10 + n), backend_mac(n));
    }
}

fn neighbour(ns: &NetNs, dev: &str, ip: &str, mac: [u8; 6]) {
    ns.ip(&[
        "neigh",
        "replace",
        ip,
        "lladdr",
        &mac_str(mac),
        "dev",
        dev,
        "nud",
        "permanent",
    ]);
}

pub fn mac_str(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Fixture {
    /// Programs the services of `services_toml` (`[[service]]` tables)
    /// exactly as the agent would.
    pub fn apply(&mut self, services_toml: &str) {
        let text = format!("[datapath]\ninterfaces = [\"lan0\"]\n{services_toml}");
        let config = config::from_str(&text).unwrap_or_else(|e| panic!("fixture config: {e:?}"));
        self.sync
            .apply(&mut self.dp.maps, &config.services)
            .expect("program services");
    }

    /// Runs the program once on `input` as received on `ingress`.
    pub fn run(&mut self, ingress: u32, input: &[u8]) -> Outcome {
        let mut out = vec![0u8; input.len() + 256];
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        let mut ctx = Vec::new();
        for word in [0u32, input.len() as u32, 0, ingress, 0, 0] {
            ctx.extend_from_slice(&word.to_ne_bytes());
        }
        let options = TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        };
        let result = self
            .dp
            .program()
            .test_run(options)
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        Outcome {
            action: result.return_value,
            data: out,
        }
    }

    /// `ip ARGS` in the fixture's namespace.
    pub fn ip(&self, args: &[&str]) {
        halb_tests::netns::run_checked(
            std::process::Command::new("ip")
                .arg("-n")
                .arg(&self.ns_name)
                .args(args),
        );
    }

    pub fn verdicts(&self) -> VerdictCounters {
        self.dp.maps.verdict_counters().expect("read verdicts")
    }

    pub fn lan1(&self) -> u32 {
        self.lan1.as_ref().expect("two-arm fixture").ifindex
    }
}

/// Asserts two frames are equal, showing both in hex where they differ.
#[track_caller]
pub fn assert_frame(case: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let mut report = format!(
        "{case}: output frame differs ({} vs {} bytes)\n",
        got.len(),
        want.len()
    );
    for (i, (g, w)) in got.chunks(16).zip(want.chunks(16)).enumerate() {
        let mark = if g != w { "!!" } else { "  " };
        report.push_str(&format!("{mark} {:04x} got  {}\n", i * 16, hex(g)));
        if g != w {
            report.push_str(&format!("{mark} {:04x} want {}\n", i * 16, hex(w)));
        }
    }
    panic!("{report}");
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
