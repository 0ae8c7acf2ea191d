//! The halb agent run as a real process inside a namespace, with its own
//! config file and bpffs pin folder, both removed when it is dropped.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    netns::{NetNs, unique_name},
    process::ChildGuard,
};

/// The `halb` binary: `$HALB_BIN` (set by `cargo xtask test`), else the one
/// cargo built next to this test executable.
pub fn halb_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("HALB_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/halb
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("halb"))
        .expect("test executable has a target folder");
    assert!(
        candidate.exists(),
        "no halb binary at {}: run the tests with `cargo xtask test`, or `cargo build -p halb-userspace` first",
        candidate.display()
    );
    candidate
}

/// Where every test agent serves its metrics, inside its namespace.
pub const METRICS: &str = "127.0.0.1:9723";

/// Where bpffs is mounted; the agent mounts it if missing.
pub const BPFFS: &str = "/sys/fs/bpf";

/// A running `halb run`.
pub struct Agent {
    // Field order is drop order: stop the process before removing its files.
    pub process: ChildGuard,
    pub pin_dir: PathBuf,
    /// The agent's control socket (`halb status --socket ...`).
    pub control_socket: PathBuf,
    config_path: PathBuf,
    name: String,
    halb: PathBuf,
    echo: bool,
    /// A successor took over the pins and files: leave them on drop.
    handed_over: bool,
}

impl Agent {
    /// Starts halb in `ns` with the config `make_config(pin_dir)` returns,
    /// `pin_dir` being a fresh folder in bpffs for this agent alone.
    pub fn start(ns: &NetNs, role: &str, make_config: impl FnOnce(&Path) -> String) -> Self {
        let name = unique_name(role);
        let pin_dir = Path::new(BPFFS).join(&name);
        Self::start_named(ns, &name, &halb_bin(), pin_dir, false, make_config)
    }

    /// Like [`Agent::start`] with a chosen binary and pin folder; `echo`
    /// prints its log.
    pub fn start_named(
        ns: &NetNs,
        name: &str,
        halb: &Path,
        pin_dir: PathBuf,
        echo: bool,
        make_config: impl FnOnce(&Path) -> String,
    ) -> Self {
        let config_path = std::env::temp_dir().join(format!("{name}.toml"));
        let control_socket = std::env::temp_dir().join(format!("{name}.sock"));
        // Every agent gets its own control socket, so agents run side by
        // side; metrics listen on the agent's namespace's own loopback.
        let config = format!(
            "{}\n[admin]\ncontrol_socket = \"{}\"\nmetrics = \"{METRICS}\"\n",
            make_config(&pin_dir),
            control_socket.display()
        );
        std::fs::write(&config_path, config)
            .unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
        Self {
            process: spawn(ns, name, halb, &config_path, echo, &[]),
            pin_dir,
            control_socket,
            config_path,
            name: name.to_owned(),
            halb: halb.to_owned(),
            echo,
            handed_over: false,
        }
    }

    /// Kills the agent with SIGKILL, as a crash would. Its pins stay: the
    /// datapath keeps forwarding without it.
    pub fn crash(&mut self) {
        self.process.kill();
    }

    /// Starts the next agent in `ns` with the same config and pins, as an
    /// operator restarting halb would; it adopts what this one left.
    pub fn restart(self, ns: &NetNs) -> Agent {
        self.restart_with(ns, &[])
    }

    /// [`Agent::restart`] with extra arguments for `halb run`.
    pub fn restart_with(mut self, ns: &NetNs, extra: &[&str]) -> Agent {
        self.process.stop(Duration::from_secs(5));
        self.handed_over = true;
        Agent {
            process: spawn(
                ns,
                &self.name,
                &self.halb,
                &self.config_path,
                self.echo,
                extra,
            ),
            pin_dir: self.pin_dir.clone(),
            control_socket: self.control_socket.clone(),
            config_path: self.config_path.clone(),
            name: self.name.clone(),
            halb: self.halb.clone(),
            echo: self.echo,
            handed_over: false,
        }
    }

    /// Waits until the agent logs `needle`; panics with its log on timeout
    /// or as soon as the agent exits.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let slice = Duration::from_millis(100);
            if let Some(line) = self.process.lines().wait_for(needle, slice) {
                return line;
            }
            let exited = self.process.try_exit_status();
            if exited.is_some() || std::time::Instant::now() > deadline {
                panic!(
                    "halb did not log {needle:?} ({}); its log:\n{}",
                    match exited {
                        Some(status) => format!("it exited: {status}"),
                        None => format!("waited {timeout:?}"),
                    },
                    self.process.lines().snapshot().join("\n")
                );
            }
        }
    }

    /// The config file the agent reads (rewrite it, then reload).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Runs `halb ARGS --socket <this agent's>` (the agent's own binary)
    /// and returns its stdout; panics unless it succeeds.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = crate::netns::run_checked(
            std::process::Command::new(&self.halb)
                .args(args)
                .arg("--socket")
                .arg(&self.control_socket),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the datapath is attached.
    pub fn wait_attached(&mut self) {
        self.wait_for_log("datapath attached", Duration::from_secs(20));
    }
}

fn spawn(
    ns: &NetNs,
    name: &str,
    halb: &Path,
    config_path: &Path,
    echo: bool,
    extra: &[&str],
) -> ChildGuard {
    let mut command = ns.command(halb.to_str().expect("UTF-8 path"));
    command
        .arg("run")
        .args(extra)
        .arg("--config")
        .arg(config_path)
        .env(
            "RUST_LOG",
            std::env::var("HALB_TEST_LOG").unwrap_or("info".into()),
        );
    ChildGuard::spawn(name, command, echo)
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.process.stop(Duration::from_secs(5));
        if std::thread::panicking() {
            // The test failed: its agents' logs say why.
            eprintln!(
                "--- log of halb {} ---\n{}",
                self.name,
                self.process.lines().snapshot().join("\n")
            );
        }
        if self.handed_over {
            return;
        }
        let _ = std::fs::remove_file(&self.config_path);
        let _ = std::fs::remove_file(&self.control_socket);
        // A clean stop unpins; after a crash (or a kill in a test) the pins remain.
        if self.pin_dir.exists() {
            let _ = std::fs::remove_dir_all(&self.pin_dir);
        }
    }
}
