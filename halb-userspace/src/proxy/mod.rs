//! The layer-7 fallback path: services with `[service.http]` are passed
//! to the kernel by the XDP program and served here by an HTTP reverse
//! proxy (tokio + hyper) with haproxy's behaviour: rules choosing pools,
//! roundrobin or leastconn, X-Forwarded-For, retries with redispatch,
//! timeouts, maxconn with a queue, httplog lines, and draining on reload
//! and shutdown.
//!
//! Pool backends are health-checked by the agent's usual checks, under the
//! name `service/pool`.

pub mod forward;
pub mod listen;
pub mod log;
pub mod pool;
pub mod route;
pub mod upstream;

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use crate::{
    backends::{Admin, Target},
    config::validate::{Balance, ServiceConfig},
    control::status::{HttpBackendStatus, HttpPoolStatus, HttpServiceStatus},
    health::{Checked, Health},
};
use forward::Service;
use listen::{ListenError, Listener};
use pool::Pool;

/// How long open connections get to finish on reload and shutdown.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Proxy {
    listeners: Vec<Listener>,
}

/// Every layer-7 pool with its backends, for the health checks.
pub fn checked_pools(services: &[ServiceConfig]) -> Vec<Checked> {
    services
        .iter()
        .filter_map(|s| s.http.as_ref().map(|h| (s, h)))
        .flat_map(|(s, h)| {
            h.pools.iter().map(move |p| Checked {
                target: Target::Pool {
                    service: s.name.clone(),
                    pool: p.name.clone(),
                },
                backends: p.backends.clone(),
            })
        })
        .collect()
}

/// Listeners a reload will add, bound already.
pub struct PreparedProxy {
    started: Vec<Listener>,
}

impl Proxy {
    /// Listens for every layer-7 service in `services`.
    pub fn start(services: &[ServiceConfig]) -> Result<Self, ListenError> {
        let mut proxy = Self::default();
        for config in services {
            if let Some(service) = Service::new(config) {
                let addr = SocketAddr::new(config.vip, config.port);
                proxy
                    .listeners
                    .push(Listener::start(addr, Arc::new(service))?);
                tracing::info!(service = config.name, %addr, "HTTP proxy listening");
            }
        }
        Ok(proxy)
    }

    /// Binds the listeners a reloaded config adds, changing nothing else:
    /// what can fail in a reload fails here, before anything changed.
    pub fn prepare(&self, services: &[ServiceConfig]) -> Result<PreparedProxy, ListenError> {
        let mut started = Vec::new();
        for config in services {
            let addr = SocketAddr::new(config.vip, config.port);
            let listening = self
                .listeners
                .iter()
                .any(|l| l.service().name == config.name && l.addr == addr);
            if listening {
                continue;
            }
            let Some(service) = Service::new(config) else {
                continue;
            };
            match Listener::start(addr, Arc::new(service)) {
                Ok(listener) => started.push(listener),
                Err(e) => {
                    for listener in started {
                        tokio::spawn(listener.stop(std::time::Duration::ZERO));
                    }
                    return Err(e);
                }
            }
        }
        Ok(PreparedProxy { started })
    }

    /// Applies a reloaded config: new services listen (on the listeners
    /// `prepared` bound), removed ones drain, the others take the new
    /// rules and pools for new connections.
    pub fn apply(&mut self, prepared: PreparedProxy, services: &[ServiceConfig]) {
        let mut kept = Vec::new();
        let mut gone = Vec::new();
        for listener in self.listeners.drain(..) {
            let name = listener.service().name.clone();
            let config = services.iter().find(|s| s.name == name && s.http.is_some());
            match config {
                Some(c) if SocketAddr::new(c.vip, c.port) == listener.addr => {
                    if let Some(service) = Service::new(c) {
                        listener.replace(Arc::new(service));
                    }
                    kept.push(listener);
                }
                _ => gone.push(listener),
            }
        }
        for listener in gone {
            // Drained in the background: the agent goes on meanwhile.
            tracing::info!(addr = %listener.addr, "HTTP proxy draining a removed service");
            tokio::spawn(listener.stop(DRAIN_LIMIT));
        }
        self.listeners = kept;
        for listener in prepared.started {
            tracing::info!(service = listener.service().name, addr = %listener.addr, "HTTP proxy listening");
            self.listeners.push(listener);
        }
    }

    fn pool(&self, target: &Target) -> Option<Arc<Pool>> {
        let Target::Pool { service, pool } = target else {
            return None;
        };
        self.listeners
            .iter()
            .map(Listener::service)
            .find(|s| &s.name == service)?
            .pools
            .iter()
            .find(|p| &p.name == pool)
            .cloned()
    }

    /// Whether `target` is one of the proxy's pools.
    pub fn owns(&self, target: &Target) -> bool {
        self.pool(target).is_some()
    }

    pub fn set_health(&self, target: &Target, backend: SocketAddr, up: bool) -> bool {
        self.pool(target).is_some_and(|p| p.set_up(backend, up))
    }

    pub fn set_drained(&self, target: &Target, backend: SocketAddr, drained: bool) -> bool {
        self.pool(target)
            .is_some_and(|p| p.set_drained(backend, drained))
    }

    /// Stops accepting everywhere and lets open requests finish.
    pub async fn shutdown(self) {
        futures_util::future::join_all(self.listeners.into_iter().map(|l| l.stop(DRAIN_LIMIT)))
            .await;
    }

    pub fn status(&self) -> Vec<HttpServiceStatus> {
        self.listeners
            .iter()
            .map(|l| {
                let s = l.service();
                HttpServiceStatus {
                    name: s.name.clone(),
                    listen: l.addr,
                    connections: s.connections.load(Ordering::Relaxed),
                    queued: s.waiting.load(Ordering::Relaxed),
                    pools: s
                        .pools
                        .iter()
                        .map(|p| HttpPoolStatus {
                            name: p.name.clone(),
                            balance: match p.balance() {
                                Balance::RoundRobin => "roundrobin",
                                Balance::LeastConn => "leastconn",
                            }
                            .to_owned(),
                            backends: p
                                .backends
                                .iter()
                                .map(|b| HttpBackendStatus {
                                    address: b.addr,
                                    weight: b.weight,
                                    health: if Pool::is_up(b) {
                                        Health::Up
                                    } else {
                                        Health::Down
                                    },
                                    admin: if Pool::is_drained(b) {
                                        Admin::Drained
                                    } else {
                                        Admin::Enabled
                                    },
                                    active: b.active.load(Ordering::Relaxed),
                                    responses: b.served.load(Ordering::Relaxed),
                                    connect_failures: b.failed.load(Ordering::Relaxed),
                                })
                                .collect(),
                        })
                        .collect(),
                }
            })
            .collect()
    }
}
