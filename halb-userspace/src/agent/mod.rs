//! The agent's supervisor: starts each subsystem, hands what they report
//! (health changes, operator requests, reloads) to the reconciler, and
//! shuts down in one place and one order.

mod reconcile;
mod report;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    backends::{Admin, BackendKey, BackendStates, Target},
    bgp::Bgp,
    config::{ValidatedConfig, validate::ServiceConfig},
    connsync::{
        ConnSync, ConnSyncError,
        events::FlowEvents,
        table::{Directory, Egress, PinnedTable},
    },
    control::{
        protocol::{Request, Response},
        socket::{ControlError, ControlSocket},
    },
    dataplane::{
        DataplaneError, LoadOptions, LoadedDatapath,
        sync::{Sync, SyncError},
    },
    health::{Checked, Checks, Health, HealthChange},
    metrics::{MetricsServer, PageRequest, server::MetricsError},
    net::{
        forwarding::{self, ForwardingError},
        neighbours::{NeighbourError, Neighbours},
    },
    proxy::{self, Proxy, listen::ListenError},
    vrrp::{
        lease::Leases,
        routers::{Routers, RoutersError},
    },
};
use report::Rates;

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
    #[error(transparent)]
    ConnSync(#[from] ConnSyncError),
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
    conn_sync: Option<ConnSync>,
    bgp: Option<Bgp>,
}

const INTERFACE_POLL: Duration = Duration::from_millis(200);
const ROUTE_RETRY: Duration = Duration::from_secs(2);
/// How long a stopping agent waits for its peers to acknowledge its flows.
const SYNC_FLUSH: Duration = Duration::from_secs(1);

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
    for warning in &config.warnings {
        tracing::warn!(
            "{}:{}:{}: {}",
            config_path.display(),
            warning.line,
            warning.column,
            warning.message
        );
    }
    let mut datapath = LoadedDatapath::load(&LoadOptions::from_config(
        &config.datapath,
        config.sync.as_ref(),
    ))?;
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
        conn_sync,
        _metrics,
        mut pages,
    } = started;
    // The datapath is attached: BGP may announce what it can serve.
    let agent_config_bgp = config.bgp.as_ref().map(Bgp::start);
    let (health_tx, mut health_rx) = mpsc::channel::<HealthChange>(256);
    let checks = Checks::start(&checked(&config.services), health_tx.clone(), |_| {
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
        conn_sync,
        bgp: agent_config_bgp,
    };
    // A drain outlives a restart: the pinned backend says so.
    for (service, backend) in agent.sync.draining() {
        tracing::info!(service, %backend, "backend still drained, as the previous agent left it");
        agent
            .states
            .set_admin(&BackendKey::service(&service, backend), Admin::Drained);
    }
    agent.note_routes(unresolved, &[]);
    agent.reconcile_states()?;
    agent.announce();
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
    // Routers move the traffic away (GRACEFUL_SHUTDOWN, then withdrawal)
    // while the datapath still serves what reaches it. A datapath kept for
    // the next agent keeps its announcement too.
    if let Some(bgp) = &agent.bgp
        && !keep_datapath
    {
        bgp.shutdown().await;
    }
    // The peers get every flow first, then the virtual addresses (priority
    // 0: the backup takes over after its skew time), while the datapath
    // still serves; flows made meanwhile follow them.
    if let Some(sync) = &agent.conn_sync {
        sync.flush(SYNC_FLUSH).await;
    }
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
    // Flows made until the datapath stopped serving follow the others.
    if let Some(sync) = &agent.conn_sync {
        sync.flush(SYNC_FLUSH).await;
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
    conn_sync: Option<ConnSync>,
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
    let virtual_addresses: Vec<std::net::IpAddr> = config
        .vrrp
        .iter()
        .flat_map(|v| v.virtual_addresses.iter().map(|(a, _)| *a))
        .collect();
    leases.reset(&virtual_addresses);
    let conn_sync = match &config.sync {
        Some(sync_config) => {
            let events =
                FlowEvents::new(datapath.take_flow_events()?).map_err(ConnSyncError::Events)?;
            let table =
                PinnedTable::open(&config.datapath.pin_dir).map_err(DataplaneError::from)?;
            let conn_sync =
                ConnSync::start(sync_config, events, table, directory(config, &sync)).await?;
            tracing::info!(
                listen = %sync_config.listen,
                peers = ?sync_config.peers,
                nat_ports = ?sync_config.nat_ports(config.datapath.nat_ports),
                "connection sync started; asking the peers for their tables"
            );
            Some(conn_sync)
        }
        None => None,
    };
    let routers = Routers::start(
        &config.vrrp,
        BTreeSet::new(),
        (!config.vrrp.is_empty()).then_some(leases),
        conn_sync.as_ref().map(ConnSync::gate),
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
        conn_sync,
        _metrics: metrics,
        pages,
    })
}

/// What sync needs to install a peer's flows here: the services' backend
/// ids, and for each VIP the interface its clients are on (the VRRP
/// instance's that moves it, else the datapath's first).
fn directory(config: &ValidatedConfig, sync: &Sync) -> Directory {
    let options = LoadOptions::from_config(&config.datapath, config.sync.as_ref());
    let egress = |vip: std::net::IpAddr| {
        let interface = config
            .vrrp
            .iter()
            .find(|v| v.virtual_addresses.iter().any(|(a, _)| *a == vip))
            .map(|v| v.interface.as_str())
            .or(config.datapath.interfaces.first().map(String::as_str))?;
        Some(Egress {
            ifindex: crate::net::addr::interface_index(interface)?,
            mac: crate::net::iface::mac(interface).ok()?,
        })
    };
    Directory::build(
        sync.services(),
        egress,
        options.epoch_shift(),
        config.datapath.tcp_timeout,
        config.datapath.udp_timeout,
    )
}

/// The services whose backends are health-checked: layer-4 services, and
/// each layer-7 pool as `service/pool`.
fn checked(services: &[ServiceConfig]) -> Vec<Checked> {
    services
        .iter()
        .filter(|s| s.http.is_none())
        .map(|s| Checked {
            target: Target::Service(s.name.clone()),
            backends: s.backends.clone(),
        })
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
    /// Hands BGP the VIPs this node can serve: those of a layer-7 service
    /// (the proxy), or of a layer-4 service with a backend usable in the
    /// datapath.
    fn announce(&mut self) {
        let Some(bgp) = &mut self.bgp else {
            return;
        };
        let states = &self.states;
        let vips = self
            .config
            .services
            .iter()
            .filter(|s| {
                s.http.is_some()
                    || s.backends.iter().any(|b| {
                        let key = BackendKey::service(
                            &s.name,
                            std::net::SocketAddr::new(b.address, b.port),
                        );
                        states.datapath_state(&key) == crate::dataplane::sync::BackendState::Up
                    })
            })
            .map(|s| s.vip)
            .collect();
        bgp.announce(vips);
    }

    /// Answers one control request; says whether the agent should stop.
    async fn handle(&mut self, request: Request) -> (Response, bool) {
        let done = |message: String| Response::Done { message };
        let error = |message: String| Response::Error { message };
        match request {
            Request::Status => (Response::Status(self.status()), false),
            Request::Drain { service, backend } => {
                let key = BackendKey::new(&Target::from_name(&service), backend);
                match self.set_admin(&key, Admin::Drained) {
                    Ok(()) => (
                        done(format!("{service} {backend} drained: no new flows")),
                        false,
                    ),
                    Err(e) => (error(e), false),
                }
            }
            Request::Enable { service, backend } => {
                let key = BackendKey::new(&Target::from_name(&service), backend);
                match self.set_admin(&key, Admin::Enabled) {
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
}
