//! `cargo xtask bench NAME`: release builds, then the benchmark runner as
//! root. Figures are printed next to references measured in the same run.

use anyhow::{Result, bail};

use crate::{
    bpffs, build, cmd,
    packages::{self, Need},
    privilege, signals, toolchain,
};

/// A benchmark: its name, what it measures, and the programs it runs
/// besides the harness's.
pub struct Benchmark {
    pub name: &'static str,
    pub measures: &'static str,
    pub runs: &'static [Need],
}

/// The benchmarks there are.
pub const BENCHMARKS: &[Benchmark] = &[
    Benchmark {
        name: "datapath",
        measures: "ns/packet through BPF_PROG_TEST_RUN next to a trivial XDP_TX program; requests/s through halb in each mode next to kernel forwarding and haproxy",
        runs: &[packages::WRK, packages::HAPROXY],
    },
    Benchmark {
        name: "l7",
        measures: "requests/s and p99 through halb's HTTP proxy next to haproxy in http mode, same rules and topology",
        runs: &[packages::WRK, packages::HAPROXY],
    },
    Benchmark {
        name: "failover",
        measures: "time from kill -9 of the VRRP master to the client's ARP entry moving, 20 trials, halb pair next to a keepalived pair with the same timers",
        runs: &[packages::KEEPALIVED],
    },
    Benchmark {
        name: "sync",
        measures: "connection sync: flow-to-peer lag p50/p99 at 1k, 10k and rising new flows/s; kept-alive connections surviving a master's death with halb and sync, halb without sync, and keepalived + haproxy",
        runs: &[packages::KEEPALIVED, packages::HAPROXY],
    },
    Benchmark {
        name: "scale",
        measures: "three halb nodes behind a BIRD router with ECMP and BFD: time from a node's death to the router's withdrawal and to traffic flowing again, 20 trials; broken connections for each kind of event",
        runs: &[packages::BIRD],
    },
];

pub fn run(name: &str, seconds: u32) -> Result<()> {
    let Some(benchmark) = BENCHMARKS.iter().find(|b| b.name == name) else {
        let known: Vec<String> = BENCHMARKS
            .iter()
            .map(|b| format!("  {}: {}", b.name, b.measures))
            .collect();
        bail!("no benchmark {name:?}; there are:\n{}", known.join("\n"));
    };
    packages::ensure(
        &format!("cargo xtask bench {name}"),
        &[packages::HARNESS, benchmark.runs],
    )?;
    toolchain::ensure()?;
    let bins = build::binaries(build::Profile::Release, &["halb-bench"])?;
    let bench = bins
        .halb
        .parent()
        .map(|dir| dir.join("halb-bench"))
        .ok_or_else(|| anyhow::anyhow!("no target folder"))?;
    bpffs::ensure()?;
    signals::catch_stop();
    cmd::run(
        privilege::command(bench)
            .arg(name)
            .arg("--halb")
            .arg(&bins.halb)
            .arg("--web")
            .arg(&bins.web)
            .arg("--seconds")
            .arg(seconds.to_string()),
    )
}
