//! Checks, and where missing installs, what building halb-ebpf needs: the
//! nightly toolchain with rust-src, and bpf-linker built against the LLVM
//! that ships inside that nightly toolchain (no LLVM download, no prebuilt
//! binary). Idempotent and quick when everything is present.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, console::say};

/// The toolchain aya-build builds halb-ebpf with.
pub const NIGHTLY: &str = "nightly";

pub fn ensure() -> Result<()> {
    let started = Instant::now();
    if cmd::output(Command::new("rustup").arg("--version")).is_err() {
        bail!(
            "rustup is missing: halb builds its XDP program with a nightly toolchain managed by rustup; install it with your package manager (e.g. `apt-get install rustup`) and run this again"
        );
    }
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    say!(
        "xtask: toolchain ok ({NIGHTLY} + rust-src, bpf-linker) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn ensure_nightly() -> Result<()> {
    if nightly_version().is_ok() {
        return Ok(());
    }
    say!("xtask: installing the {NIGHTLY} toolchain with rust-src (rustup)");
    cmd::run(Command::new("rustup").args([
        "toolchain",
        "install",
        NIGHTLY,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
    .with_context(|| {
        format!("could not install the {NIGHTLY} toolchain; fix: rustup toolchain install {NIGHTLY} --component rust-src")
    })
}

fn ensure_rust_src() -> Result<()> {
    let installed = cmd::output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    say!("xtask: adding rust-src to {NIGHTLY} (needed for -Z build-std=core)");
    cmd::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
        .with_context(|| {
            format!(
                "could not add rust-src; fix: rustup component add rust-src --toolchain {NIGHTLY}"
            )
        })
}

/// `rustc +nightly -vV`.
fn nightly_version() -> Result<String> {
    cmd::output(Command::new("rustc").arg(format!("+{NIGHTLY}")).arg("-vV"))
}

fn ensure_bpf_linker() -> Result<()> {
    // A bpf-linker that starts has found its libLLVM; one built against a
    // nightly that rustup has since replaced fails to start and is rebuilt.
    if cmd::output(Command::new("bpf-linker").arg("--version")).is_ok() {
        return Ok(());
    }
    let llvm_major = llvm_major(&nightly_version()?)?;
    let prefix = llvm_prefix(llvm_major)?;
    say!("xtask: building bpf-linker against {NIGHTLY}'s LLVM {llvm_major} (about a minute, once)");
    cmd::run(
        Command::new("cargo")
            .args(["install", "bpf-linker", "--no-default-features", "--features"])
            .arg(format!("llvm-{llvm_major}"))
            .env("LLVM_PREFIX", &prefix)
            // The host toolchain builds bpf-linker, whatever rust-toolchain says.
            .env_remove("RUSTUP_TOOLCHAIN"),
    )
    .with_context(|| {
        format!(
            "could not build bpf-linker; fix: LLVM_PREFIX={} cargo install bpf-linker --no-default-features --features llvm-{llvm_major}",
            prefix.display()
        )
    })?;
    cmd::output(Command::new("bpf-linker").arg("--version"))
        .context("bpf-linker was installed but does not start: is ~/.cargo/bin on PATH?")?;
    Ok(())
}

/// LLVM's major version from `rustc -vV` ("LLVM version: 22.1.4").
fn llvm_major(version: &str) -> Result<u32> {
    version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("no LLVM version in `rustc +{NIGHTLY} -vV`:\n{version}"))
}

/// A folder whose `lib/` holds `libLLVM.so` (what bpf-linker's build links
/// against) and the library's soname (what the built binary loads through
/// its RUNPATH), both linking to the nightly toolchain's own libLLVM.
fn llvm_prefix(llvm_major: u32) -> Result<PathBuf> {
    let sysroot = cmd::output(
        Command::new("rustc")
            .arg(format!("+{NIGHTLY}"))
            .args(["--print", "sysroot"]),
    )?;
    let toolchain_lib = Path::new(sysroot.trim()).join("lib");
    let soname_prefix = format!("libLLVM.so.{llvm_major}");
    let library = std::fs::read_dir(&toolchain_lib)
        .with_context(|| format!("read {}", toolchain_lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with(&soname_prefix))
        .with_context(|| {
            format!(
                "{} has no {soname_prefix}* library: reinstall it with `rustup toolchain install {NIGHTLY} --force`",
                toolchain_lib.display()
            )
        })?;
    let target = toolchain_lib.join(&library);

    let prefix = cargo_home()?
        .join("halb")
        .join(format!("llvm-{llvm_major}"));
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("create {}", lib.display()))?;
    for link_name in ["libLLVM.so", library.as_str()] {
        let link = lib.join(link_name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("link {} -> {}", link.display(), target.display()))?;
    }
    Ok(prefix)
}

fn cargo_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(home));
    }
    let home = std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_rustc_vv() {
        let vv = "rustc 1.97.0-nightly\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(vv).unwrap(), 22);
        assert!(llvm_major("rustc 1.0\n").is_err());
    }
}
