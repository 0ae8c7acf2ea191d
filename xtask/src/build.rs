//! Builds the binaries the lab and the tests run.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::cmd;

/// Paths of the built `halb` and `halb-web`.
pub struct Binaries {
    pub halb: PathBuf,
    pub web: PathBuf,
}

/// Builds `halb` (with its embedded XDP program) and `halb-web`.
pub fn binaries() -> Result<Binaries> {
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
    cmd::run(&mut command)?;
    let dir = target_dir()?.join("debug");
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
