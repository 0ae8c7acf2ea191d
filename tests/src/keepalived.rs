//! A real keepalived (the Debian package) as a VRRP peer, run in a
//! namespace in the foreground with its own config and pid files, all
//! removed when it is dropped.

use std::{path::PathBuf, time::Duration};

use crate::{
    netns::{NetNs, unique_name},
    process::ChildGuard,
};

/// One keepalived `vrrp_instance`, as the tests need it.
#[derive(Debug, Clone)]
pub struct Instance {
    /// 2 or 3.
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    /// Seconds; fractions only with version 3.
    pub advert_int: f64,
    pub preempt: bool,
    /// VRRPv2 `auth_type PASS`.
    pub auth_pass: Option<String>,
    pub virtual_address: String,
}

impl Instance {
    /// keepalived.conf for this instance on eth0.
    pub fn config(&self) -> String {
        let auth = self.auth_pass.as_ref().map_or(String::new(), |p| {
            format!("  authentication {{\n    auth_type PASS\n    auth_pass {p}\n  }}\n")
        });
        format!(
            "global_defs {{\n  vrrp_version {}\n  router_id {}\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {}\n  \
             priority {}\n  advert_int {}\n{}{}  virtual_ipaddress {{\n    {}/{}\n  }}\n}}\n",
            self.version,
            unique_name("kad"),
            self.vrid,
            self.priority,
            self.advert_int,
            if self.preempt { "" } else { "  nopreempt\n" },
            auth,
            self.virtual_address,
            if self.virtual_address.contains(':') {
                128
            } else {
                32
            },
        )
    }
}

pub struct Keepalived {
    process: ChildGuard,
    files: Vec<PathBuf>,
}

impl Keepalived {
    /// Starts keepalived's VRRP process in `ns` with `instance`.
    pub fn start(ns: &NetNs, instance: &Instance) -> Self {
        let name = unique_name("keepalived");
        let dir = std::env::temp_dir();
        let conf = dir.join(format!("{name}.conf"));
        let pid = dir.join(format!("{name}.pid"));
        let vrrp_pid = dir.join(format!("{name}.vrrp.pid"));
        std::fs::write(&conf, instance.config()).expect("write keepalived.conf");
        let mut command = ns.command("keepalived");
        command
            .args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
            .arg("--use-file")
            .arg(&conf)
            .arg("--pid")
            .arg(&pid)
            .arg("--vrrp_pid")
            .arg(&vrrp_pid);
        let process = ChildGuard::spawn(&name, command, false);
        let keepalived = Self {
            process,
            files: vec![conf, pid, vrrp_pid],
        };
        keepalived.wait_for_log("Entering BACKUP STATE", Duration::from_secs(10));
        keepalived
    }

    /// Waits until keepalived logs `needle`; panics with its log if not.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.process
            .lines()
            .wait_for(needle, timeout)
            .unwrap_or_else(|| {
                panic!(
                    "keepalived did not log {needle:?} within {timeout:?}; its log:\n{}",
                    self.process.lines().snapshot().join("\n")
                )
            })
    }

    /// How many times keepalived logged `needle` so far.
    pub fn count_log(&self, needle: &str) -> usize {
        self.process
            .lines()
            .snapshot()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Kills keepalived and its VRRP child at once (SIGKILL to its process
    /// group), as a crash or power loss would: no priority-0 advert.
    pub fn crash(&mut self) {
        // SAFETY: signals our own child's process group.
        unsafe { libc::killpg(self.process.pid() as i32, libc::SIGKILL) };
        self.process.kill();
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.process.stop(Duration::from_secs(5));
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}
