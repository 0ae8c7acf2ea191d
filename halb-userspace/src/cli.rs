//! Command line of the `halb` binary.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand};
use halb::config::validate::DEFAULT_CONTROL_SOCKET;
use halb_common::maps::DEFAULT_PIN_DIR;

#[derive(Debug, Parser)]
#[command(
    name = "halb",
    version,
    about = "Highly available layer-4 load balancer"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: load and attach the datapath, then serve until SIGTERM.
    Run {
        /// Config file (TOML).
        #[arg(short, long, default_value = "/etc/halb/halb.toml")]
        config: PathBuf,
        /// On SIGTERM or `halb stop`, leave the datapath attached and its
        /// maps pinned, forwarding, for the next agent to adopt.
        #[arg(long)]
        keep_datapath: bool,
        /// How log lines are written (level: RUST_LOG, default info).
        #[arg(long, value_enum, default_value = "text")]
        log_format: halb::logging::LogFormat,
    },
    /// Validate a config file; print every error with file:line:column.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Services and backends of the running agent: health, admin state,
    /// weight, counters and rates.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: Socket,
    },
    /// Drain or enable a backend of the running agent.
    Backend {
        #[command(subcommand)]
        action: BackendAction,
        #[command(flatten)]
        socket: Socket,
    },
    /// Make the running agent re-read its config and apply what changed
    /// (as SIGHUP does).
    Reload {
        #[command(flatten)]
        socket: Socket,
    },
    /// Stop the running agent (as SIGTERM does).
    Stop {
        #[command(flatten)]
        socket: Socket,
    },
    /// Print the datapath's packet and verdict counters, read from its pins.
    Counters {
        /// Folder in bpffs the running agent pins its maps in.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct Socket {
    /// The agent's control socket ([admin] control_socket).
    #[arg(long = "socket", global = true, default_value = DEFAULT_CONTROL_SOCKET)]
    pub path: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum BackendAction {
    /// No new flows to BACKEND; its flows finish where they are.
    Drain {
        service: String,
        backend: SocketAddr,
    },
    /// Give BACKEND new flows again.
    Enable {
        service: String,
        backend: SocketAddr,
    },
}
