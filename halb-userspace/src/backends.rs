//! What decides a backend's state in the datapath: its health (from the
//! checks) and its admin state (drained or enabled by the operator).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use crate::{dataplane::sync::BackendState, health::Health};

/// Operator's choice for a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Enabled,
    /// No new flows; existing flows finish where they are.
    Drained,
}

/// Health and admin state of every backend, by (service, backend).
#[derive(Debug, Default)]
pub struct BackendStates {
    health: BTreeMap<(String, SocketAddr), Health>,
    drained: BTreeSet<(String, SocketAddr)>,
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

    /// The datapath state: down wins (flows move), then drained (flows
    /// stay, no new ones), else up.
    pub fn datapath_state(&self, service: &str, backend: SocketAddr) -> BackendState {
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
