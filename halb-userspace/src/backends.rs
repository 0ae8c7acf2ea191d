//! What decides a backend's state in the datapath: its health (from the
//! checks), whether the node has a route to it, and its admin state
//! (drained or enabled by the operator).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use crate::{dataplane::sync::BackendState, health::Health};

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

/// Health and admin state of every backend, by (service, backend).
#[derive(Debug, Default)]
pub struct BackendStates {
    health: BTreeMap<(String, SocketAddr), Health>,
    drained: BTreeSet<(String, SocketAddr)>,
    /// Backend addresses this node has no route to, with why.
    unroutable: BTreeMap<IpAddr, String>,
    /// Services that had no backend able to take new flows, last we looked.
    all_down: BTreeSet<String>,
}

impl BackendStates {
    pub fn set_health(&mut self, service: &str, backend: SocketAddr, health: Health) {
        self.health.insert((service.to_owned(), backend), health);
    }

    pub fn set_admin(&mut self, service: &str, backend: SocketAddr, admin: Admin) {
        let key = (service.to_owned(), backend);
        match admin {
            Admin::Drained => self.drained.insert(key),
            Admin::Enabled => self.drained.remove(&key),
        };
    }

    pub fn health(&self, service: &str, backend: SocketAddr) -> Health {
        *self
            .health
            .get(&(service.to_owned(), backend))
            .unwrap_or(&Health::Up)
    }

    pub fn admin(&self, service: &str, backend: SocketAddr) -> Admin {
        if self.drained.contains(&(service.to_owned(), backend)) {
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
    pub fn datapath_state(&self, service: &str, backend: SocketAddr) -> BackendState {
        if self.unroutable.contains_key(&backend.ip()) {
            return BackendState::Down;
        }
        match (self.health(service, backend), self.admin(service, backend)) {
            (Health::Down, _) => BackendState::Down,
            (Health::Up, Admin::Drained) => BackendState::Draining,
            (Health::Up, Admin::Enabled) => BackendState::Up,
        }
    }

    /// Records whether `service` (with `backends`) can take new flows;
    /// returns Some(true) when it just lost its last backend, Some(false)
    /// when it just got one back, None when nothing changed. The caller
    /// logs that once, not per packet.
    pub fn note_service(
        &mut self,
        service: &str,
        backends: impl IntoIterator<Item = SocketAddr>,
    ) -> Option<bool> {
        let any_up = backends
            .into_iter()
            .any(|b| self.datapath_state(service, b) == BackendState::Up);
        match (any_up, self.all_down.contains(service)) {
            (false, false) => {
                self.all_down.insert(service.to_owned());
                Some(true)
            }
            (true, true) => {
                self.all_down.remove(service);
                Some(false)
            }
            _ => None,
        }
    }

    /// Forgets routes of addresses no longer configured.
    pub fn retain_addresses(&mut self, keep: &BTreeSet<IpAddr>) {
        self.unroutable.retain(|a, _| keep.contains(a));
    }

    /// Forgets services that are no longer configured.
    pub fn retain_services(&mut self, keep: &BTreeSet<String>) {
        self.health.retain(|(s, _), _| keep.contains(s));
        self.drained.retain(|(s, _)| keep.contains(s));
        self.all_down.retain(|s| keep.contains(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_wins_over_drained_and_drained_over_up() {
        let b: SocketAddr = "198.18.0.11:80".parse().unwrap();
        let mut s = BackendStates::default();
        assert_eq!(s.datapath_state("web", b), BackendState::Up);
        s.set_admin("web", b, Admin::Drained);
        assert_eq!(s.datapath_state("web", b), BackendState::Draining);
        s.set_health("web", b, Health::Down);
        assert_eq!(s.datapath_state("web", b), BackendState::Down);
        s.set_admin("web", b, Admin::Enabled);
        assert_eq!(s.datapath_state("web", b), BackendState::Down);
        s.set_health("web", b, Health::Up);
        assert_eq!(s.datapath_state("web", b), BackendState::Up);
    }

    #[test]
    fn no_route_is_down_whatever_the_health_and_lifts_when_one_appears() {
        let b: SocketAddr = "198.18.0.11:80".parse().unwrap();
        let mut s = BackendStates::default();
        assert!(s.set_unroutable(b.ip(), Some("no route".into())));
        assert!(!s.set_unroutable(b.ip(), Some("no route".into())));
        assert_eq!(s.datapath_state("web", b), BackendState::Down);
        assert_eq!(s.down_reason(b), Some("no route"));
        assert!(s.set_unroutable(b.ip(), None));
        assert_eq!(s.datapath_state("web", b), BackendState::Up);
    }

    #[test]
    fn all_down_is_reported_once_each_way() {
        let b: SocketAddr = "198.18.0.11:80".parse().unwrap();
        let mut s = BackendStates::default();
        assert_eq!(s.note_service("web", [b]), None);
        s.set_health("web", b, Health::Down);
        assert_eq!(s.note_service("web", [b]), Some(true));
        assert_eq!(s.note_service("web", [b]), None);
        s.set_health("web", b, Health::Up);
        assert_eq!(s.note_service("web", [b]), Some(false));
    }
}
