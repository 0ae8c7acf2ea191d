//! Namespaces, XDP and bpffs need root. xtask builds as the invoking user
//! and runs only the privileged half as root, through sudo when needed.

use std::{ffi::OsString, process::Command};

use anyhow::{Context as _, Result};

use crate::{cmd, packages, signals};

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A command for `program` that runs as root: itself when we are root,
/// else `sudo -E program`, with our PATH kept (so cargo's bin folder and
/// bpf-linker resolve) and the sbin folders added (where ip, ethtool and
/// bpftool are, often not on a user's PATH).
pub fn command(program: impl Into<OsString>) -> Command {
    let program = program.into();
    let path = packages::path_with_sbin();
    if is_root() {
        let mut command = Command::new(program);
        command.env("PATH", path);
        return command;
    }
    let mut command = Command::new("sudo");
    let mut assignment = OsString::from("PATH=");
    assignment.push(path);
    command.arg("-E").arg(assignment).arg(program);
    command
}

/// Re-runs this xtask binary as root with `args`, and waits for it even
/// through Ctrl-C, which the child handles.
pub fn xtask_as_root(args: &[OsString]) -> Result<()> {
    let exe = std::env::current_exe().context("locate the xtask binary")?;
    signals::catch_stop();
    cmd::run(command(exe).args(args))
}

/// The value for cargo's `CARGO_TARGET_<TRIPLE>_RUNNER` that runs test
/// binaries as root, or None when we are root already.
pub fn test_runner() -> Option<&'static str> {
    (!is_root()).then_some("sudo -E")
}
