//! The agent's supervisor: starts each subsystem, applies what they report
//! (health changes, operator requests, reloads), and shuts down in one
//! place and one order.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    backends::{Admin, BackendStates},
    config::{self, ValidatedConfig, validate::ServiceConfig},
    control::{
        protocol::{Request, Response},
        socket::{ControlError, ControlSocket},
        status::{BackendStatus, ServiceStatus, Status, Traffic},
    },
    dataplane::{
        DataplaneError, LoadOptions, LoadedDatapath,
        sync::{Sync, SyncError},
    },
    health::{Checks, Health, HealthChange},
    metrics::{MetricsServer, PageRequest, server::MetricsError},
    net::{
        forwarding::{self, ForwardingError},
        neighbours::{NeighbourError, Neighbours},
    },
    proxy::{self, Proxy, listen::ListenError},
    vrrp::lease::Leases,
    vrrp::routers::{Routers, RoutersError},
};
use halb_common::stats::{TrafficCounters, VerdictCounters};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Forwarding(#[from] ForwardingError),
    #[error(transparent)]
    Neighbours(#[from] NeighbourError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("cannot program the services into the datapath: {0}")]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Vrrp(#[from] RoutersError),
    #[error("cannot install signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Proxy(#[from] ListenError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// Everything the running agent owns.
struct Agent {
    config_path: PathBuf,
    config: ValidatedConfig,
    datapath: LoadedDatapath,
    sync: Sync,
    states: BackendStates,
    neighbours: Neighbours,
    checks: Checks,
    health_tx: mpsc::Sender<HealthChange>,
    rates: Rates,
    routers: Routers,
    proxy: Proxy,
}

const INTERFACE_POLL: Duration = Duration::from_millis(200);
const ROUTE_RETRY: Duration = Duration::from_secs(2);

/// Runs the agent with the config read from `config_path` until SIGINT,
/// SIGTERM or `halb stop`, then detaches the datapath (or, with
/// `keep_datapath`, leaves it forwarding for the next agent).
pub async fn run(
    config_path: &Path,
    config: ValidatedConfig,
    keep_datapath: bool,
) -> Result<(), AgentError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signal)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(AgentError::Signal)?;
    let mut control = ControlSocket::bind(&config.admin.control_socket)?;

    // A datapath this agent created is removed again if it cannot start;
    // one adopted from a previous agent keeps forwarding.
    let fresh = !config.datapath.pin_dir.exists();
    let mut datapath = LoadedDatapath::load(&LoadOptions::from_config(&config.datapath))?;
    let started = match start(&mut datapath, &config).await {
        Ok(started) => started,
        Err(e) => {
            if fresh && let Err(unpin) = datapath.detach_and_unpin() {
                tracing::warn!(error = %unpin, "cannot remove the datapath after a failed start");
            }
            return Err(e);
        }
    };
    let Started {
        log_task,
        unresolved,
        sync,
        neighbours,
        proxy,
        routers,
        _metrics,
        mut pages,
    } = started;
    let (health_tx, mut health_rx) = mpsc::channel::<HealthChange>(256);
    let checks = Checks::start(&checked(&config.services), health_tx.clone(), |_, _| {
        Health::Up
    });
    let mut agent = Agent {
        config_path: config_path.to_owned(),
        config,
        datapath,
        sync,
        states: BackendStates::default(),
        neighbours,
        checks,
        health_tx,
        rates: Rates::default(),
        routers,
        proxy,
    };
    // A drain outlives a restart: the pinned backend says so.
    for (service, backend) in agent.sync.draining() {
        tracing::info!(service, %backend, "backend still drained, as the previous agent left it");
        agent.states.set_admin(&service, backend, Admin::Drained);
    }
    agent.note_routes(unresolved, &[]);
    agent.reconcile_states()?;
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    // Backends without a route are looked at again this often.
    let mut route_retry = tokio::time::interval(ROUTE_RETRY);
    // Tracked interfaces are looked at this often (a link going down is
    // seen within it; keepalived hears it from netlink at once).
    let mut interface_poll = tokio::time::interval(INTERFACE_POLL);

    let reason = loop {
        tokio::select! {
            Some(change) = health_rx.recv() => agent.apply_health(change)?,
            _ = sample.tick() => agent.rates.sample(&agent.datapath, &agent.sync),
            _ = interface_poll.tick(), if !agent.routers.is_empty() => agent.routers.poll_interfaces(),
            _ = route_retry.tick(), if !agent.states.unroutable().is_empty() => agent.retry_routes().await?,
            Some(page) = pages.recv() => {
                let packets = agent.datapath.maps.packet_counters().unwrap_or_default();
                let _ = page.send(crate::metrics::render(&agent.status(), &packets));
            }
            _ = sighup.recv() => {
                if let Err(message) = agent.reload().await {
                    tracing::error!(%message, "reload refused; the running config stays");
                }
            }
            Some(pending) = control.next() => {
                let request = pending.request.clone();
                let (response, stop) = match request {
                    Ok(request) => agent.handle(request).await,
                    Err(message) => (Response::Error { message }, false),
                };
                pending.answer(&response);
                if stop {
                    break "halb stop";
                }
            }
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
    };
    tracing::info!(reason, "shutting down");
    // Hand the virtual addresses over first (priority 0: the backup takes
    // over after its skew time), while the datapath still serves.
    agent.routers.shutdown().await;
    // Clients already connected finish their requests.
    agent.proxy.shutdown().await;
    drop(agent.checks);
    log_task.abort();
    if keep_datapath {
        // The datapath forwards on; the managed neighbours stay with it.
        agent.datapath.keep_running();
    } else {
        agent.datapath.detach_and_unpin()?;
        agent.neighbours.release().await;
    }
    drop(control);
    tracing::info!("stopped");
    Ok(())
}

/// What starting the subsystems around a loaded datapath yields.
struct Started {
    log_task: tokio::task::JoinHandle<()>,
    /// Backends without a route, with why: down until one appears.
    unresolved: Vec<(std::net::IpAddr, NeighbourError)>,
    sync: Sync,
    neighbours: Neighbours,
    proxy: Proxy,
    routers: Routers,
    /// Serves in tasks of its own; the agent renders pages on request.
    _metrics: Option<MetricsServer>,
    pages: mpsc::Receiver<PageRequest>,
}

/// Programs the services, attaches the datapath and starts the proxy,
/// VRRP and metrics.
async fn start(
    datapath: &mut LoadedDatapath,
    config: &ValidatedConfig,
) -> Result<Started, AgentError> {
    let log_task = tokio::spawn(datapath.log_pump()?.run());
    // Ids, rings and drains a previous agent left pinned are kept.
    let mut sync = Sync::adopt(&datapath.maps, config.datapath.maglev_table_size)?;
    sync.apply(&mut datapath.maps, &config.services)?;
    for service in sync.services() {
        tracing::info!(
            service = service.config.name,
            vip = %service.config.vip,
            port = service.config.port,
            backends = service.backends.len(),
            "service programmed"
        );
    }
    forwarding::enable(&config.datapath.interfaces)?;
    let mut neighbours = Neighbours::connect()?;
    let unresolved = neighbours
        .keep_resolved(backend_addresses(&config.services))
        .await;
    datapath.attach(&config.datapath.interfaces, config.datapath.xdp_mode)?;
    tracing::info!(
        pin_dir = %config.datapath.pin_dir.display(),
        interfaces = ?config.datapath.interfaces,
        control = %config.admin.control_socket.display(),
        "datapath attached"
    );
    let proxy = Proxy::start(&config.services)?;
    // Every backend starts up (checks report only changes), so no service
    // is down yet; the election starts once the datapath can serve.
    let leases = Leases::open(&config.datapath.pin_dir).map_err(DataplaneError::from)?;
    leases.clear();
    let routers = Routers::start(
        &config.vrrp,
        BTreeSet::new(),
        (!config.vrrp.is_empty()).then_some(leases),
    )?;
    let (page_tx, pages) = mpsc::channel(16);
    let metrics = match config.admin.metrics {
        Some(addr) => {
            let server = MetricsServer::start(addr, page_tx).await?;
            tracing::info!(%addr, "metrics at /metrics");
            Some(server)
        }
        None => None,
    };
    Ok(Started {
        log_task,
        unresolved,
        sync,
        neighbours,
        proxy,
        routers,
        _metrics: metrics,
        pages,
    })
}

/// The services whose backends are health-checked: layer-4 services, and
/// each layer-7 pool as `service/pool`.
fn checked(services: &[ServiceConfig]) -> Vec<ServiceConfig> {
    services
        .iter()
        .filter(|s| s.http.is_none())
        .cloned()
        .chain(proxy::checked_pools(services))
        .collect()
}

fn backend_addresses(services: &[ServiceConfig]) -> Vec<std::net::IpAddr> {
    services
        .iter()
        .flat_map(|s| s.backends.iter().map(|b| b.address))
        .collect()
}

impl Agent {
    /// Answers one control request; says whether the agent should stop.
    async fn handle(&mut self, request: Request) -> (Response, bool) {
        let done = |message: String| Response::Done { message };
        let error = |message: String| Response::Error { message };
        match request {
            Request::Status => (Response::Status(self.status()), false),
            Request::Drain { service, backend } => {
                match self.set_admin(&service, backend, Admin::Drained) {
                    Ok(()) => (
                        done(format!("{service} {backend} drained: no new flows")),
                        false,
                    ),
                    Err(e) => (error(e), false),
                }
            }
            Request::Enable { service, backend } => {
                match self.set_admin(&service, backend, Admin::Enabled) {
                    Ok(()) => (done(format!("{service} {backend} enabled")), false),
                    Err(e) => (error(e), false),
                }
            }
            Request::Reload => match self.reload().await {
                Ok(message) => (done(message), false),
                Err(message) => (error(message), false),
            },
            Request::Stop => (done("stopping".to_owned()), true),
        }
    }

    fn set_admin(
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
    async fn reload(&mut self) -> Result<String, String> {
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
    fn note_routes(
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
    async fn retry_routes(&mut self) -> Result<(), AgentError> {
        let retried = self.states.unroutable();
        let unresolved = self.neighbours.keep_resolved(retried.clone()).await;
        self.note_routes(unresolved, &retried);
        self.reconcile_states()
    }

    /// Writes every layer-4 backend whose datapath state differs from what
    /// its health, route and admin state say.
    fn reconcile_states(&mut self) -> Result<(), AgentError> {
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
    fn apply_health(&mut self, change: HealthChange) -> Result<(), AgentError> {
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
    fn push_state(&mut self, service: &str, backend: SocketAddr) -> Result<(), AgentError> {
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

    fn status(&self) -> Status {
        let mut status = Status {
            vrrp: self.routers.statuses(),
            http: self.proxy.status(),
            ..Status::default()
        };
        if let Ok(v) = self.datapath.maps.verdict_counters() {
            for (name, value) in VerdictCounters::FIELD_NAMES.iter().zip(v.values()) {
                status.verdicts.insert((*name).to_owned(), value);
            }
        }
        for applied in self.sync.services() {
            let c = &applied.config;
            let backends = applied
                .backends
                .iter()
                .map(|b| {
                    let addr = SocketAddr::new(b.config.address, b.config.port);
                    BackendStatus {
                        address: addr,
                        weight: b.config.weight,
                        health: self.states.health(&c.name, addr),
                        admin: self.states.admin(&c.name, addr),
                        state: b.state,
                        reason: self.states.down_reason(addr).map(str::to_owned),
                        traffic: self
                            .rates
                            .backend(b.id, self.datapath.maps.backend_counters(b.id).ok()),
                    }
                })
                .collect();
            status.services.push(ServiceStatus {
                name: c.name.clone(),
                vip: c.vip.to_string(),
                port: c.port,
                protocol: format!("{:?}", c.protocol).to_lowercase(),
                mode: match c.mode {
                    config::validate::Mode::Nat { .. } => "nat",
                    config::validate::Mode::NatKeepClient => "nat-keep-client",
                    config::validate::Mode::Dsr => "dsr",
                }
                .to_owned(),
                traffic: self.rates.service(
                    applied.id,
                    self.datapath.maps.service_counters(applied.id).ok(),
                ),
                backends,
            });
        }
        status
    }
}

/// Counters sampled once a second, to give rates.
#[derive(Default)]
struct Rates {
    last: Option<Sample>,
    previous: Option<Sample>,
}

struct Sample {
    at: Instant,
    services: std::collections::HashMap<u32, TrafficCounters>,
    backends: std::collections::HashMap<u32, TrafficCounters>,
}

impl Rates {
    fn sample(&mut self, datapath: &LoadedDatapath, sync: &Sync) {
        let mut sample = Sample {
            at: Instant::now(),
            services: Default::default(),
            backends: Default::default(),
        };
        for s in sync.services() {
            if let Ok(c) = datapath.maps.service_counters(s.id) {
                sample.services.insert(s.id, c);
            }
            for b in &s.backends {
                if let Ok(c) = datapath.maps.backend_counters(b.id) {
                    sample.backends.insert(b.id, c);
                }
            }
        }
        self.previous = self.last.replace(sample);
    }

    /// Service `id`'s counters as read `now`, with the rates of the last
    /// sampling period.
    fn service(&self, id: u32, now: Option<TrafficCounters>) -> Traffic {
        self.traffic(now, |s| s.services.get(&id).copied())
    }

    fn backend(&self, id: u32, now: Option<TrafficCounters>) -> Traffic {
        self.traffic(now, |s| s.backends.get(&id).copied())
    }

    fn traffic(
        &self,
        now: Option<TrafficCounters>,
        pick: impl Fn(&Sample) -> Option<TrafficCounters>,
    ) -> Traffic {
        let totals = now.unwrap_or_default();
        let mut traffic = Traffic {
            packets: totals.packets,
            bytes: totals.bytes,
            new_flows: totals.new_flows,
            ..Traffic::default()
        };
        if let (Some(last), Some(previous)) = (&self.last, &self.previous) {
            let now = pick(last).unwrap_or_default();
            let before = pick(previous).unwrap_or_default();
            let secs = last.at.duration_since(previous.at).as_secs_f64().max(0.001);
            traffic.packets_per_sec = now.packets.saturating_sub(before.packets) as f64 / secs;
            traffic.bytes_per_sec = now.bytes.saturating_sub(before.bytes) as f64 / secs;
            traffic.new_flows_per_sec =
                now.new_flows.saturating_sub(before.new_flows) as f64 / secs;
        }
        traffic
    }
}
