//! The agent's supervisor: starts each subsystem, waits for a signal, and
//! shuts down in one place and one order.

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    config::ValidatedConfig,
    dataplane::{AttachedDatapath, DataplaneError},
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("cannot install signal handler: {0}")]
    Signal(#[source] std::io::Error),
}

/// Runs the agent until SIGINT or SIGTERM, then detaches the datapath.
pub async fn run(config: ValidatedConfig) -> Result<(), AgentError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signal)?;

    let (datapath, log_pump) = AttachedDatapath::load_and_attach(&config.datapath)?;
    let log_task = tokio::spawn(log_pump.run());
    tracing::info!(
        pin_dir = %datapath.pin_dir().display(),
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
    tracing::info!("stopped");
    Ok(())
}
