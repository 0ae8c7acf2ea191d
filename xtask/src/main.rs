//! `cargo xtask VERB`: the project's only entry points. The lab, the tests
//! and the benchmarks first install the Debian packages whose programs they
//! run (packages.rs); every verb that builds makes sure the eBPF toolchain
//! is installed.

mod bench;
mod bpffs;
mod build;
mod cmd;
mod console;
mod fuzz;
mod lab;
mod lab_ecmp;
mod packages;
mod privilege;
mod run;
mod signals;
mod test;
mod toolchain;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::console::say;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run and test halb")]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Without arguments: start the lab (namespaces, halb, web backends)
    /// until Ctrl-C. With `-- ARGS`: run `halb run ARGS` on this host.
    Run {
        /// Remove what a lab that was killed left behind, then exit.
        #[arg(long)]
        clean: bool,
        /// Which lab: `pair` (VRRP, connection sync) or `ecmp` (three nodes
        /// behind a BIRD router, BGP and BFD).
        #[arg(long, default_value = "pair")]
        scenario: String,
        /// Arguments for `halb run`, after `--` (e.g. `-- --config halb.toml`).
        #[arg(last = true)]
        halb_args: Vec<String>,
    },
    /// Lint, build, and run every test (unit and network-namespace integration).
    Test {
        /// Passed to `cargo test` after `--` (e.g. a test name filter).
        #[arg(last = true)]
        test_args: Vec<String>,
    },
    /// Run a benchmark (release build, as root): `datapath`, `l7`, `failover`, `sync` or `scale`.
    Bench {
        /// Which benchmark: datapath, l7, failover or sync.
        name: String,
        /// Seconds per load measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u32,
    },
    /// Fuzz a parser from its seeds (nightly, cargo-fuzz): `--list` names the targets.
    Fuzz {
        /// Which target: config, vrrp_advert, garp, http_route, http_rules.
        #[arg(required_unless_present = "list")]
        name: Option<String>,
        /// How long libFuzzer runs.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Name the targets and what each feeds, then exit.
        #[arg(long)]
        list: bool,
    },
    /// Check (and install) the eBPF toolchain only.
    Toolchain,
    /// The lab's privileged half; `run` starts it (under sudo when not root).
    #[command(hide = true)]
    Lab {
        #[arg(long)]
        halb: std::path::PathBuf,
        #[arg(long)]
        web: std::path::PathBuf,
        #[arg(long, default_value = "pair")]
        scenario: String,
    },
    /// The privileged half of `run --clean`.
    #[command(hide = true)]
    LabClean,
}

fn main() -> ExitCode {
    match dispatch(Cli::parse().verb) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(verb: Verb) -> anyhow::Result<()> {
    match verb {
        Verb::Run { clean: true, .. } => privilege::xtask_as_root(&["lab-clean".into()]),
        Verb::Run {
            halb_args,
            scenario,
            ..
        } => run::run(&halb_args, &scenario),
        Verb::Test { test_args } => test::run(&test_args),
        Verb::Bench { name, seconds } => bench::run(&name, seconds),
        Verb::Fuzz { list: true, .. } => {
            fuzz::list();
            Ok(())
        }
        Verb::Fuzz { name, seconds, .. } => fuzz::run(name.as_deref().unwrap_or_default(), seconds),
        Verb::Toolchain => toolchain::ensure(),
        Verb::Lab {
            halb,
            web,
            scenario,
        } => lab::run(&build::Binaries { halb, web }, &scenario),
        Verb::LabClean => lab::clean(),
    }
}
