//! The programs each verb runs that come from Debian packages, and their
//! installation: what is missing is installed with apt-get, as root or
//! through sudo; where that cannot be done, one sentence names the packages
//! and the command that installs them.

use std::{
    collections::BTreeSet,
    ffi::OsString,
    io::IsTerminal as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Result, bail};

use crate::{console::say, privilege};

/// A program xtask or what it starts runs, and the Debian package it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub program: &'static str,
    pub package: &'static str,
}

const fn need(program: &'static str, package: &'static str) -> Need {
    Need { program, package }
}

/// What the namespace harness runs, for the lab, the tests and the benches
/// alike: `ip` (namespaces, veth, bridge), `ethtool` (offloads on veth
/// ends, topo.rs), `sysctl` (arp_accept, forwarding).
pub const HARNESS: &[Need] = &[
    need("ip", "iproute2"),
    need("ethtool", "ethtool"),
    need("sysctl", "procps"),
];

/// What the lab's guide tells the user to type, besides `ip`.
pub const LAB_GUIDE: &[Need] = &[
    need("curl", "curl"),
    need("ping", "iputils-ping"),
    need("bpftool", "bpftool"),
];

/// What the integration tests run besides the harness: the lab test's
/// commands, bpftool map dumps, `nstat`, keepalived as a VRRP peer, haproxy,
/// nft to block VRRP (split brain), BIRD as the router and each node's
/// routing daemon (BGP).
pub const TEST_PEERS: &[Need] = &[
    need("curl", "curl"),
    need("ping", "iputils-ping"),
    need("bpftool", "bpftool"),
    need("nstat", "iproute2"),
    need("keepalived", "keepalived"),
    need("haproxy", "haproxy"),
    need("nft", "nftables"),
    need("bird", "bird2"),
    need("birdc", "bird2"),
];

/// The load generator of the datapath and l7 benchmarks.
pub const WRK: Need = need("wrk", "wrk");
/// The reference proxy of the datapath and l7 benchmarks.
pub const HAPROXY: Need = need("haproxy", "haproxy");
/// The router and the nodes' routing daemon of the scale benchmark.
pub const BIRD: Need = need("bird", "bird2");
/// The reference VRRP pair of the failover benchmark.
pub const KEEPALIVED: Need = need("keepalived", "keepalived");

/// Folders a program is looked up in: PATH, then the sbin folders a
/// user's PATH often lacks (ip, ethtool, bpftool, sysctl live there).
pub fn search_dirs(path: Option<OsString>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for sbin in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        if !dirs.iter().any(|d| d == Path::new(sbin)) {
            dirs.push(sbin.into());
        }
    }
    dirs
}

/// PATH with the sbin folders added, for the commands xtask starts.
pub fn path_with_sbin() -> OsString {
    std::env::join_paths(search_dirs(std::env::var_os("PATH"))).unwrap_or_default()
}

/// The needs whose program is in none of `dirs`, each program once.
pub fn missing(needs: &[&[Need]], dirs: &[PathBuf]) -> Vec<Need> {
    let mut seen = BTreeSet::new();
    needs
        .iter()
        .flat_map(|n| n.iter().copied())
        .filter(|n| seen.insert(n.program))
        .filter(|n| !dirs.iter().any(|d| is_executable(&d.join(n.program))))
        .collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The packages `missing` come in, each once, in a stable order.
pub fn packages(missing: &[Need]) -> Vec<&'static str> {
    let set: BTreeSet<&str> = missing.iter().map(|n| n.package).collect();
    set.into_iter().collect()
}

/// How apt-get can be run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installer {
    /// We are root.
    Root,
    /// Through sudo; `prompt`: sudo may ask for a password (stdin is a
    /// terminal), else it must not (`sudo -n`).
    Sudo { prompt: bool },
}

/// Why packages could not be installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoAptGet,
    NoSudo,
    Failed(String),
}

/// The command that installs `packages`, as the user should type it.
pub fn install_line(packages: &[&str], root: bool) -> String {
    format!(
        "{}apt-get install -y --no-install-recommends {}",
        if root { "" } else { "sudo " },
        packages.join(" ")
    )
}

/// The one sentence xtask stops with when `missing` could not be installed;
/// `what` is the command that needs them (`cargo xtask run`).
pub fn sentence(what: &str, missing: &[Need], refusal: &Refusal, root: bool) -> String {
    let programs: Vec<&str> = missing.iter().map(|n| n.program).collect();
    let packages = packages(missing);
    let needs = format!(
        "{what} needs {} from the Debian package{} {}",
        programs.join(", "),
        if packages.len() == 1 { "" } else { "s" },
        packages.join(" ")
    );
    match refusal {
        Refusal::NoAptGet => format!(
            "{needs}, and this system has no apt-get: install the programs with its package manager and run this again"
        ),
        Refusal::NoSudo => format!(
            "{needs}, which xtask cannot install without root or sudo: run `{}` as root and run this again",
            install_line(&packages, true)
        ),
        Refusal::Failed(why) => format!(
            "{needs}, which could not be installed ({why}): run `{}` and run this again",
            install_line(&packages, root)
        ),
    }
}

/// Makes sure the programs in `needs` are installed, installing their
/// packages when missing; `what` is the command that needs them.
pub fn ensure(what: &str, needs: &[&[Need]]) -> Result<()> {
    let dirs = search_dirs(std::env::var_os("PATH"));
    let missing = missing(needs, &dirs);
    if missing.is_empty() {
        return Ok(());
    }
    let root = privilege::is_root();
    let installer = if !exists(&dirs, "apt-get") {
        Err(Refusal::NoAptGet)
    } else if root {
        Ok(Installer::Root)
    } else if exists(&dirs, "sudo") {
        Ok(Installer::Sudo {
            prompt: std::io::stdin().is_terminal(),
        })
    } else {
        Err(Refusal::NoSudo)
    };
    let result = installer.and_then(|installer| install(installer, &packages(&missing)));
    if let Err(refusal) = result {
        bail!(sentence(what, &missing, &refusal, root));
    }
    let still = self::missing(&[&missing], &dirs);
    if !still.is_empty() {
        let names: Vec<&str> = still.iter().map(|n| n.program).collect();
        let refusal = Refusal::Failed(format!(
            "after apt-get, {} is still in none of {}",
            names.join(", "),
            std::env::join_paths(&dirs)
                .unwrap_or_default()
                .to_string_lossy()
        ));
        bail!(sentence(what, &still, &refusal, root));
    }
    Ok(())
}

fn exists(dirs: &[PathBuf], program: &str) -> bool {
    dirs.iter().any(|d| is_executable(&d.join(program)))
}

/// `apt-get install`, after `apt-get update` when the package lists are
/// empty or do not know a package, and once more after an update when the
/// first try fails (lists older than the mirror).
fn install(installer: Installer, packages: &[&str]) -> Result<(), Refusal> {
    say!(
        "xtask: installing {} with apt-get{}",
        packages.join(" "),
        match installer {
            Installer::Root => "",
            Installer::Sudo { .. } => " through sudo",
        }
    );
    let mut updated = false;
    if !lists_know(packages) {
        apt(installer, &["update"])?;
        updated = true;
    }
    let mut install = vec![
        "install",
        "-y",
        "--no-install-recommends",
        // Wait for another apt (unattended-upgrades) instead of failing.
        "-o",
        "DPkg::Lock::Timeout=120",
    ];
    install.extend_from_slice(packages);
    match apt(installer, &install) {
        Err(_) if !updated => {
            apt(installer, &["update"])?;
            apt(installer, &install)
        }
        result => result,
    }
}

/// Whether apt's package lists know every one of `packages`.
fn lists_know(packages: &[&str]) -> bool {
    Command::new("apt-cache")
        .args(["show", "--no-all-versions"])
        .args(packages)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `apt-get -q ARGS` non-interactively, as root.
fn apt(installer: Installer, args: &[&str]) -> Result<(), Refusal> {
    let mut command = match installer {
        Installer::Root => Command::new("apt-get"),
        Installer::Sudo { prompt } => {
            let mut sudo = Command::new("sudo");
            if !prompt {
                sudo.arg("-n");
            }
            // `env` sets the variable whatever sudoers keeps of ours.
            sudo.args(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
            sudo
        }
    };
    command
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("PATH", path_with_sbin())
        .arg("-q")
        .args(args);
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(Refusal::Failed(format!(
            "`{}apt-get {}` failed, {status}",
            match installer {
                Installer::Root => "",
                Installer::Sudo { .. } => "sudo ",
            },
            args[0]
        ))),
        Err(e) => Err(Refusal::Failed(format!(
            "cannot start {}: {e}",
            command.get_program().to_string_lossy()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder holding an executable file for each of `programs`.
    fn bin_dir(name: &str, programs: &[&str]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("xtask-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create bin dir");
        for program in programs {
            let file = dir.join(program);
            std::fs::write(&file, "#!/bin/sh\n").expect("write program");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .expect("chmod program");
        }
        dir
    }

    #[test]
    fn missing_programs_and_their_packages() {
        let dir = bin_dir("missing", &["ip", "curl"]);
        // Not executable: does not count.
        std::fs::write(dir.join("ping"), "").expect("write ping");
        let missing = missing(&[HARNESS, LAB_GUIDE], std::slice::from_ref(&dir));
        let programs: Vec<&str> = missing.iter().map(|n| n.program).collect();
        assert_eq!(programs, ["ethtool", "sysctl", "ping", "bpftool"]);
        assert_eq!(
            packages(&missing),
            ["bpftool", "ethtool", "iputils-ping", "procps"]
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_program_found_in_any_folder_is_not_missing() {
        let a = bin_dir("a", &["ip", "ethtool"]);
        let b = bin_dir("b", &["sysctl", "nstat"]);
        assert!(missing(&[HARNESS], &[a.clone(), b.clone()]).is_empty());
        // nstat is iproute2 too, and bird and birdc are both bird2: one
        // package each.
        let c = bin_dir("c", &[]);
        let all = missing(&[HARNESS, TEST_PEERS], std::slice::from_ref(&c));
        assert_eq!(all.iter().filter(|n| n.package == "iproute2").count(), 2);
        assert_eq!(all.iter().filter(|n| n.package == "bird2").count(), 2);
        assert_eq!(
            packages(&all),
            [
                "bird2",
                "bpftool",
                "curl",
                "ethtool",
                "haproxy",
                "iproute2",
                "iputils-ping",
                "keepalived",
                "nftables",
                "procps"
            ]
        );
        for dir in [a, b, c] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn sbin_folders_are_searched_after_path() {
        let dirs = search_dirs(Some("/home/u/bin:/usr/bin:/sbin".into()));
        let dirs: Vec<&str> = dirs.iter().map(|d| d.to_str().expect("UTF-8")).collect();
        assert_eq!(
            dirs,
            [
                "/home/u/bin",
                "/usr/bin",
                "/sbin",
                "/usr/local/sbin",
                "/usr/sbin"
            ]
        );
        assert_eq!(search_dirs(None).len(), 3);
    }

    #[test]
    fn the_sentence_names_packages_and_the_command() {
        let missing = [need("ethtool", "ethtool"), need("bpftool", "bpftool")];
        assert_eq!(
            sentence("cargo xtask run", &missing, &Refusal::NoSudo, false),
            "cargo xtask run needs ethtool, bpftool from the Debian packages bpftool ethtool, which xtask \
             cannot install without root or sudo: run `apt-get install -y --no-install-recommends \
             bpftool ethtool` as root and run this again"
        );
        let failed = Refusal::Failed("sudo: a password is required".into());
        assert_eq!(
            sentence("cargo xtask test", &missing[..1], &failed, false),
            "cargo xtask test needs ethtool from the Debian package ethtool, which could not be \
             installed (sudo: a password is required): run `sudo apt-get install -y \
             --no-install-recommends ethtool` and run this again"
        );
        assert!(
            sentence("the lab", &missing, &failed, true)
                .contains("run `apt-get install -y --no-install-recommends bpftool ethtool`")
        );
        let none = sentence("the lab", &missing, &Refusal::NoAptGet, true);
        assert!(none.contains("no apt-get"), "{none}");
        for s in [none, sentence("x", &missing, &failed, true)] {
            assert_eq!(s.matches(". ").count(), 0, "one sentence: {s}");
        }
    }
}
