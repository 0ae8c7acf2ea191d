//! `[[vrrp]]`: VRRP instances as keepalived's `vrrp_instance`, parsed and
//! checked against RFC 9568 (v3) and RFC 3768 (v2) limits for the
//! high-availability issue to run.

use std::{collections::HashSet, net::IpAddr, time::Duration};

use toml::Spanned;

use super::{Errors, ServiceConfig, check::parse_duration_at, model, parse_cidr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpConfig {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    pub version: VrrpVersion,
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Addresses with their prefix length.
    pub virtual_addresses: Vec<(IpAddr, u8)>,
    pub label: Option<String>,
    pub auth_pass: Option<String>,
    /// v3 over IPv4: checksum without the pseudo-header (as v2 did).
    pub checksum_as_v2: bool,
    pub unicast_peers: Vec<IpAddr>,
    pub garp: Garp,
    pub track_interfaces: Vec<Track>,
    pub track_services: Vec<Track>,
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpVersion {
    V2,
    V3,
}

/// Gratuitous ARP / unsolicited NA on becoming master; keepalived's
/// defaults: 5 at once and 5 more 5 s later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Garp {
    pub count: u32,
    pub repeat_after: Duration,
    pub refresh: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub name: String,
    /// Added to the priority while what is tracked fails (negative lowers).
    pub weight: i32,
}

pub(super) fn instances(
    raw: Vec<Spanned<model::Vrrp>>,
    services: &[ServiceConfig],
    errors: &mut Errors<'_, '_>,
) -> Vec<VrrpConfig> {
    let mut seen_names = HashSet::new();
    let mut seen_ids = HashSet::new();
    let service_names: HashSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let mut out = Vec::new();
    for instance in raw {
        let v = instance.into_inner();
        if !seen_names.insert(v.name.get_ref().clone()) {
            errors.at(
                v.name.span(),
                format!(
                    "VRRP instance {:?} is defined twice: rename one",
                    v.name.get_ref()
                ),
            );
        }
        let vrid = *v.vrid.get_ref();
        if !(1..=255).contains(&vrid) {
            errors.at(v.vrid.span(), format!("vrid {vrid} is outside 1-255"));
        } else if !seen_ids.insert((v.interface.get_ref().clone(), vrid)) {
            errors.at(
                v.vrid.span(),
                format!(
                    "vrid {vrid} is already used on {}: each instance on a link needs its own",
                    v.interface.get_ref()
                ),
            );
        }
        let priority = *v.priority.get_ref();
        if !(1..=254).contains(&priority) {
            errors.at(
                v.priority.span(),
                format!("priority {priority} is outside 1-254 (255 is the address owner's, 0 means leaving)"),
            );
        }
        let version = match v.version.as_ref().map(|s| *s.get_ref()) {
            None | Some(3) => VrrpVersion::V3,
            Some(2) => VrrpVersion::V2,
            Some(other) => {
                let span = v.version.as_ref().map_or(0..0, |s| s.span());
                errors.at(
                    span,
                    format!("version {other} is not a VRRP version: use 2 or 3"),
                );
                VrrpVersion::V3
            }
        };
        let advert_interval = v
            .advert_interval
            .as_ref()
            .map_or(Duration::from_secs(1), |s| {
                let d = parse_duration_at(s, "advert_interval", errors)
                    .unwrap_or(Duration::from_secs(1));
                let ok = match version {
                    // RFC 9568 §5.2.7: 12 bits of centiseconds.
                    VrrpVersion::V3 => {
                        d >= Duration::from_millis(10)
                            && d <= Duration::from_millis(40_950)
                            && d.as_millis().is_multiple_of(10)
                    }
                    // RFC 3768 §5.3.7: 8 bits of whole seconds.
                    VrrpVersion::V2 => d.subsec_nanos() == 0 && (1..=255).contains(&d.as_secs()),
                };
                if !ok {
                    errors.at(
                        s.span(),
                        match version {
                            VrrpVersion::V3 => {
                                "advert_interval in VRRPv3 is 10ms to 40.95s in steps of 10ms"
                            }
                            VrrpVersion::V2 => {
                                "advert_interval in VRRPv2 is 1 to 255 whole seconds"
                            }
                        },
                    );
                }
                d
            });
        let preempt_delay = v
            .preempt_delay
            .as_ref()
            .and_then(|s| parse_duration_at(s, "preempt_delay", errors))
            .unwrap_or_default();
        let mut virtual_addresses = Vec::new();
        if v.virtual_addresses.get_ref().is_empty() {
            errors.at(
                v.virtual_addresses.span(),
                "no virtual address: list at least one, e.g. [\"198.18.0.100/32\"]",
            );
        }
        for a in v.virtual_addresses.get_ref() {
            match parse_cidr(a.get_ref()) {
                Some((ip, prefix)) => {
                    if version == VrrpVersion::V2 && ip.is_ipv6() {
                        errors.at(
                            a.span(),
                            "VRRPv2 carries IPv4 addresses only: use version = 3 for IPv6",
                        );
                    }
                    virtual_addresses.push((ip, prefix));
                }
                None => errors.at(
                    a.span(),
                    format!(
                        "{:?} is not an address with a prefix: write it like \"198.18.0.100/32\"",
                        a.get_ref()
                    ),
                ),
            }
        }
        if virtual_addresses.iter().any(|(a, _)| a.is_ipv4())
            && virtual_addresses.iter().any(|(a, _)| a.is_ipv6())
        {
            errors.at(
                v.virtual_addresses.span(),
                "an instance carries one family (RFC 9568 §7.1): make one instance for IPv4 and one for IPv6",
            );
        }
        if let Some(pass) = &v.auth_pass {
            if version != VrrpVersion::V2 {
                errors.at(pass.span(), "auth_pass is VRRPv2's (keepalived auth_type PASS): VRRPv3 has no authentication; remove it or set version = 2");
            }
            if pass.get_ref().is_empty() || pass.get_ref().len() > 8 {
                errors.at(pass.span(), "auth_pass is 1 to 8 characters");
            }
        }
        if let Some(flag) = &v.checksum_as_v2
            && (version != VrrpVersion::V3 || virtual_addresses.iter().any(|(a, _)| a.is_ipv6()))
        {
            errors.at(
                flag.span(),
                "checksum_as_v2 applies to VRRPv3 over IPv4 only: remove it",
            );
        }
        let mut unicast_peers = Vec::new();
        for p in &v.unicast_peers {
            if let Some(ip) = errors.ip(p, "unicast peer") {
                unicast_peers.push(ip);
            }
        }
        let garp = Garp {
            count: v.garp_count.as_ref().map_or(5, |c| *c.get_ref()),
            repeat_after: v
                .garp_repeat_after
                .as_ref()
                .and_then(|s| parse_duration_at(s, "garp_repeat_after", errors))
                .unwrap_or(Duration::from_secs(5)),
            refresh: v
                .garp_refresh
                .as_ref()
                .and_then(|s| parse_duration_at(s, "garp_refresh", errors))
                // keepalived's garp_master_refresh 0: no refresh.
                .filter(|d| !d.is_zero()),
        };
        let tracks = |list: &[Spanned<model::Track>], kind: &str, errors: &mut Errors<'_, '_>| {
            list.iter()
                .map(|t| {
                    let t = t.get_ref();
                    let weight = *t.weight.get_ref();
                    if !(-254..=254).contains(&weight) {
                        errors.at(
                            t.weight.span(),
                            format!("weight {weight} is outside -254..254"),
                        );
                    }
                    if kind == "service" && !service_names.contains(t.name.get_ref().as_str()) {
                        errors.at(
                            t.name.span(),
                            format!("no service {:?} to track", t.name.get_ref()),
                        );
                    }
                    Track {
                        name: t.name.get_ref().clone(),
                        weight: weight.clamp(-254, 254) as i32,
                    }
                })
                .collect::<Vec<_>>()
        };
        let track_interfaces = tracks(&v.track_interface, "interface", errors);
        let track_services = tracks(&v.track_service, "service", errors);
        out.push(VrrpConfig {
            name: v.name.into_inner(),
            interface: v.interface.into_inner(),
            vrid: vrid.clamp(1, 255) as u8,
            priority: priority.clamp(1, 254) as u8,
            version,
            advert_interval,
            preempt: v.preempt.as_ref().is_none_or(|p| *p.get_ref()),
            preempt_delay,
            virtual_addresses,
            label: v.label.map(|l| l.into_inner()),
            auth_pass: v.auth_pass.map(|p| p.into_inner()),
            checksum_as_v2: v.checksum_as_v2.is_some_and(|f| *f.get_ref()),
            unicast_peers,
            garp,
            track_interfaces,
            track_services,
            notify_master: v.notify_master.map(|n| n.into_inner()),
            notify_backup: v.notify_backup.map(|n| n.into_inner()),
            notify_fault: v.notify_fault.map(|n| n.into_inner()),
        });
    }
    out
}
