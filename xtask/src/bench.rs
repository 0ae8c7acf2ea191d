//! `cargo xtask bench NAME`: release builds, then the benchmark runner as
//! root. Figures are printed next to references measured in the same run.

use anyhow::{Result, bail};

use crate::{build, cmd, privilege, signals, toolchain};

/// The benchmarks there are, with what each measures.
pub const BENCHMARKS: &[(&str, &str)] = &[
    (
        "datapath",
        "ns/packet through BPF_PROG_TEST_RUN next to a trivial XDP_TX program; requests/s through halb in each mode next to kernel forwarding and haproxy",
    ),
    (
        "l7",
        "requests/s and p99 through halb's HTTP proxy next to haproxy in http mode, same rules and topology",
    ),
    (
        "failover",
        "time from kill -9 of the VRRP master to the client's ARP entry moving, 20 trials, halb pair next to a keepalived pair with the same timers",
    ),
];

pub fn run(name: &str, seconds: u32) -> Result<()> {
    if !BENCHMARKS.iter().any(|(n, _)| *n == name) {
        let known: Vec<String> = BENCHMARKS
            .iter()
            .map(|(n, what)| format!("  {n}: {what}"))
            .collect();
        bail!("no benchmark {name:?}; there are:\n{}", known.join("\n"));
    }
    toolchain::ensure()?;
    let bins = build::binaries(build::Profile::Release, &["halb-bench"])?;
    let bench = bins
        .halb
        .parent()
        .map(|dir| dir.join("halb-bench"))
        .ok_or_else(|| anyhow::anyhow!("no target folder"))?;
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
