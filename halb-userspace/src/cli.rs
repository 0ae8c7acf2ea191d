//! Command line of the `halb` binary.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
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
    },
    /// Validate a config file; print every error with file:line:column.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print the datapath's packet and verdict counters, read from its pins.
    Counters {
        /// Folder in bpffs the running agent pins its maps in.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
}
