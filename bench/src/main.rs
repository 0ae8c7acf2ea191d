//! `halb-bench`: measurements printed next to references taken in the same
//! run, never asserted. `cargo xtask bench datapath` builds and runs it.

mod failover;
mod l7;
mod packet_cost;
mod scale;
mod sync;
mod throughput;

// The fixture harness and frame builders of the XDP tests, shared as-is so
// the benchmark measures exactly the setup the tests check.
#[allow(dead_code, reason = "only part of the test harness is used here")]
#[path = "../../tests/tests/xdp/harness.rs"]
mod harness;
#[allow(dead_code, reason = "only part of the test harness is used here")]
#[path = "../../tests/tests/xdp/pkt.rs"]
mod pkt;

use std::path::PathBuf;

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: halb-bench datapath|failover|l7|sync|scale --halb PATH --web PATH [--seconds N]";
    let Some(verb) = args.first() else {
        bail!(usage)
    };
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let halb = PathBuf::from(value("--halb").context(usage)?);
    let web = PathBuf::from(value("--web").context(usage)?);
    let seconds: u32 = value("--seconds")
        .map_or(Ok(5), |s| s.parse())
        .context("--seconds")?;
    match verb.as_str() {
        "datapath" => {
            packet_cost::run();
            throughput::run(&halb, &web, seconds)
        }
        "failover" => failover::run(&halb),
        "l7" => l7::run(&halb, &web, seconds),
        "sync" => sync::run(&halb, &web),
        "scale" => scale::run(&halb, &web),
        other => bail!("unknown benchmark {other:?}; {usage}"),
    }
}
