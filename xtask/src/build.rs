//! Builds the binaries the lab and the tests run.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::cmd;

/// Paths of the built `halb` and `halb-web`.
pub struct Binaries {
    pub halb: PathBuf,
    pub web: PathBuf,
}

/// Which cargo profile to build with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The lab and the tests.
    Debug,
    /// The benchmarks.
    Release,
}

/// Builds `halb` (with its embedded XDP program), `halb-web`, and the
/// whole of each package in `also`; returns where `halb` and `halb-web` are.
pub fn binaries(profile: Profile, also: &[&str]) -> Result<Binaries> {
    let mut command = Command::new("cargo");
    command.args([
        "build",
        "--package",
        "halb-userspace",
        "--bin",
        "halb",
        "--package",
        "halb-tests",
        "--bin",
        "halb-web",
    ]);
    let folder = match profile {
        Profile::Debug => "debug",
        Profile::Release => {
            command.arg("--release");
            "release"
        }
    };
    cmd::run(&mut command)?;
    // A second build: `--bin` above would filter these packages' targets too.
    if !also.is_empty() {
        let mut rest = Command::new("cargo");
        rest.arg("build");
        for package in also {
            rest.args(["--package", package]);
        }
        if profile == Profile::Release {
            rest.arg("--release");
        }
        cmd::run(&mut rest)?;
    }
    let dir = target_dir()?.join(folder);
    Ok(Binaries {
        halb: dir.join("halb"),
        web: dir.join("halb-web"),
    })
}

/// Cargo's target folder: xtask itself runs from `<target>/debug/xtask`.
pub fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locate the xtask binary")?;
    exe.parent()
        .and_then(|profile_dir| profile_dir.parent())
        .map(PathBuf::from)
        .context("the xtask binary is not inside cargo's target folder")
}
