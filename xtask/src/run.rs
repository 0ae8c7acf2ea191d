//! `cargo xtask run`: the lab, or halb on this host with a config.

use anyhow::Result;

use crate::{build, cmd, packages, privilege, signals, toolchain};

pub fn run(halb_args: &[String], scenario: &str) -> Result<()> {
    let lab = halb_args.is_empty();
    if lab {
        crate::lab::check_scenario(scenario)?;
        packages::ensure(
            "cargo xtask run",
            &[
                packages::HARNESS,
                packages::LAB_GUIDE,
                crate::lab::needs(scenario),
            ],
        )?;
    }
    toolchain::ensure()?;
    let bins = build::binaries(build::Profile::Debug, &[])?;
    if lab {
        return privilege::xtask_as_root(&[
            "lab".into(),
            "--halb".into(),
            bins.halb.into(),
            "--web".into(),
            bins.web.into(),
            "--scenario".into(),
            scenario.into(),
        ]);
    }
    // halb handles Ctrl-C itself (detach, unpin); wait for it to finish.
    signals::catch_stop();
    cmd::run(privilege::command(&bins.halb).arg("run").args(halb_args))
}
