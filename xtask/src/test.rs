//! `cargo xtask test`: packages, toolchain, lint, build, then every test,
//! as root.

use std::{collections::BTreeSet, process::Command, time::Instant};

use anyhow::{Result, bail};

use crate::{bpffs, build, cmd, console::say, packages, privilege, toolchain};

pub fn run(test_args: &[String]) -> Result<()> {
    let started = Instant::now();
    packages::ensure(
        "cargo xtask test",
        &[packages::HARNESS, packages::TEST_PEERS],
    )?;
    toolchain::ensure()?;
    lint()?;
    let bins = build::binaries(build::Profile::Debug, &[])?;

    bpffs::ensure()?;
    let before = leftovers();
    let mut command = Command::new("cargo");
    command
        .args(["test", "--workspace", "--exclude", "halb-ebpf"])
        .env("HALB_BIN", &bins.halb)
        .env("PATH", packages::path_with_sbin());
    if let Some(runner) = privilege::test_runner() {
        command.env(
            format!("CARGO_TARGET_{}_RUNNER", host_triple_env()?),
            runner,
        );
    }
    if !test_args.is_empty() {
        command.arg("--").args(test_args);
    }
    let result = cmd::run(&mut command);

    // Tests must clean up after themselves, even when they fail.
    let leaked: Vec<_> = leftovers().difference(&before).cloned().collect();
    result?;
    if !leaked.is_empty() {
        bail!("the tests left these behind: {leaked:?}");
    }
    say!(
        "xtask: all tests passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo fmt --check` and clippy with warnings denied, on the host crates
/// and on the XDP program for its own target.
fn lint() -> Result<()> {
    cmd::run(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))?;
    cmd::run(Command::new("cargo").args([
        "clippy",
        "--workspace",
        "--exclude",
        "halb-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    cmd::run(
        Command::new("cargo")
            .arg(format!("+{}", toolchain::NIGHTLY))
            .args([
                "clippy",
                "--package",
                "halb-ebpf",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--",
                "-D",
                "warnings",
            ])
            .env_remove("RUSTUP_TOOLCHAIN"),
    )
}

/// Namespaces and bpffs entries whose names say they are halb's.
fn leftovers() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    if let Ok(out) = cmd::output(Command::new("ip").args(["netns", "list"])) {
        found.extend(
            out.lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with("halb"))
                .map(|n| format!("netns {n}")),
        );
    }
    for entry in std::fs::read_dir("/sys/fs/bpf")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("halb") {
            found.insert(format!("/sys/fs/bpf/{name}"));
        }
    }
    found
}

/// The host triple in the form cargo's `CARGO_TARGET_<TRIPLE>_RUNNER` wants.
fn host_triple_env() -> Result<String> {
    let vv = cmd::output(Command::new("rustc").arg("-vV"))?;
    let host = vv
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .ok_or_else(|| anyhow::anyhow!("no host in `rustc -vV`"))?;
    Ok(host.to_uppercase().replace(['-', '.'], "_"))
}
