use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use halb::{agent, config, dataplane::maps, logging};
use halb_common::stats::{PacketCounters, VerdictCounters};

mod cli;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config } => exit_code(run(&config)),
        Command::Counters { pin_dir } => exit_code(counters(&pin_dir)),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    logging::init();
    let config = config::load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    runtime.block_on(agent::run(config))?;
    Ok(())
}

fn counters(pin_dir: &std::path::Path) -> anyhow::Result<()> {
    let maps = maps::DatapathMaps::open_pinned(pin_dir)?;
    let packets = maps.packet_counters()?;
    for (name, value) in PacketCounters::FIELD_NAMES.iter().zip(packets.values()) {
        println!("{name:<18} {value}");
    }
    // Verdicts: only the reasons that happened.
    let verdicts = maps.verdict_counters()?;
    for (name, value) in VerdictCounters::FIELD_NAMES.iter().zip(verdicts.values()) {
        if value > 0 {
            println!("{name:<18} {value}");
        }
    }
    Ok(())
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("halb: {error:#}");
            ExitCode::FAILURE
        }
    }
}
