//! `cargo xtask bench NAME`: release builds, then the benchmark runner as
//! root. Figures are printed next to references measured in the same run.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{build, cmd, privilege, signals, toolchain};

/// The benchmarks there are, with what each measures.
pub const BENCHMARKS: &[(&str, &str)] = &[(
    "datapath",
    "ns/packet through BPF_PROG_TEST_RUN next to a trivial XDP_TX program; requests/s through halb in each mode next to kernel forwarding and haproxy",
)];

pub fn run(name: &str, seconds: u32) -> Result<()> {
    if !BENCHMARKS.iter().any(|(n, _)| *n == name) {
        let known: Vec<String> = BENCHMARKS
            .iter()
            .map(|(n, what)| format!("  {n}: {what}"))
            .collect();
        bail!("no benchmark {name:?}; there are:\n{}", known.join("\n"));
    }
    toolchain::ensure()?;
    cmd::run(Command::new("cargo").args([
        "build",
        "--release",
        "--package",
        "halb-userspace",
        "--bin",
        "halb",
        "--package",
        "halb-tests",
        "--bin",
        "halb-web",
        "--package",
        "halb-bench",
    ]))?;
    let release = build::target_dir()?.join("release");
    signals::catch_stop();
    cmd::run(
        privilege::command(release.join("halb-bench"))
            .arg(name)
            .arg("--halb")
            .arg(release.join("halb"))
            .arg("--web")
            .arg(release.join("halb-web"))
            .arg("--seconds")
            .arg(seconds.to_string()),
    )
}
