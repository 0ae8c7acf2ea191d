//! The agent's supervisor: starts each subsystem, applies what they report
//! (health changes), waits for a signal, and shuts down in one place and
//! one order.

use std::net::SocketAddr;

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    backends::BackendStates,
    config::ValidatedConfig,
    dataplane::{
        DataplaneError, LoadOptions, LoadedDatapath,
        sync::{Sync, SyncError},
    },
    health::{Checks, Health, HealthChange},
    net::{
        forwarding::{self, ForwardingError},
        neighbours::{NeighbourError, Neighbours},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Forwarding(#[from] ForwardingError),
    #[error(transparent)]
    Neighbours(#[from] NeighbourError),
    #[error("cannot program the services into the datapath: {0}")]
    Sync(#[from] SyncError),
    #[error("cannot install signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// Everything the running agent owns.
struct Agent {
    config: ValidatedConfig,
    datapath: LoadedDatapath,
    sync: Sync,
    states: BackendStates,
}

/// Runs the agent until SIGINT or SIGTERM, then detaches the datapath.
pub async fn run(config: ValidatedConfig) -> Result<(), AgentError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signal)?;

    let mut datapath = LoadedDatapath::load(&LoadOptions::from_config(&config.datapath))?;
    let log_task = tokio::spawn(datapath.log_pump()?.run());
    let mut sync = Sync::new(config.datapath.maglev_table_size);
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
    neighbours
        .keep_resolved(
            config
                .services
                .iter()
                .flat_map(|s| s.backends.iter().map(|b| b.address)),
        )
        .await?;
    datapath.attach(&config.datapath.interfaces, config.datapath.xdp_mode)?;
    tracing::info!(
        pin_dir = %config.datapath.pin_dir.display(),
        interfaces = ?config.datapath.interfaces,
        "datapath attached"
    );

    let (health_tx, mut health_rx) = mpsc::channel::<HealthChange>(256);
    let checks = Checks::start(&config.services, health_tx);
    let mut agent = Agent {
        config,
        datapath,
        sync,
        states: BackendStates::default(),
    };

    let signal = loop {
        tokio::select! {
            Some(change) = health_rx.recv() => agent.apply_health(change)?,
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
    };
    tracing::info!(signal, "shutting down");
    drop(checks);
    log_task.abort();
    agent.datapath.detach_and_unpin()?;
    neighbours.release().await;
    tracing::info!("stopped");
    Ok(())
}

impl Agent {
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
        self.push_state(&service, backend)
    }

    /// Writes one backend's combined state into the datapath and logs a
    /// service losing (or regaining) its last usable backend, once.
    fn push_state(&mut self, service: &str, backend: SocketAddr) -> Result<(), AgentError> {
        let state = self.states.datapath_state(service, backend);
        self.sync
            .set_backend_state(&mut self.datapath.maps, service, backend, state)?;
        let backends: Vec<SocketAddr> = self
            .config
            .services
            .iter()
            .filter(|s| s.name == service)
            .flat_map(|s| {
                s.backends
                    .iter()
                    .map(|b| SocketAddr::new(b.address, b.port))
            })
            .collect();
        match self.states.note_service(service, backends) {
            Some(true) => tracing::error!(
                service,
                policy = ?self.policy(service),
                "no backend up: new connections are refused until one comes back"
            ),
            Some(false) => tracing::info!(service, "a backend is up again"),
            None => {}
        }
        Ok(())
    }

    fn policy(&self, service: &str) -> Option<crate::config::validate::AllDown> {
        self.config
            .services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.when_all_down)
    }
}
