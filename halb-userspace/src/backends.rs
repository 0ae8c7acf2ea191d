//! What decides a backend's state in the datapath: its health (from the
//! checks), whether the node has a route to it, and its admin state
//! (drained or enabled by the operator).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use crate::{config::validate::ServiceConfig, dataplane::sync::BackendState, health::Health};

/// Operator's choice for a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Admin {
    Enabled,
    /// No new flows; existing flows finish where they are.
    Drained,
}

impl Admin {
    /// As `halb status` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Admin::Enabled => "enabled",
            Admin::Drained => "drained",
        }
    }
}

/// What a backend belongs to: a layer-4 service, or one pool of a layer-7
/// service. Operators name a pool `SERVICE/POOL`; that text is parsed once,
/// at the edge (control socket, logs), never matched inside.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Service(String),
    Pool { service: String, pool: String },
}

impl Target {
    /// From the name an operator writes: `SERVICE` or `SERVICE/POOL`.
    pub fn from_name(name: &str) -> Self {
        match name.split_once('/') {
            Some((service, pool)) => Target::Pool {
                service: service.to_owned(),
                pool: pool.to_owned(),
            },
            None => Target::Service(name.to_owned()),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Service(name) => f.write_str(name),
            Target::Pool { service, pool } => write!(f, "{service}/{pool}"),
        }
    }
}

/// One backend of one target: the key of everything the agent knows about
/// a backend, so a backend listed in two services is two backends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendKey {
    pub target: Target,
    pub addr: SocketAddr,
}

impl BackendKey {
    pub fn new(target: &Target, addr: SocketAddr) -> Self {
        Self {
            target: target.clone(),
            addr,
        }
    }

    /// A backend of the layer-4 service `name`.
    pub fn service(name: &str, addr: SocketAddr) -> Self {
        Self {
            target: Target::Service(name.to_owned()),
            addr,
        }
    }
}

/// Health and admin state of every backend, by [`BackendKey`].
#[derive(Debug, Default)]
pub struct BackendStates {
    health: BTreeMap<BackendKey, Health>,
    drained: BTreeSet<BackendKey>,
    /// Backend addresses this node has no route to, with why.
    unroutable: BTreeMap<IpAddr, String>,
    /// Targets that had no backend able to take new flows, last we looked.
    all_down: BTreeSet<Target>,
}

impl BackendStates {
    pub fn set_health(&mut self, key: &BackendKey, health: Health) {
        self.health.insert(key.clone(), health);
    }

    pub fn set_admin(&mut self, key: &BackendKey, admin: Admin) {
        match admin {
            Admin::Drained => self.drained.insert(key.clone()),
            Admin::Enabled => self.drained.remove(key),
        };
    }

    pub fn health(&self, key: &BackendKey) -> Health {
        *self.health.get(key).unwrap_or(&Health::Up)
    }

    pub fn admin(&self, key: &BackendKey) -> Admin {
        if self.drained.contains(key) {
            Admin::Drained
        } else {
            Admin::Enabled
        }
    }

    /// Records that `addr` has no route (`Some(why)`) or has one again.
    /// Returns whether that changed anything.
    pub fn set_unroutable(&mut self, addr: IpAddr, why: Option<String>) -> bool {
        match why {
            Some(why) => self.unroutable.insert(addr, why).is_none(),
            None => self.unroutable.remove(&addr).is_some(),
        }
    }

    /// Backend addresses without a route, to try again.
    pub fn unroutable(&self) -> Vec<IpAddr> {
        self.unroutable.keys().copied().collect()
    }

    /// Why the datapath does not send new flows to `backend`, when it is
    /// for want of a route.
    pub fn down_reason(&self, backend: SocketAddr) -> Option<&str> {
        self.unroutable.get(&backend.ip()).map(String::as_str)
    }

    /// The datapath state: down wins (flows move), then drained (flows
    /// stay, no new ones), else up. No route counts as down.
    pub fn datapath_state(&self, key: &BackendKey) -> BackendState {
        if self.unroutable.contains_key(&key.addr.ip()) {
            return BackendState::Down;
        }
        match (self.health(key), self.admin(key)) {
            (Health::Down, _) => BackendState::Down,
            (Health::Up, Admin::Drained) => BackendState::Draining,
            (Health::Up, Admin::Enabled) => BackendState::Up,
        }
    }

    /// Records whether `target` (with `backends`) can take new flows;
    /// returns Some(true) when it just lost its last backend, Some(false)
    /// when it just got one back, None when nothing changed. The caller
    /// logs that once, not per packet.
    pub fn note_target(
        &mut self,
        target: &Target,
        backends: impl IntoIterator<Item = SocketAddr>,
    ) -> Option<bool> {
        let any_up = backends
            .into_iter()
            .any(|b| self.datapath_state(&BackendKey::new(target, b)) == BackendState::Up);
        match (any_up, self.all_down.contains(target)) {
            (false, false) => {
                self.all_down.insert(target.clone());
                Some(true)
            }
            (true, true) => {
                self.all_down.remove(target);
                Some(false)
            }
            _ => None,
        }
    }

    /// Forgets routes of addresses no longer configured.
    pub fn retain_addresses(&mut self, keep: &BTreeSet<IpAddr>) {
        self.unroutable.retain(|a, _| keep.contains(a));
    }

    /// Forgets targets that are no longer configured.
    pub fn retain_targets(&mut self, keep: &BTreeSet<Target>) {
        self.health.retain(|k, _| keep.contains(&k.target));
        self.drained.retain(|k| keep.contains(&k.target));
        self.all_down.retain(|t| keep.contains(t));
    }
}

/// The desired state of the datapath's backends: for every backend of
/// every layer-4 service in `services`, what its health, route and admin
/// state say it should be. Pure; the agent writes what differs from what
/// the maps hold (and the sync brings services and rings to `services`).
pub fn desired(
    services: &[ServiceConfig],
    states: &BackendStates,
) -> BTreeMap<BackendKey, BackendState> {
    services
        .iter()
        .filter(|s| s.http.is_none())
        .flat_map(|s| {
            s.backends.iter().map(move |b| {
                let key = BackendKey::service(&s.name, SocketAddr::new(b.address, b.port));
                let state = states.datapath_state(&key);
                (key, state)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_wins_over_drained_and_drained_over_up() {
        let b = BackendKey::service("web", "198.18.0.11:80".parse().unwrap());
        let mut s = BackendStates::default();
        assert_eq!(s.datapath_state(&b), BackendState::Up);
        s.set_admin(&b, Admin::Drained);
        assert_eq!(s.datapath_state(&b), BackendState::Draining);
        s.set_health(&b, Health::Down);
        assert_eq!(s.datapath_state(&b), BackendState::Down);
        s.set_admin(&b, Admin::Enabled);
        assert_eq!(s.datapath_state(&b), BackendState::Down);
        s.set_health(&b, Health::Up);
        assert_eq!(s.datapath_state(&b), BackendState::Up);
    }

    #[test]
    fn no_route_is_down_whatever_the_health_and_lifts_when_one_appears() {
        let b = BackendKey::service("web", "198.18.0.11:80".parse().unwrap());
        let mut s = BackendStates::default();
        assert!(s.set_unroutable(b.addr.ip(), Some("no route".into())));
        assert!(!s.set_unroutable(b.addr.ip(), Some("no route".into())));
        assert_eq!(s.datapath_state(&b), BackendState::Down);
        assert_eq!(s.down_reason(b.addr), Some("no route"));
        assert!(s.set_unroutable(b.addr.ip(), None));
        assert_eq!(s.datapath_state(&b), BackendState::Up);
    }

    #[test]
    fn all_down_is_reported_once_each_way() {
        let web = Target::Service("web".into());
        let b: SocketAddr = "198.18.0.11:80".parse().unwrap();
        let mut s = BackendStates::default();
        assert_eq!(s.note_target(&web, [b]), None);
        s.set_health(&BackendKey::new(&web, b), Health::Down);
        assert_eq!(s.note_target(&web, [b]), Some(true));
        assert_eq!(s.note_target(&web, [b]), None);
        s.set_health(&BackendKey::new(&web, b), Health::Up);
        assert_eq!(s.note_target(&web, [b]), Some(false));
    }

    #[test]
    fn the_desired_state_follows_health_route_and_admin_per_service() {
        let text = "[datapath]\ninterfaces = [\"eth0\"]\n\
            [[service]]\nname = \"a\"\nvip = \"198.18.0.100\"\nport = 80\nmode = \"dsr\"\n\
            [[service.backend]]\naddress = \"198.18.0.11\"\n[[service.backend]]\naddress = \"198.18.0.12\"\n\
            [[service]]\nname = \"b\"\nvip = \"198.18.0.100\"\nport = 443\nmode = \"dsr\"\n\
            [[service.backend]]\naddress = \"198.18.0.11\"\nport = 443\n";
        let services = crate::config::from_str(text).expect("valid").services;
        let a11 = BackendKey::service("a", "198.18.0.11:80".parse().unwrap());
        let a12 = BackendKey::service("a", "198.18.0.12:80".parse().unwrap());
        let b11 = BackendKey::service("b", "198.18.0.11:443".parse().unwrap());
        let mut s = BackendStates::default();
        s.set_admin(&a11, Admin::Drained);
        s.set_health(&a12, Health::Down);
        let want = desired(&services, &s);
        assert_eq!(want.len(), 3);
        assert_eq!(want[&a11], BackendState::Draining);
        assert_eq!(want[&a12], BackendState::Down);
        assert_eq!(want[&b11], BackendState::Up, "a's drain is not b's");
        s.set_unroutable(a11.addr.ip(), Some("no route".into()));
        let want = desired(&services, &s);
        assert_eq!(
            (want[&a11], want[&b11]),
            (BackendState::Down, BackendState::Down),
            "a route is the address's, in every service"
        );
    }

    #[test]
    fn a_pool_is_parsed_once_and_a_backend_in_two_targets_is_two_backends() {
        let pool = Target::from_name("www/static");
        assert_eq!(
            pool,
            Target::Pool {
                service: "www".into(),
                pool: "static".into()
            }
        );
        assert_eq!(pool.to_string(), "www/static");
        let addr: SocketAddr = "198.18.0.11:80".parse().unwrap();
        let mut s = BackendStates::default();
        s.set_admin(&BackendKey::new(&pool, addr), Admin::Drained);
        assert_eq!(s.admin(&BackendKey::service("www", addr)), Admin::Enabled);
        assert_eq!(s.admin(&BackendKey::new(&pool, addr)), Admin::Drained);
    }
}
