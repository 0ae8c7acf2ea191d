//! `[bgp]`: the VIPs announced through the local BIRD 2, the routers it
//! peers with, BFD, and the graceful-shutdown lead time.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use toml::Spanned;

use super::{Errors, check::parse_duration_at};
use crate::config::model;

pub const DEFAULT_INCLUDE: &str = "/etc/bird/halb.conf";
pub const DEFAULT_BIRD_SOCKET: &str = "/run/bird/bird.ctl";
const DEFAULT_BFD_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_BFD_MULTIPLIER: u8 = 3;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    /// The file halb writes and bird.conf includes.
    pub include: PathBuf,
    pub bird_socket: PathBuf,
    /// Set whenever `neighbors` is not empty.
    pub local_as: Option<u32>,
    pub neighbors: Vec<Neighbor>,
    pub bfd_interval: Duration,
    pub bfd_multiplier: u8,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    pub address: IpAddr,
    pub remote_as: u32,
    pub bfd: bool,
}

pub(super) fn bgp(
    raw: Option<Spanned<model::Bgp>>,
    errors: &mut Errors<'_, '_>,
) -> Option<BgpConfig> {
    let raw = raw?;
    let table_span = raw.span();
    let raw = raw.into_inner();
    let path = |value: &Option<Spanned<String>>,
                default: &str,
                what: &str,
                errors: &mut Errors<'_, '_>| {
        let Some(value) = value else {
            return PathBuf::from(default);
        };
        let path = PathBuf::from(value.get_ref());
        if !path.is_absolute() {
            errors.at(
                value.span(),
                format!(
                    "bgp {what} {:?} must be an absolute path, e.g. \"{default}\"",
                    value.get_ref()
                ),
            );
        }
        path
    };
    let include = path(&raw.include, DEFAULT_INCLUDE, "include", errors);
    let bird_socket = path(&raw.bird_socket, DEFAULT_BIRD_SOCKET, "bird_socket", errors);
    let as_number =
        |value: &Spanned<i64>, what: &str, errors: &mut Errors<'_, '_>| match u32::try_from(
            *value.get_ref(),
        ) {
            Ok(n) if n != 0 => Some(n),
            _ => {
                errors.at(
                    value.span(),
                    format!(
                        "{what} {} must be an AS number from 1 to 4294967295, e.g. 65001",
                        value.get_ref()
                    ),
                );
                None
            }
        };
    let local_as = raw
        .local_as
        .as_ref()
        .and_then(|v| as_number(v, "bgp local_as", errors));
    let mut neighbors: Vec<Neighbor> = Vec::new();
    for n in &raw.neighbors {
        let span = n.span();
        let n = n.get_ref();
        let address = match n.address.get_ref().parse::<IpAddr>() {
            Ok(a) if !a.is_unspecified() => Some(a),
            _ => {
                errors.at(
                    n.address.span(),
                    format!("bgp neighbor address {:?} must be the router's address, e.g. \"198.18.1.1\"", n.address.get_ref()),
                );
                None
            }
        };
        let remote_as = as_number(&n.remote_as, "bgp neighbor as", errors);
        let (Some(address), Some(remote_as)) = (address, remote_as) else {
            continue;
        };
        if neighbors.iter().any(|o| o.address == address) {
            errors.at(
                span,
                format!("bgp neighbor {address} is listed twice: remove one"),
            );
            continue;
        }
        neighbors.push(Neighbor {
            address,
            remote_as,
            bfd: n.bfd.unwrap_or(true),
        });
    }
    if !raw.neighbors.is_empty() && raw.local_as.is_none() {
        errors.at(
            table_span.clone(),
            "bgp has neighbors but no local_as: add this node's AS number, e.g. local_as = 65001",
        );
    }
    let bfd_interval = match &raw.bfd_interval {
        None => DEFAULT_BFD_INTERVAL,
        Some(v) => match parse_duration_at(v, "bfd_interval", errors) {
            Some(d) if (Duration::from_millis(10)..=Duration::from_secs(10)).contains(&d) => d,
            Some(_) => {
                errors.at(
                    v.span(),
                    "bgp bfd_interval must be from 10ms to 10s, e.g. \"100ms\"",
                );
                DEFAULT_BFD_INTERVAL
            }
            None => DEFAULT_BFD_INTERVAL,
        },
    };
    let bfd_multiplier = match &raw.bfd_multiplier {
        None => DEFAULT_BFD_MULTIPLIER,
        Some(v) => match u8::try_from(*v.get_ref()) {
            Ok(m) if m != 0 => m,
            _ => {
                errors.at(
                    v.span(),
                    format!(
                        "bgp bfd_multiplier {} must be from 1 to 255, e.g. 3",
                        v.get_ref()
                    ),
                );
                DEFAULT_BFD_MULTIPLIER
            }
        },
    };
    let shutdown_grace = match &raw.shutdown_grace {
        None => DEFAULT_SHUTDOWN_GRACE,
        Some(v) => parse_duration_at(v, "shutdown_grace", errors).unwrap_or(DEFAULT_SHUTDOWN_GRACE),
    };
    // Sessions need this node's AS (reported above when missing or wrong).
    if !neighbors.is_empty() && local_as.is_none() {
        return None;
    }
    Some(BgpConfig {
        include,
        bird_socket,
        local_as,
        neighbors,
        bfd_interval,
        bfd_multiplier,
        shutdown_grace,
    })
}
