//! `[[service]]` and `[[service.backend]]`.

use std::{collections::HashSet, net::IpAddr, ops::Range};

use halb_common::maps::{MAX_BACKENDS, MAX_SERVICES};
use toml::Spanned;

use super::{
    Affinity, AllDown, BackendConfig, Errors, Mode, Protocol, ServiceConfig, check::check, model,
};

pub(super) fn services(
    raw: Vec<Spanned<model::Service>>,
    errors: &mut Errors<'_, '_>,
) -> Vec<ServiceConfig> {
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

    if raw.backends.is_empty() && raw.http.is_none() {
        errors.at(
            raw.name.span(),
            format!(
                "service {:?} has no backend: add at least one [[service.backend]] with an address",
                raw.name.get_ref()
            ),
        );
    }
    let context = BackendContext {
        vip,
        port,
        dsr: raw_mode == RawMode::Dsr,
        check: raw.check.as_ref(),
    };
    let http = raw
        .http
        .as_ref()
        .map(|h| super::http::http(h, &context, errors));
    if let (Some(h), Some(first)) = (&raw.http, raw.backends.first()) {
        let _ = h;
        errors.at(
            first.span(),
            "a service with [service.http] takes its backends from [[service.http.pool]]: move these there",
        );
    }
    let backends = backends(raw.backends, &context, errors);
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
        http,
    })
}

/// What a backend list is checked against.
pub(super) struct BackendContext<'a> {
    pub vip: Option<IpAddr>,
    /// The service's port: a backend's default.
    pub port: u16,
    /// Only DSR backends may name a MAC.
    pub dsr: bool,
    /// The service's check, which each backend may override.
    pub check: Option<&'a Spanned<model::Check>>,
}

/// Validates `[[...backend]]` entries (a service's or a pool's).
pub(super) fn backends(
    list: Vec<Spanned<model::Backend>>,
    context: &BackendContext<'_>,
    errors: &mut Errors<'_, '_>,
) -> Vec<BackendConfig> {
    let mut backends = Vec::new();
    let mut seen = HashSet::new();
    for backend in list {
        let bspan = backend.span();
        let backend = backend.into_inner();
        let address = errors.ip(&backend.address, "backend address");
        if let (Some(a), Some(v)) = (address, context.vip)
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
            None => context.port,
        };
        let weight = backend.weight.as_ref().map_or(1, |w| *w.get_ref());
        let mac = match &backend.mac {
            None => None,
            Some(m) => {
                if !context.dsr {
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
                format!("backend {a} port {bport} is listed twice here: remove one"),
            );
        }
        let check = check(context.check, backend.check.as_ref(), bport, errors);
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
    backends
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
