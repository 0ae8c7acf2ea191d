//! A real BIRD 2 (the Debian package) in a namespace, in the foreground,
//! with its own config, control socket and halb include file, all removed
//! when it is dropped.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{
    netns::{NetNs, unique_name},
    process::ChildGuard,
    wait,
};

pub struct Bird {
    process: Option<ChildGuard>,
    ns_name: String,
    pub socket: PathBuf,
    /// The file halb writes, which this BIRD's config includes.
    pub include: PathBuf,
    conf: PathBuf,
}

impl Bird {
    /// Starts BIRD in `ns` with `config` (given the include's path, which
    /// exists, empty, from the start).
    pub fn start(ns: &NetNs, role: &str, config: impl FnOnce(&Path) -> String) -> Self {
        let name = unique_name(role);
        let dir = std::env::temp_dir();
        let include = dir.join(format!("{name}.halb.conf"));
        std::fs::write(&include, "").expect("write the empty include");
        let conf = dir.join(format!("{name}.bird.conf"));
        std::fs::write(&conf, config(&include)).expect("write bird.conf");
        let mut bird = Self {
            process: None,
            ns_name: ns.name().to_owned(),
            socket: dir.join(format!("{name}.ctl")),
            include,
            conf,
        };
        bird.spawn();
        bird
    }

    fn spawn(&mut self) {
        let ns = NetNs::open(&self.ns_name);
        let mut command = ns.command("bird");
        command
            .arg("-f")
            .arg("-c")
            .arg(&self.conf)
            .arg("-s")
            .arg(&self.socket);
        self.process = Some(ChildGuard::spawn("bird", command, false));
        wait::until("BIRD answers", Duration::from_secs(10), || {
            self.try_birdc("show status")
                .filter(|out| out.contains("Daemon is up"))
                .map(|_| ())
                .ok_or_else(|| self.output())
        });
    }

    /// Sends `signal` to BIRD (SIGSTOP: a BIRD that hangs).
    pub fn signal(&self, signal: i32) {
        if let Some(process) = &self.process {
            process.signal(signal);
        }
    }

    /// Stops BIRD (as a crash would: its routes go with its sessions).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts it again after [`Bird::kill`].
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// `birdc COMMAND`'s output; panics if birdc fails.
    pub fn birdc(&self, command: &str) -> String {
        self.try_birdc(command)
            .unwrap_or_else(|| panic!("birdc {command}: no answer; BIRD said: {}", self.output()))
    }

    fn try_birdc(&self, command: &str) -> Option<String> {
        let mut birdc = Command::new("birdc");
        birdc
            .arg("-s")
            .arg(&self.socket)
            .args(command.split_whitespace());
        let out = birdc.output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// What BIRD printed so far.
    pub fn output(&self) -> String {
        self.process
            .as_ref()
            .map_or(String::new(), |p| p.lines().snapshot().join("\n"))
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.kill();
        for file in [&self.socket, &self.include, &self.conf] {
            let _ = std::fs::remove_file(file);
        }
    }
}
