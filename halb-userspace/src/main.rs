use std::process::ExitCode;

// The HTTP proxy allocates per request from several threads; mimalloc
// keeps that cheaper than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context as _;
use clap::Parser as _;
use halb::{agent, config, dataplane::maps, logging};
use halb_common::stats::{PacketCounters, VerdictCounters};

mod cli;

use cli::{BackendAction, Cli, Command};
use halb::control::{
    client,
    protocol::{Request, Response},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run {
            config,
            keep_datapath,
            log_format,
        } => exit_code(run(&config, keep_datapath, log_format)),
        Command::Counters { pin_dir } => exit_code(counters(&pin_dir)),
        Command::Status { json, socket } => exit_code(status(&socket.path, json)),
        Command::Backend { action, socket } => {
            let request = match action {
                BackendAction::Drain { service, backend } => Request::Drain { service, backend },
                BackendAction::Enable { service, backend } => Request::Enable { service, backend },
            };
            exit_code(control(&socket.path, &request))
        }
        Command::Reload { socket } => exit_code(control(&socket.path, &Request::Reload)),
        Command::Stop { socket } => exit_code(control(&socket.path, &Request::Stop)),
    }
}

fn status(socket: &std::path::Path, json: bool) -> anyhow::Result<()> {
    match client::request(socket, &Request::Status)? {
        Response::Status(status) if json => println!("{}", serde_json::to_string_pretty(&status)?),
        Response::Status(status) => print!("{}", status.table()),
        Response::Error { message } => anyhow::bail!(message),
        Response::Done { message } => println!("{message}"),
    }
    Ok(())
}

/// Sends a request that answers done or error.
fn control(socket: &std::path::Path, request: &Request) -> anyhow::Result<()> {
    match client::request(socket, request)? {
        Response::Done { message } => println!("{message}"),
        Response::Error { message } => anyhow::bail!(message),
        Response::Status(_) => anyhow::bail!("unexpected status answer"),
    }
    Ok(())
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(config) => {
            for w in &config.warnings {
                eprintln!("{}:{}:{}: {}", path.display(), w.line, w.column, w.message);
            }
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    path: &std::path::Path,
    keep_datapath: bool,
    log_format: logging::LogFormat,
) -> anyhow::Result<()> {
    logging::init(log_format);
    let config = config::load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    let outcome = runtime.block_on(agent::run(path, config, keep_datapath));
    logging::flush();
    outcome?;
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
