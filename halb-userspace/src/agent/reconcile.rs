//! How the agent keeps the datapath at what health, routes, admin state
//! and the config say: reloads (all or nothing), health changes, drains,
//! routes that come and go, and one reconcile step that writes every
//! backend whose datapath state is stale.

use std::{collections::BTreeSet, net::SocketAddr};

use super::{Agent, AgentError, backend_addresses, checked};
use crate::{
    backends::{Admin, BackendKey, Target, desired},
    config,
    health::{Checks, Health, HealthChange},
    net::neighbours::NeighbourError,
    proxy,
};

impl Agent {
    /// An operator drains or enables `key`.
    pub(super) fn set_admin(&mut self, key: &BackendKey, admin: Admin) -> Result<(), String> {
        let BackendKey { target, addr } = key;
        if self.proxy.owns(target) {
            if !self
                .proxy
                .set_drained(target, *addr, admin == Admin::Drained)
            {
                return Err(format!("no backend {addr} in pool {target}"));
            }
            self.states.set_admin(key, admin);
            tracing::info!(pool = %target, backend = %addr, ?admin, "backend admin state");
            return Ok(());
        }
        let known = match target {
            Target::Service(name) => self.config.services.iter().any(|s| {
                &s.name == name
                    && s.backends
                        .iter()
                        .any(|b| SocketAddr::new(b.address, b.port) == *addr)
            }),
            Target::Pool { .. } => false,
        };
        if !known {
            return Err(format!(
                "no backend {addr} in service {target} (a layer-7 pool is named SERVICE/POOL)"
            ));
        }
        self.states.set_admin(key, admin);
        tracing::info!(service = %target, backend = %addr, ?admin, "backend admin state");
        self.push_state(key).map_err(|e| e.to_string())
    }

    /// Re-reads the config file; applies what changed (services, backends,
    /// weights, checks) and keeps everything else, flows included. A reload
    /// is all or nothing: each consumer first prepares (config, datapath
    /// ids and writes, proxy listeners), and only when all could does any
    /// of them change. A config with errors changes nothing.
    pub(super) async fn reload(&mut self) -> Result<String, String> {
        let new = config::load(&self.config_path).map_err(|e| e.to_string())?;
        if new.datapath != self.config.datapath
            || new.admin != self.config.admin
            || new.vrrp != self.config.vrrp
            || new.sync != self.config.sync
            || new.bgp != self.config.bgp
        {
            tracing::warn!(
                "[datapath], [admin], [[vrrp]], [sync] and [bgp] changes take effect on restart; kept as they were"
            );
        }
        let datapath = self
            .sync
            .prepare(&self.datapath.maps, &new.services)
            .map_err(|e| format!("cannot program the services into the datapath: {e}"))?;
        let listeners = self
            .proxy
            .prepare(&new.services)
            .map_err(|e| e.to_string())?;
        // Everything prepared: from here on the reload goes through.
        self.sync
            .commit(&mut self.datapath.maps, datapath)
            .map_err(|e| e.to_string())?;
        let targets: BTreeSet<Target> = checked(&new.services)
            .into_iter()
            .map(|c| c.target)
            .collect();
        self.states.retain_targets(&targets);
        self.config.services = new.services;
        if let Some(sync) = &self.conn_sync {
            sync.set_directory(super::directory(&self.config, &self.sync));
        }
        let addresses: BTreeSet<std::net::IpAddr> = backend_addresses(&self.config.services)
            .into_iter()
            .collect();
        self.states.retain_addresses(&addresses);
        let was_unroutable = self.states.unroutable();
        let unresolved = self.neighbours.keep_resolved(addresses).await;
        self.note_routes(unresolved, &was_unroutable);
        // Backends that stay keep their health, drain and route; new ones
        // get theirs.
        self.reconcile_states().map_err(|e| e.to_string())?;
        self.proxy.apply(listeners, &self.config.services);
        // Pools are new objects: give them the health and drains known.
        for pool in proxy::checked_pools(&self.config.services) {
            for b in &pool.backends {
                let key = BackendKey::new(&pool.target, SocketAddr::new(b.address, b.port));
                self.proxy.set_health(
                    &pool.target,
                    key.addr,
                    self.states.health(&key) == Health::Up,
                );
                self.proxy.set_drained(
                    &pool.target,
                    key.addr,
                    self.states.admin(&key) == Admin::Drained,
                );
            }
        }
        let states = &self.states;
        self.checks = Checks::start(
            &checked(&self.config.services),
            self.health_tx.clone(),
            |key| states.health(key),
        );
        let message = format!(
            "reloaded {}: {} services, {} backends",
            self.config_path.display(),
            self.config.services.len(),
            self.config
                .services
                .iter()
                .map(|s| s.backends.len())
                .sum::<usize>()
        );
        self.announce();
        tracing::info!("{message}");
        Ok(message)
    }

    /// Records which backends have no route: `unresolved` now, out of
    /// `retried` (those that had none before and were tried again).
    pub(super) fn note_routes(
        &mut self,
        unresolved: Vec<(std::net::IpAddr, NeighbourError)>,
        retried: &[std::net::IpAddr],
    ) {
        let still: BTreeSet<std::net::IpAddr> = unresolved.iter().map(|(a, _)| *a).collect();
        for addr in retried.iter().filter(|a| !still.contains(a)) {
            if self.states.set_unroutable(*addr, None) {
                tracing::info!(backend = %addr, "backend has a route again");
            }
        }
        for (addr, error) in unresolved {
            let why = error.to_string();
            if self.states.set_unroutable(addr, Some(why.clone())) {
                tracing::warn!(backend = %addr, reason = why, "backend marked down until a route to it appears");
            }
        }
    }

    /// Tries the backends without a route again.
    pub(super) async fn retry_routes(&mut self) -> Result<(), AgentError> {
        let retried = self.states.unroutable();
        let unresolved = self.neighbours.keep_resolved(retried.clone()).await;
        self.note_routes(unresolved, &retried);
        self.reconcile_states()
    }

    /// Writes every layer-4 backend whose datapath state differs from the
    /// desired one (its health, route and admin state).
    pub(super) fn reconcile_states(&mut self) -> Result<(), AgentError> {
        let want = desired(&self.config.services, &self.states);
        let stale: Vec<BackendKey> = self
            .sync
            .services()
            .flat_map(|s| {
                s.backends.iter().filter_map(|b| {
                    let key = BackendKey::service(
                        &s.config.name,
                        SocketAddr::new(b.config.address, b.config.port),
                    );
                    want.get(&key).is_some_and(|w| *w != b.state).then_some(key)
                })
            })
            .collect();
        for key in stale {
            self.push_state(&key)?;
        }
        Ok(())
    }

    /// A backend's health changed: update its state in the datapath, which
    /// republishes the service's Maglev ring.
    pub(super) fn apply_health(&mut self, change: HealthChange) -> Result<(), AgentError> {
        let HealthChange {
            backend: key,
            health,
            detail,
        } = change;
        self.states.set_health(&key, health);
        let (service, backend) = (&key.target, key.addr);
        match health {
            Health::Down => {
                tracing::warn!(service = %service, %backend, reason = detail, "backend down")
            }
            Health::Up => tracing::info!(service = %service, %backend, "backend up"),
        }
        if self.proxy.owns(service) {
            self.proxy
                .set_health(service, backend, health == Health::Up);
            return Ok(());
        }
        self.push_state(&key)
    }

    /// Writes one backend's combined state into the datapath and logs a
    /// service losing (or regaining) its last usable backend, once.
    pub(super) fn push_state(&mut self, key: &BackendKey) -> Result<(), AgentError> {
        let Target::Service(service) = &key.target else {
            // A layer-7 pool's backends are the proxy's, not the datapath's.
            return Ok(());
        };
        let service = service.as_str();
        let state = self.states.datapath_state(key);
        self.sync
            .set_backend_state(&mut self.datapath.maps, service, key.addr, state)?;
        let Some(config) = self.config.services.iter().find(|s| s.name == service) else {
            return Ok(());
        };
        let backends: Vec<SocketAddr> = config
            .backends
            .iter()
            .map(|b| SocketAddr::new(b.address, b.port))
            .collect();
        match self.states.note_target(&key.target, backends) {
            Some(true) => {
                tracing::error!(
                    service,
                    policy = ?config.when_all_down,
                    "no backend up: new connections are refused until one comes back"
                );
                self.routers.set_service_down(service, true);
            }
            Some(false) => {
                tracing::info!(service, "a backend is up again");
                self.routers.set_service_down(service, false);
            }
            None => {}
        }
        self.announce();
        Ok(())
    }
}
