//! `[sync]`: the peers connection state is synced with, the shared key,
//! and this node's share of the full-NAT source ports.

use std::{net::SocketAddr, time::Duration};

use toml::Spanned;

use super::{Errors, Mode, ServiceConfig, VrrpConfig, check::parse_duration_at};
use crate::config::{Diagnostic, model};

/// The shortest shared key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// Full-NAT ports each node needs at least.
const MIN_PORTS_PER_NODE: u32 = 1024;
const DEFAULT_RESYNC_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, PartialEq, Eq)]
pub struct SyncConfig {
    pub listen: SocketAddr,
    pub peers: Vec<SocketAddr>,
    pub key: Vec<u8>,
    pub resync_timeout: Duration,
    /// This node's place among all nodes (`listen` and `peers`, sorted):
    /// it picks the node's share of the full-NAT ports.
    pub node_index: usize,
    pub nodes: usize,
}

impl std::fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncConfig")
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("key", &"<secret>")
            .field("resync_timeout", &self.resync_timeout)
            .field("node_index", &self.node_index)
            .finish()
    }
}

impl SyncConfig {
    /// This node's share of `ports` ([first, last]): one of `nodes` equal
    /// slices, so that no two nodes ever hand out the same NAT port and a
    /// synced flow's port stays its own on every node.
    pub fn nat_ports(&self, (first, last): (u16, u16)) -> (u16, u16) {
        let span = u32::from(last) - u32::from(first) + 1;
        let slice = span / self.nodes as u32;
        let start = u32::from(first) + slice * self.node_index as u32;
        (start as u16, (start + slice - 1) as u16)
    }
}

pub(super) fn sync(
    raw: Option<Spanned<model::Sync>>,
    nat_ports: (u16, u16),
    errors: &mut Errors<'_, '_>,
) -> Option<SyncConfig> {
    let raw = raw?.into_inner();
    let addr = |value: &Spanned<String>, what: &str, errors: &mut Errors<'_, '_>| match value
        .get_ref()
        .parse::<SocketAddr>()
    {
        Ok(a) if a.port() != 0 && !a.ip().is_unspecified() => Some(a),
        _ => {
            errors.at(
                    value.span(),
                    format!(
                        "{what} {:?} must be an address and UDP port of this node's, e.g. \"198.18.0.2:7900\" or \"[2001:db8::2]:7900\"",
                        value.get_ref()
                    ),
                );
            None
        }
    };
    let listen = addr(&raw.listen, "sync listen", errors);
    let mut peers = Vec::new();
    if raw.peers.get_ref().is_empty() {
        errors.at(
            raw.peers.span(),
            "sync has no peers: list the other nodes' listen addresses, e.g. peers = [\"198.18.0.3:7900\"]",
        );
    }
    for peer in raw.peers.get_ref() {
        let Some(p) = addr(peer, "sync peer", errors) else {
            continue;
        };
        if Some(p) == listen {
            errors.at(
                peer.span(),
                "a sync peer is this node's own listen address: list the other nodes only",
            );
        } else if peers.contains(&p) {
            errors.at(
                peer.span(),
                format!("sync peer {p} is listed twice: remove one"),
            );
        } else if listen.is_some_and(|l| l.is_ipv4() != p.is_ipv4()) {
            errors.at(
                peer.span(),
                format!(
                    "sync peer {p} is not of the listen address's family: use one family for sync"
                ),
            );
        } else {
            peers.push(p);
        }
    }
    let key = match (&raw.key, &raw.key_file) {
        (Some(key), None) => Some((key.get_ref().as_bytes().to_vec(), key.span(), "key")),
        (None, Some(file)) => match std::fs::read(file.get_ref()) {
            Ok(mut bytes) => {
                while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    bytes.pop();
                }
                Some((bytes, file.span(), "key_file"))
            }
            Err(e) => {
                errors.at(
                    file.span(),
                    format!("sync key_file {:?} cannot be read: {e}", file.get_ref()),
                );
                None
            }
        },
        (Some(_), Some(file)) => {
            errors.at(file.span(), "sync has both key and key_file: keep one");
            None
        }
        (None, None) => {
            errors.at(
                raw.listen.span(),
                format!(
                    "sync has no shared key: add key_file = \"/etc/halb/sync.key\" (or key = \"...\"), at least {MIN_KEY_LEN} bytes, the same on every node (e.g. `head -c 32 /dev/urandom | base64`)"
                ),
            );
            None
        }
    };
    let key = key.and_then(|(bytes, span, what)| {
        if bytes.len() < MIN_KEY_LEN {
            errors.at(
                span,
                format!(
                    "sync {what} is {} bytes: use at least {MIN_KEY_LEN} random bytes (e.g. `head -c 32 /dev/urandom | base64`)",
                    bytes.len()
                ),
            );
            return None;
        }
        Some(bytes)
    });
    let resync_timeout = match &raw.resync_timeout {
        None => DEFAULT_RESYNC_TIMEOUT,
        Some(v) => parse_duration_at(v, "resync_timeout", errors).unwrap_or(DEFAULT_RESYNC_TIMEOUT),
    };
    let listen = listen?;
    let mut nodes: Vec<SocketAddr> = peers.iter().copied().chain([listen]).collect();
    nodes.sort();
    let node_index = nodes.iter().position(|n| *n == listen)?;
    let span = u32::from(nat_ports.1) - u32::from(nat_ports.0) + 1;
    if span / (nodes.len() as u32) < MIN_PORTS_PER_NODE {
        errors.at(
            raw.peers.span(),
            format!(
                "{} nodes share {span} full-NAT ports (datapath nat_ports), fewer than {MIN_PORTS_PER_NODE} each: widen nat_ports",
                nodes.len()
            ),
        );
    }
    Some(SyncConfig {
        listen,
        peers,
        key: key?,
        resync_timeout,
        node_index,
        nodes: nodes.len(),
    })
}

/// Warnings for an HA config (VRRP, or sync) whose full-NAT services use an
/// address that stays on this node: their backends answer that address, so
/// their flows die with the node whatever is synced.
pub(super) fn warnings(
    services: &[ServiceConfig],
    vrrp: &[VrrpConfig],
    sync: Option<&SyncConfig>,
    spans: &[(String, std::ops::Range<usize>)],
    errors: &Errors<'_, '_>,
) -> Vec<Diagnostic> {
    if vrrp.is_empty() && sync.is_none() {
        return Vec::new();
    }
    let floating = |addr| {
        vrrp.iter()
            .any(|v| v.virtual_addresses.iter().any(|(a, _)| *a == addr))
    };
    services
        .iter()
        .filter_map(|s| match s.mode {
            Mode::Nat { snat_address } if s.http.is_none() && !floating(snat_address) => {
                let span = spans
                    .iter()
                    .find(|(name, _)| *name == s.name)
                    .map_or(0, |(_, span)| span.start);
                Some(errors.positions.diagnostic(
                    span,
                    format!(
                        "warning: service {:?} uses snat_address {snat_address}, which no VRRP instance moves: its flows cannot survive a failover; add it to a [[vrrp]] instance's virtual_addresses",
                        s.name
                    ),
                ))
            }
            _ => None,
        })
        .collect()
}
