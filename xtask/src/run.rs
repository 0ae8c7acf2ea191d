//! `cargo xtask run`: the lab, or halb on this host with a config.

use anyhow::Result;

use crate::{
    build::{self, Profile},
    cmd, privilege, toolchain,
};

pub fn run(halb_args: &[String]) -> Result<()> {
    toolchain::ensure()?;
    let bins = build::binaries(Profile::Debug)?;
    if halb_args.is_empty() {
        return privilege::xtask_as_root(&[
            "lab".into(),
            "--halb".into(),
            bins.halb.into(),
            "--web".into(),
            bins.web.into(),
        ]);
    }
    cmd::run(privilege::command(&bins.halb).arg("run").args(halb_args))
}
