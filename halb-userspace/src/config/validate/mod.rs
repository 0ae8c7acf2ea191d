//! Checks a parsed [`model::Config`] and turns it into a [`ValidatedConfig`]
//! whose fields are known good and never optional. Every problem is
//! reported, each at the line and column of the value at fault.

use std::{collections::HashSet, net::IpAddr, ops::Range, path::PathBuf, time::Duration};

use halb_common::maps::{
    DEFAULT_NAT_PORT_MAX, DEFAULT_NAT_PORT_MIN, DEFAULT_PIN_DIR, DEFAULT_RING_SIZE,
    DEFAULT_TCP_CLOSING_TIMEOUT_NS, DEFAULT_TCP_TIMEOUT_NS, DEFAULT_UDP_TIMEOUT_NS,
};
use toml::Spanned;

use super::{Diagnostic, Positions, model};
use crate::dataplane::maglev::is_prime;

mod bgp;
mod check;
mod http;
mod service;
mod sync;
#[cfg(test)]
mod tests;
mod vrrp;

pub use bgp::{BgpConfig, DEFAULT_BIRD_SOCKET, DEFAULT_INCLUDE, Neighbor};
pub use check::parse_duration;
pub use http::{
    Balance, Condition, HttpConfig, HttpRule, HttpSettings, HttpTimeouts, PoolConfig, path_regex,
};
use service::services;
pub use sync::{MIN_KEY_LEN, SyncConfig};
pub use vrrp::{Garp, Track, VrrpConfig, VrrpVersion};

/// A config that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedConfig {
    pub datapath: Datapath,
    pub admin: Admin,
    pub services: Vec<ServiceConfig>,
    pub vrrp: Vec<VrrpConfig>,
    pub sync: Option<SyncConfig>,
    pub bgp: Option<BgpConfig>,
    /// What is allowed but likely not meant (each says so); logged at start.
    pub warnings: Vec<super::Diagnostic>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub control_socket: PathBuf,
    pub metrics: Option<std::net::SocketAddr>,
}

/// Where the control socket is unless `[admin] control_socket` says.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/halb/control.sock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datapath {
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub pin_dir: PathBuf,
    pub log_level: DatapathLogLevel,
    pub maglev_table_size: u32,
    /// First and last full-NAT source port.
    pub nat_ports: (u16, u16),
    pub tcp_timeout: Duration,
    pub tcp_closing_timeout: Duration,
    pub udp_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before the kernel allocates an skb: the fast path.
    Native,
    /// After skb allocation; works on any interface, for testing.
    Generic,
}

/// Levels of the XDP program's log lines, as aya-log numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatapathLogLevel {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub mode: Mode,
    pub affinity: Affinity,
    pub when_all_down: AllDown,
    pub backends: Vec<BackendConfig>,
    /// A layer-7 service: rules and pools for the HTTP proxy.
    pub http: Option<HttpConfig>,
}

/// What the datapath does with a service's packets when no backend is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllDown {
    Drop,
    /// TCP: answer with a reset, so clients fail at once instead of timing out.
    Reset,
}

/// A backend's health check, with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP connection opens.
    Tcp,
    /// An HTTP GET answers with the expected status (and body text).
    Http {
        path: String,
        expect_status: u16,
        expect_body: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Full NAT: backends see `snat_address` as the client.
    Nat { snat_address: IpAddr },
    /// Destination-only NAT: backends see the client; they must route
    /// their replies through the balancer.
    NatKeepClient,
    /// Layer-2 direct server return.
    Dsr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    /// Hash the 5-tuple: every connection is scheduled on its own.
    None,
    /// Hash the client address: a client sticks to one backend.
    Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub address: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub mac: Option<[u8; 6]>,
    /// None: never checked, always up.
    pub check: Option<CheckConfig>,
}

/// Linux's IFNAMSIZ less the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;
/// Largest Maglev table accepted (a prime), to bound the rings' memory.
const MAX_TABLE_SIZE: u32 = 1_000_003;

pub fn validate(
    raw: model::Config,
    positions: &Positions<'_>,
) -> Result<ValidatedConfig, Vec<Diagnostic>> {
    let mut errors = Errors {
        positions,
        list: Vec::new(),
    };
    let datapath = datapath(raw.datapath, &mut errors);
    let admin = admin(raw.admin, &mut errors);
    let snat_spans: Vec<(String, Range<usize>)> = raw
        .services
        .iter()
        .filter_map(|s| {
            let s = s.get_ref();
            Some((s.name.get_ref().clone(), s.snat_address.as_ref()?.span()))
        })
        .collect();
    let services = services(raw.services, &mut errors);
    let vrrp = vrrp::instances(raw.vrrp, &services, &mut errors);
    let sync = sync::sync(raw.sync, datapath.nat_ports, &mut errors);
    let bgp = bgp::bgp(raw.bgp, &mut errors);
    let warnings = sync::warnings(&services, &vrrp, sync.as_ref(), &snat_spans, &errors);
    if errors.list.is_empty() {
        Ok(ValidatedConfig {
            datapath,
            admin,
            services,
            vrrp,
            sync,
            bgp,
            warnings,
        })
    } else {
        errors.list.sort_by_key(|d| (d.line, d.column));
        Err(errors.list)
    }
}

struct Errors<'a, 'b> {
    positions: &'a Positions<'b>,
    list: Vec<Diagnostic>,
}

impl Errors<'_, '_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.list
            .push(self.positions.diagnostic(span.start, message.into()));
    }

    /// Parses a word from a fixed set; reports `what` and the choices otherwise.
    fn choice<T: Copy>(
        &mut self,
        value: Option<&Spanned<String>>,
        what: &str,
        choices: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(value) = value else { return default };
        match choices.iter().find(|(name, _)| name == value.get_ref()) {
            Some((_, v)) => *v,
            None => {
                let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
                self.at(
                    value.span(),
                    format!(
                        "{what} {:?} is not known: use {}",
                        value.get_ref(),
                        names.join(" or ")
                    ),
                );
                default
            }
        }
    }

    fn ip(&mut self, value: &Spanned<String>, what: &str) -> Option<IpAddr> {
        match value.get_ref().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.at(
                    value.span(),
                    format!(
                        "{what} {:?} is not an IP address: write it like \"198.18.0.10\" or \"2001:db8::10\"",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }
}

fn admin(raw: model::Admin, errors: &mut Errors<'_, '_>) -> Admin {
    let control_socket = match raw.control_socket {
        None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
        Some(path) => {
            let p = PathBuf::from(path.get_ref());
            if !p.is_absolute() || p.file_name().is_none() {
                errors.at(
                    path.span(),
                    format!(
                        "control_socket {:?} must be an absolute file path, e.g. \"{DEFAULT_CONTROL_SOCKET}\"",
                        path.get_ref()
                    ),
                );
            }
            p
        }
    };
    let metrics = raw.metrics.and_then(|m| match m.get_ref().parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            errors.at(
                m.span(),
                format!(
                    "metrics {:?} is not an address and port: write it like \"127.0.0.1:9723\" or \"[::1]:9723\"",
                    m.get_ref()
                ),
            );
            None
        }
    });
    Admin {
        control_socket,
        metrics,
    }
}

fn datapath(raw: model::Datapath, errors: &mut Errors<'_, '_>) -> Datapath {
    if raw.interfaces.get_ref().is_empty() {
        errors.at(
            raw.interfaces.span(),
            "no interface to attach the datapath to: list at least one, e.g. interfaces = [\"eth0\"]",
        );
    }
    let mut interfaces = Vec::new();
    let mut seen = HashSet::new();
    for name in raw.interfaces.into_inner() {
        let span = name.span();
        let name = name.into_inner();
        if name.is_empty() || name.len() > MAX_IFNAME_LEN || name.contains(['/', ' ', ':']) {
            errors.at(
                span,
                format!(
                    "interface name {name:?} is not valid: use 1 to {MAX_IFNAME_LEN} characters without '/', ':' or spaces, as `ip link` shows it"
                ),
            );
        } else if !seen.insert(name.clone()) {
            errors.at(
                span,
                format!("interface {name:?} is listed twice: remove one"),
            );
        } else {
            interfaces.push(name);
        }
    }

    let xdp_mode = errors.choice(
        raw.xdp_mode.as_ref(),
        "xdp_mode",
        &[("native", XdpMode::Native), ("generic", XdpMode::Generic)],
        XdpMode::Native,
    );

    let pin_dir = match raw.pin_dir {
        None => PathBuf::from(DEFAULT_PIN_DIR),
        Some(dir) => {
            let path = PathBuf::from(dir.get_ref());
            if !path.is_absolute() || path.parent().is_none() {
                errors.at(
                    dir.span(),
                    format!(
                        "pin_dir {:?} must be an absolute folder inside bpffs, e.g. \"{DEFAULT_PIN_DIR}\"",
                        dir.get_ref()
                    ),
                );
            }
            path
        }
    };

    let log_level = errors.choice(
        raw.log_level.as_ref(),
        "log_level",
        &[
            ("off", DatapathLogLevel::Off),
            ("error", DatapathLogLevel::Error),
            ("warn", DatapathLogLevel::Warn),
            ("info", DatapathLogLevel::Info),
            ("debug", DatapathLogLevel::Debug),
            ("trace", DatapathLogLevel::Trace),
        ],
        DatapathLogLevel::Info,
    );

    let maglev_table_size = match raw.maglev_table_size {
        None => DEFAULT_RING_SIZE,
        Some(size) => {
            let n = *size.get_ref();
            if !is_prime(n) || !(7..=MAX_TABLE_SIZE).contains(&n) {
                errors.at(
                    size.span(),
                    format!(
                        "maglev_table_size {n} must be a prime from 7 to {MAX_TABLE_SIZE}, and well above the number of backends (100x keeps shares within 1%): e.g. 65537"
                    ),
                );
            }
            n
        }
    };

    let nat_ports = match raw.nat_ports {
        None => (DEFAULT_NAT_PORT_MIN, DEFAULT_NAT_PORT_MAX),
        Some(ports) => {
            let [first, last] = *ports.get_ref();
            if first < 1024 || first > last {
                errors.at(
                    ports.span(),
                    format!(
                        "nat_ports [{first}, {last}] must be [first, last] with 1024 <= first <= last, outside the kernel's ephemeral range (net.ipv4.ip_local_port_range): e.g. [{DEFAULT_NAT_PORT_MIN}, {DEFAULT_NAT_PORT_MAX}]"
                    ),
                );
            }
            (first, last)
        }
    };

    let mut timeout = |value: Option<Spanned<u64>>, what: &str, default_ns: u64| match value {
        None => Duration::from_nanos(default_ns),
        Some(secs) => {
            if *secs.get_ref() == 0 {
                errors.at(secs.span(), format!("{what} must be at least 1 (seconds)"));
            }
            Duration::from_secs(*secs.get_ref())
        }
    };
    let tcp_timeout = timeout(raw.tcp_timeout, "tcp_timeout", DEFAULT_TCP_TIMEOUT_NS);
    let tcp_closing_timeout = timeout(
        raw.tcp_closing_timeout,
        "tcp_closing_timeout",
        DEFAULT_TCP_CLOSING_TIMEOUT_NS,
    );
    let udp_timeout = timeout(raw.udp_timeout, "udp_timeout", DEFAULT_UDP_TIMEOUT_NS);

    Datapath {
        interfaces,
        xdp_mode,
        pin_dir,
        log_level,
        maglev_table_size,
        nat_ports,
        tcp_timeout,
        tcp_closing_timeout,
        udp_timeout,
    }
}

/// "198.18.0.100/32" (or without a prefix: a host address).
pub(super) fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
        None => max,
    };
    Some((ip, prefix))
}
