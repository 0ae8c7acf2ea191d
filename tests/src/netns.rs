//! Network namespaces that delete themselves, and ways to run things inside.

use std::{
    fs::File,
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

/// Prefix of every namespace this harness creates.
pub const PREFIX: &str = "halb";

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A name no other test, in this process or another, is using:
/// `halb-{pid}-{n}-{role}`.
pub fn unique_name(role: &str) -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{PREFIX}-{}-{n}-{role}", std::process::id())
}

/// A named network namespace (`ip netns`), deleted on drop, even during a panic.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    file: Arc<File>,
    /// Created by this handle, so deleted with it.
    owned: bool,
}

impl NetNs {
    /// Creates a namespace with a unique name for `role` ("client", "lb1"...).
    pub fn new(role: &str) -> Self {
        Self::named(&unique_name(role))
    }

    /// Creates a namespace with exactly this name.
    pub fn named(name: &str) -> Self {
        run_checked(Command::new("ip").args(["netns", "add", name]));
        let path = PathBuf::from("/run/netns").join(name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let ns = Self {
            name: name.to_owned(),
            file: Arc::new(file),
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A handle on an existing namespace that someone else owns: dropping
    /// it deletes nothing (for threads that need a handle of their own).
    pub fn open(name: &str) -> Self {
        let path = PathBuf::from("/run/netns").join(name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        Self {
            name: name.to_owned(),
            file: Arc::new(file),
            owned: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside this namespace.
    ///
    /// Only the network namespace is entered (setns in the child), unlike
    /// `ip netns exec`, which also remounts /sys and hides bpffs.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        let file = Arc::clone(&self.file);
        // SAFETY: setns is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }

    /// Runs `program args` inside the namespace; panics unless it exits 0.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let output = run_checked(self.command(program).args(args));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `ip -n NAME args`; panics unless it exits 0.
    pub fn ip(&self, args: &[&str]) -> String {
        let output = run_checked(Command::new("ip").arg("-n").arg(&self.name).args(args));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `f` on a thread that has entered this namespace (setns is per
    /// thread), and returns its result. Sockets `f` opens live in the namespace.
    pub fn run<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.enter_current_thread();
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Moves the calling thread into this namespace; for threads made to stay there.
    pub fn enter_current_thread(&self) {
        // SAFETY: a valid namespace fd; setns only affects the calling thread.
        let rc = unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "setns into {}: {}",
            self.name,
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let result = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(result, Ok(s) if s.success()) && !std::thread::panicking() {
            eprintln!("warning: could not delete network namespace {}", self.name);
        }
    }
}

/// Runs `command` and panics, with its stderr, unless it exits 0.
pub fn run_checked(command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim_end()
    );
    output
}
