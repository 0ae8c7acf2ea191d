//! How the agent keeps the datapath at what health, routes, admin state
//! and the config say: reloads (all or nothing), health changes, drains,
//! routes that come and go, and one reconcile step that writes every
//! backend whose datapath state is stale.

use std::{collections::BTreeSet, net::SocketAddr};

use super::{Agent, AgentError, backend_addresses, checked};
use crate::{
    backends::Admin,
    config,
    health::{Checks, Health, HealthChange},
    net::neighbours::NeighbourError,
    proxy,
};

impl Agent {
    pub(super) fn set_admin(
        &mut self,
        service: &str,
        backend: SocketAddr,
        admin: Admin,
    ) -> Result<(), String> {
        if self.proxy.owns(service) {
            if !self
                .proxy
                .set_drained(service, backend, admin == Admin::Drained)
            {
                return Err(format!("no backend {backend} in pool {service:?}"));
            }
            self.states.set_admin(service, backend, admin);
            tracing::info!(pool = service, %backend, ?admin, "backend admin state");
            return Ok(());
        }
        let known = self.config.services.iter().any(|s| {
            s.name == service
                && s.backends
                    .iter()
                    .any(|b| SocketAddr::new(b.address, b.port) == backend)
        });
        if !known {
            return Err(format!(
                "no backend {backend} in service {service:?} (a layer-7 pool is named SERVICE/POOL)"
            ));
        }
        self.states.set_admin(service, backend, admin);
        tracing::info!(service, %backend, ?admin, "backend admin state");
        self.push_state(service, backend).map_err(|e| e.to_string())
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
        {
            tracing::warn!(
                "[datapath], [admin] and [[vrrp]] changes take effect on restart; kept as they were"
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
        let names: BTreeSet<String> = new
            .services
            .iter()
            .map(|s| s.name.clone())
            .chain(
                proxy::checked_pools(&new.services)
                    .into_iter()
                    .map(|p| p.name),
            )
            .collect();
        self.states.retain_services(&names);
        self.config.services = new.services;
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
                let addr = SocketAddr::new(b.address, b.port);
                self.proxy.set_health(
                    &pool.name,
                    addr,
                    self.states.health(&pool.name, addr) == Health::Up,
                );
                self.proxy.set_drained(
                    &pool.name,
                    addr,
                    self.states.admin(&pool.name, addr) == Admin::Drained,
                );
            }
        }
        let states = &self.states;
        self.checks = Checks::start(
            &checked(&self.config.services),
            self.health_tx.clone(),
            |s, b| states.health(s, b),
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

    /// Writes every layer-4 backend whose datapath state differs from what
    /// its health, route and admin state say.
    pub(super) fn reconcile_states(&mut self) -> Result<(), AgentError> {
        let stale: Vec<(String, SocketAddr)> = self
            .sync
            .services()
            .filter(|s| s.config.http.is_none())
            .flat_map(|s| {
                s.backends.iter().filter_map(|b| {
                    let addr = SocketAddr::new(b.config.address, b.config.port);
                    (self.states.datapath_state(&s.config.name, addr) != b.state)
                        .then(|| (s.config.name.clone(), addr))
                })
            })
            .collect();
        for (service, backend) in stale {
            self.push_state(&service, backend)?;
        }
        Ok(())
    }

    /// A backend's health changed: update its state in the datapath, which
    /// republishes the service's Maglev ring.
    pub(super) fn apply_health(&mut self, change: HealthChange) -> Result<(), AgentError> {
        let HealthChange {
            service,
            backend,
            health,
            detail,
        } = change;
        self.states.set_health(&service, backend, health);
        match health {
            Health::Down => tracing::warn!(service, %backend, reason = detail, "backend down"),
            Health::Up => tracing::info!(service, %backend, "backend up"),
        }
        if self.proxy.owns(&service) {
            self.proxy
                .set_health(&service, backend, health == Health::Up);
            return Ok(());
        }
        self.push_state(&service, backend)
    }

    /// Writes one backend's combined state into the datapath and logs a
    /// service losing (or regaining) its last usable backend, once.
    pub(super) fn push_state(
        &mut self,
        service: &str,
        backend: SocketAddr,
    ) -> Result<(), AgentError> {
        let state = self.states.datapath_state(service, backend);
        self.sync
            .set_backend_state(&mut self.datapath.maps, service, backend, state)?;
        let Some(config) = self.config.services.iter().find(|s| s.name == service) else {
            return Ok(());
        };
        let backends: Vec<SocketAddr> = config
            .backends
            .iter()
            .map(|b| SocketAddr::new(b.address, b.port))
            .collect();
        match self.states.note_service(service, backends) {
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
        Ok(())
    }
}
