//! Checks a parsed [`model::Config`] and turns it into a [`ValidatedConfig`]
//! whose fields are known good and never optional. Every problem is
//! reported, each at the line and column of the value at fault.

use std::{collections::HashSet, net::IpAddr, ops::Range, path::PathBuf, time::Duration};

use halb_common::maps::{
    DEFAULT_NAT_PORT_MAX, DEFAULT_NAT_PORT_MIN, DEFAULT_PIN_DIR, DEFAULT_RING_SIZE,
    DEFAULT_TCP_CLOSING_TIMEOUT_NS, DEFAULT_TCP_TIMEOUT_NS, DEFAULT_UDP_TIMEOUT_NS, MAX_BACKENDS,
    MAX_SERVICES,
};
use toml::Spanned;

use super::{Diagnostic, Positions, model};
use crate::dataplane::maglev::is_prime;

/// A config that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedConfig {
    pub datapath: Datapath,
    pub admin: Admin,
    pub services: Vec<ServiceConfig>,
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
    let services = services(raw.services, &mut errors);
    if errors.list.is_empty() {
        Ok(ValidatedConfig {
            datapath,
            admin,
            services,
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

fn services(raw: Vec<Spanned<model::Service>>, errors: &mut Errors<'_, '_>) -> Vec<ServiceConfig> {
    if raw.len() > MAX_SERVICES as usize {
        errors.at(
            raw[MAX_SERVICES as usize].span(),
            format!("more than {MAX_SERVICES} services: halb's maps hold {MAX_SERVICES}"),
        );
    }
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    let mut backends_total = 0usize;
    let mut out = Vec::new();
    for service in raw {
        let span = service.span();
        let service = service.into_inner();
        if service.name.get_ref().is_empty() {
            errors.at(
                service.name.span(),
                "service name is empty: name it, e.g. name = \"web\"",
            );
        } else if !names.insert(service.name.get_ref().clone()) {
            errors.at(
                service.name.span(),
                format!(
                    "service name {:?} is used twice: give each service its own",
                    service.name.get_ref()
                ),
            );
        }
        backends_total += service.backends.len();
        if let Some(validated) = one_service(service, span, &mut keys, errors) {
            out.push(validated);
        }
    }
    if backends_total > MAX_BACKENDS as usize {
        errors.at(
            0..0,
            format!("{backends_total} backends in all: halb's maps hold {MAX_BACKENDS}"),
        );
    }
    out
}

fn one_service(
    raw: model::Service,
    span: Range<usize>,
    keys: &mut HashSet<(IpAddr, u16, Protocol)>,
    errors: &mut Errors<'_, '_>,
) -> Option<ServiceConfig> {
    let vip = errors.ip(&raw.vip, "vip");
    let port = *raw.port.get_ref();
    if port == 0 {
        errors.at(
            raw.port.span(),
            "port 0 is not a port: use the port clients connect to, e.g. port = 80",
        );
    }
    let protocol = errors.choice(
        raw.protocol.as_ref(),
        "protocol",
        &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)],
        Protocol::Tcp,
    );
    if let Some(vip) = vip
        && port != 0
        && !keys.insert((vip, port, protocol))
    {
        errors.at(
            raw.vip.span(),
            format!(
                "another service already listens on {vip} port {port} ({protocol:?}): merge them, or change the address, port or protocol"
            ),
        );
    }
    #[derive(Clone, Copy, PartialEq)]
    enum RawMode {
        Nat,
        Dsr,
    }
    let raw_mode = errors.choice(
        raw.mode.as_ref(),
        "mode",
        &[("nat", RawMode::Nat), ("dsr", RawMode::Dsr)],
        RawMode::Nat,
    );
    let keep_client = raw
        .keep_client_address
        .as_ref()
        .is_some_and(|k| *k.get_ref());
    if raw_mode == RawMode::Dsr
        && let Some(k) = &raw.keep_client_address
    {
        errors.at(
            k.span(),
            "keep_client_address is for mode = \"nat\": in dsr mode backends always see the client; remove it",
        );
    }
    let snat = raw
        .snat_address
        .as_ref()
        .and_then(|a| errors.ip(a, "snat_address"));
    let mode = match (raw_mode, keep_client, snat) {
        (RawMode::Dsr, _, _) => {
            if let Some(a) = &raw.snat_address {
                errors.at(a.span(), "snat_address is not used in dsr mode: remove it");
            }
            Mode::Dsr
        }
        (RawMode::Nat, true, _) => {
            if let Some(a) = &raw.snat_address {
                errors.at(
                    a.span(),
                    "snat_address is not used with keep_client_address = true (backends see the client): remove one of them",
                );
            }
            Mode::NatKeepClient
        }
        (RawMode::Nat, false, Some(snat_address)) => {
            if vip.is_some_and(|v| v.is_ipv4() != snat_address.is_ipv4()) {
                errors.at(
                    raw.snat_address.as_ref().map_or(span.clone(), |a| a.span()),
                    "snat_address and vip must be of the same family (both IPv4 or both IPv6)",
                );
            }
            Mode::Nat { snat_address }
        }
        (RawMode::Nat, false, None) => {
            if raw.snat_address.is_none() {
                errors.at(
                    raw.name.span(),
                    "service in nat mode needs snat_address, the balancer's own address towards the backends (e.g. snat_address = \"198.18.0.2\"), or keep_client_address = true",
                );
            }
            Mode::Dsr
        }
    };
    let affinity = errors.choice(
        raw.affinity.as_ref(),
        "affinity",
        &[("none", Affinity::None), ("source", Affinity::Source)],
        Affinity::None,
    );
    let when_all_down = errors.choice(
        raw.when_all_down.as_ref(),
        "when_all_down",
        &[("drop", AllDown::Drop), ("reset", AllDown::Reset)],
        AllDown::Drop,
    );
    if when_all_down == AllDown::Reset
        && protocol == Protocol::Udp
        && let Some(w) = &raw.when_all_down
    {
        errors.at(
            w.span(),
            "when_all_down = \"reset\" is for TCP services: UDP has no reset; use \"drop\"",
        );
    }

    if raw.backends.is_empty() {
        errors.at(
            raw.name.span(),
            format!(
                "service {:?} has no backend: add at least one [[service.backend]] with an address",
                raw.name.get_ref()
            ),
        );
    }
    let mut backends = Vec::new();
    let mut seen = HashSet::new();
    for backend in raw.backends {
        let bspan = backend.span();
        let backend = backend.into_inner();
        let address = errors.ip(&backend.address, "backend address");
        if let (Some(a), Some(v)) = (address, vip)
            && a.is_ipv4() != v.is_ipv4()
        {
            errors.at(
                backend.address.span(),
                format!("backend {a} and vip {v} are of different families: use backends of the VIP's family"),
            );
        }
        let bport = match &backend.port {
            Some(p) if *p.get_ref() == 0 => {
                errors.at(p.span(), "backend port 0 is not a port: use the port the backend listens on, or leave it out to use the service's");
                0
            }
            Some(p) => *p.get_ref(),
            None => port,
        };
        let weight = backend.weight.as_ref().map_or(1, |w| *w.get_ref());
        let mac = match &backend.mac {
            None => None,
            Some(m) => {
                if raw_mode != RawMode::Dsr {
                    errors.at(m.span(), "mac is only used in dsr mode: remove it");
                }
                let parsed = parse_mac(m.get_ref());
                if parsed.is_none() {
                    errors.at(
                        m.span(),
                        format!("mac {:?} is not a MAC address: write six hex bytes, e.g. \"02:00:5e:00:00:0b\"", m.get_ref()),
                    );
                }
                parsed
            }
        };
        if let Some(a) = address
            && !seen.insert((a, bport))
        {
            errors.at(
                bspan.clone(),
                format!("backend {a} port {bport} is listed twice in this service: remove one"),
            );
        }
        let check = check(raw.check.as_ref(), backend.check.as_ref(), bport, errors);
        if let Some(address) = address {
            backends.push(BackendConfig {
                address,
                port: bport,
                weight,
                mac,
                check,
            });
        }
    }
    if !backends.is_empty() && backends.iter().all(|b| b.weight == 0) {
        errors.at(
            raw.name.span(),
            format!(
                "every backend of service {:?} has weight 0, so it could take no flow: give at least one a weight of 1 or more",
                raw.name.get_ref()
            ),
        );
    }
    Some(ServiceConfig {
        name: raw.name.into_inner(),
        vip: vip?,
        port,
        protocol,
        mode,
        affinity,
        when_all_down,
        backends,
    })
}

/// haproxy's defaults: `inter 2s`, `rise 2`, `fall 3`; a check may take 1 s.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
const CHECK_RISE: u32 = 2;
const CHECK_FALL: u32 = 3;

/// The check of one backend: the service's, with the backend's overrides.
fn check(
    service: Option<&Spanned<model::Check>>,
    backend: Option<&Spanned<model::Check>>,
    backend_port: u16,
    errors: &mut Errors<'_, '_>,
) -> Option<CheckConfig> {
    if service.is_none() && backend.is_none() {
        return None;
    }
    let empty = model::Check::default();
    let s = service.map_or(&empty, |c| c.get_ref());
    let b = backend.map_or(&empty, |c| c.get_ref());
    // The backend's value where it has one, else the service's.
    macro_rules! pick {
        ($field:ident) => {
            b.$field.as_ref().or(s.$field.as_ref())
        };
    }
    let Some(kind_word) = pick!(kind) else {
        let span = backend.or(service).map_or(0..0, |c| c.span());
        errors.at(
            span,
            "check needs a type: type = \"tcp\" or type = \"http\"",
        );
        return None;
    };
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Tcp,
        Http,
    }
    let kind = errors.choice(
        Some(kind_word),
        "check type",
        &[("tcp", Kind::Tcp), ("http", Kind::Http)],
        Kind::Tcp,
    );
    let mut duration = |value: Option<&Spanned<String>>, what: &str, default: Duration| match value
    {
        None => default,
        Some(v) => parse_duration(v.get_ref()).unwrap_or_else(|| {
            errors.at(
                v.span(),
                format!(
                    "{what} {:?} is not a duration: write it like \"2s\" or \"500ms\"",
                    v.get_ref()
                ),
            );
            default
        }),
    };
    let interval = duration(pick!(interval), "interval", CHECK_INTERVAL);
    let timeout = duration(pick!(timeout), "timeout", CHECK_TIMEOUT);
    if interval.is_zero() || timeout.is_zero() || timeout > interval {
        let span = pick!(timeout)
            .or(pick!(interval))
            .map_or(0..0, |v| v.span());
        errors.at(
            span,
            format!("check timeout ({timeout:?}) must be above zero and at most the interval ({interval:?})"),
        );
    }
    let mut count = |value: Option<&Spanned<u32>>, what: &str, default: u32| match value {
        None => default,
        Some(v) if *v.get_ref() == 0 => {
            errors.at(
                v.span(),
                format!("{what} must be at least 1 (consecutive checks)"),
            );
            default
        }
        Some(v) => *v.get_ref(),
    };
    let rise = count(pick!(rise), "rise", CHECK_RISE);
    let fall = count(pick!(fall), "fall", CHECK_FALL);
    let port = match pick!(port) {
        Some(p) if *p.get_ref() == 0 => {
            errors.at(
                p.span(),
                "check port 0 is not a port: leave it out to check the backend's port",
            );
            backend_port
        }
        Some(p) => *p.get_ref(),
        None => backend_port,
    };
    let kind = match kind {
        Kind::Tcp => {
            for (field, what) in [(pick!(path), "path"), (pick!(expect_body), "expect_body")] {
                if let Some(v) = field {
                    errors.at(v.span(), format!("{what} is for type = \"http\" checks: remove it, or make the check http"));
                }
            }
            if let Some(v) = pick!(expect_status) {
                errors.at(v.span(), "expect_status is for type = \"http\" checks: remove it, or make the check http");
            }
            CheckKind::Tcp
        }
        Kind::Http => {
            let path = pick!(path).map_or("/".to_owned(), |p| p.get_ref().clone());
            if !path.starts_with('/')
                && let Some(p) = pick!(path)
            {
                errors.at(
                    p.span(),
                    format!("path {path:?} must start with '/', e.g. \"/health\""),
                );
            }
            let expect_status = pick!(expect_status).map_or(200, |s| *s.get_ref());
            if !(100..=599).contains(&expect_status)
                && let Some(s) = pick!(expect_status)
            {
                errors.at(
                    s.span(),
                    format!("expect_status {expect_status} is not an HTTP status (100-599)"),
                );
            }
            CheckKind::Http {
                path,
                expect_status,
                expect_body: pick!(expect_body).map(|b| b.get_ref().clone()),
            }
        }
    };
    Some(CheckConfig {
        kind,
        interval,
        timeout,
        rise,
        fall,
        port,
    })
}

/// "500ms", "2s", "1m", "1.5s" to a duration.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// "aa:bb:cc:dd:ee:ff" (or with '-') to bytes.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_str;

    #[test]
    fn minimal_config_gets_defaults() {
        let config = from_str("[datapath]\ninterfaces = [\"eth0\"]\n").expect("valid");
        assert_eq!(
            config.datapath,
            Datapath {
                interfaces: vec!["eth0".into()],
                xdp_mode: XdpMode::Native,
                pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
                log_level: DatapathLogLevel::Info,
                maglev_table_size: DEFAULT_RING_SIZE,
                nat_ports: (DEFAULT_NAT_PORT_MIN, DEFAULT_NAT_PORT_MAX),
                tcp_timeout: Duration::from_secs(900),
                tcp_closing_timeout: Duration::from_secs(10),
                udp_timeout: Duration::from_secs(300),
            }
        );
        assert!(config.services.is_empty());
    }

    /// Each broken config, the position of its first error and a phrase of it.
    const BROKEN: &[(&str, &str, (usize, usize), &str)] = &[
        (
            "unknown key",
            "[datapath]\ninterfaces = [\"eth0\"]\nxdp_mod = \"native\"\n",
            (3, 1),
            "unknown field `xdp_mod`",
        ),
        (
            "missing table",
            "# nothing here\n",
            (1, 1),
            "missing field `datapath`",
        ),
        (
            "interfaces missing",
            "[datapath]\nxdp_mode = \"native\"\n",
            (1, 1),
            "missing field `interfaces`",
        ),
        (
            "no interface",
            "[datapath]\ninterfaces = []\n",
            (2, 14),
            "list at least one",
        ),
        (
            "duplicate interface",
            "[datapath]\ninterfaces = [\"eth0\", \"eth0\"]\n",
            (2, 23),
            "listed twice",
        ),
        (
            "interface name too long",
            "[datapath]\ninterfaces = [\"a-very-long-interface\"]\n",
            (2, 15),
            "is not valid",
        ),
        (
            "bad xdp mode",
            "[datapath]\ninterfaces = [\"eth0\"]\nxdp_mode = \"fast\"\n",
            (3, 12),
            "use \"native\" or \"generic\"",
        ),
        (
            "relative pin dir",
            "[datapath]\ninterfaces = [\"eth0\"]\npin_dir = \"halb\"\n",
            (3, 11),
            "absolute folder",
        ),
        (
            "bad log level",
            "[datapath]\ninterfaces = [\"eth0\"]\nlog_level = \"loud\"\n",
            (3, 13),
            "is not known",
        ),
        (
            "wrong type",
            "[datapath]\ninterfaces = \"eth0\"\n",
            (2, 14),
            "invalid type",
        ),
        (
            "toml syntax",
            "[datapath\ninterfaces = [\"eth0\"]\n",
            (1, 10),
            "",
        ),
        (
            "bad VIP address",
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.300\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
            (5, 7),
            "is not an IP address",
        ),
        (
            "duplicate service",
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"a\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"198.18.0.11\"\n[[service]]\nname = \"b\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
            (12, 7),
            "another service already listens on 198.18.0.100 port 80",
        ),
        (
            "all weights zero",
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"198.18.0.11\"\nweight = 0\n",
            (4, 8),
            "has weight 0",
        ),
        (
            "backend port 0",
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"198.18.0.11\"\nport = 0\n",
            (10, 8),
            "backend port 0 is not a port",
        ),
        (
            "VIP family differs from backend family",
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"2001:db8::11\"\n",
            (9, 11),
            "different families",
        ),
        (
            "full NAT without snat_address",
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
            (4, 8),
            "needs snat_address",
        ),
        (
            "no backend",
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n",
            (4, 8),
            "has no backend",
        ),
        (
            "MAC outside dsr mode",
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nkeep_client_address = true\n[[service.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n",
            (10, 7),
            "mac is only used in dsr mode",
        ),
        (
            "unknown check type",
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nmode = \"dsr\"\n[service.check]\ntype = \"icmp\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
            (9, 8),
            "check type \"icmp\" is not known",
        ),
        (
            "check timeout beyond the interval",
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nmode = \"dsr\"\n[service.check]\ntype = \"tcp\"\ninterval = \"1s\"\ntimeout = \"2s\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
            (11, 11),
            "at most the interval",
        ),
        (
            "bad duration",
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nmode = \"dsr\"\n[service.check]\ntype = \"tcp\"\ninterval = \"soon\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
            (10, 12),
            "is not a duration",
        ),
        (
            "reset policy on UDP",
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"dns\"\nvip = \"198.18.0.100\"\nport = 53\nprotocol = \"udp\"\nmode = \"dsr\"\nwhen_all_down = \"reset\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
            (9, 17),
            "UDP has no reset",
        ),
        (
            "maglev table size not prime",
            "[datapath]\ninterfaces = [\"eth0\"]\nmaglev_table_size = 65536\n",
            (3, 21),
            "must be a prime",
        ),
        (
            "NAT ports reversed",
            "[datapath]\ninterfaces = [\"eth0\"]\nnat_ports = [30000, 20000]\n",
            (3, 13),
            "1024 <= first <= last",
        ),
        (
            "relative control socket",
            "[datapath]\ninterfaces = [\"eth0\"]\n[admin]\ncontrol_socket = \"halb.sock\"\n",
            (4, 18),
            "absolute file path",
        ),
        (
            "service name used twice",
            "[datapath]\ninterfaces = [\"eth0\"]\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\nmode = \"dsr\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n[[service]]\nname = \"web\"\nvip = \"198.18.0.101\"\nport = 80\nmode = \"dsr\"\n[[service.backend]]\naddress = \"198.18.0.11\"\n",
            (11, 8),
            "is used twice",
        ),
    ];

    #[test]
    fn broken_configs_name_line_column_and_fix() {
        for (name, text, (line, column), phrase) in BROKEN {
            let errors = from_str(text).expect_err(name);
            let first = &errors[0];
            assert_eq!(
                (first.line, first.column),
                (*line, *column),
                "{name}: {first:?}"
            );
            assert!(first.message.contains(phrase), "{name}: {first:?}");
        }
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let text = "[datapath]\ninterfaces = [\"\"]\nxdp_mode = \"x\"\nlog_level = \"y\"\n";
        assert_eq!(from_str(text).expect_err("three errors").len(), 3);
    }
}
