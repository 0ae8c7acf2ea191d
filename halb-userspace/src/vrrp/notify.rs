//! Notify commands, as keepalived's notify_master / notify_backup /
//! notify_fault: run through `sh -c` on each change of state, without
//! waiting for them (a slow script must not delay an election). The
//! instance and state are passed in the environment.

use tokio::process::Command;

/// Starts `command` for `instance` entering `state`; logs how it ends.
pub fn run(command: &str, instance: &str, state: &str) {
    let mut child = match Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("HALB_VRRP_INSTANCE", instance)
        .env("HALB_VRRP_STATE", state.to_uppercase())
        .kill_on_drop(false)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(instance, command, error = %e, "cannot run notify command");
            return;
        }
    };
    let instance = instance.to_owned();
    let command = command.to_owned();
    tokio::spawn(async move {
        match child.wait().await {
            Ok(status) if status.success() => {
                tracing::debug!(instance, command, "notify command done");
            }
            Ok(status) => {
                tracing::warn!(instance, command, %status, "notify command failed");
            }
            Err(e) => tracing::warn!(instance, command, error = %e, "notify command lost"),
        }
    });
}
