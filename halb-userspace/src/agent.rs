//! The agent's supervisor: starts each subsystem, waits for a signal, and
//! shuts down in one place and one order.

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    config::ValidatedConfig,
    dataplane::{
        DataplaneError, LoadOptions, LoadedDatapath,
        sync::{Sync, SyncError},
    },
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

    let signal = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    };
    tracing::info!(signal, "shutting down");
    log_task.abort();
    datapath.detach_and_unpin()?;
    neighbours.release().await;
    tracing::info!("stopped");
    Ok(())
}
