//! Child processes that are stopped when their guard drops, with their
//! output collected line by line so a test can wait for what they print.

use std::{
    io::{BufRead, BufReader, Read},
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Lines a process printed on stdout and stderr, in arrival order.
#[derive(Default)]
pub struct Lines {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

impl Lines {
    fn push(&self, line: String) {
        self.lines.lock().expect("lines lock").push(line);
        self.changed.notify_all();
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// Waits until a line contains `needle`; returns it, or None on timeout.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lock().expect("lines lock");
        loop {
            if let Some(line) = lines.iter().find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self
                .changed
                .wait_timeout(lines, left)
                .expect("lines lock")
                .0;
        }
    }
}

/// A running child, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct ChildGuard {
    name: String,
    child: Child,
    lines: Arc<Lines>,
    readers: Vec<JoinHandle<()>>,
    echo: bool,
}

impl ChildGuard {
    /// Starts `command` in its own process group (so a terminal's Ctrl-C
    /// reaches only the supervisor, which then stops children in order),
    /// collecting its output. With `echo`, lines are also printed, prefixed
    /// by `name`.
    pub fn spawn(name: &str, mut command: Command, echo: bool) -> Self {
        let mut child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({command:?}): {e}"));
        let lines = Arc::new(Lines::default());
        let mut readers = Vec::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        readers.push(read_lines(name, stdout, Arc::clone(&lines), echo));
        readers.push(read_lines(name, stderr, Arc::clone(&lines), echo));
        Self {
            name: name.to_owned(),
            child,
            lines,
            readers,
            echo,
        }
    }

    pub fn lines(&self) -> &Lines {
        &self.lines
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the child has exited (and with what status).
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill with a pid we own; at worst it fails with ESRCH.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Stops the child: SIGTERM, up to `grace` to exit, then SIGKILL.
    /// Returns its exit status.
    pub fn stop(&mut self, grace: Duration) -> std::process::ExitStatus {
        if let Some(status) = self.try_exit_status() {
            return status;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exit_status() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.echo {
            eprintln!("{}: did not stop within {grace:?}, killing it", self.name);
        }
        let _ = self.child.kill();
        self.child.wait().expect("wait after SIGKILL")
    }

    /// Kills the child at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

fn read_lines(
    name: &str,
    stream: impl Read + Send + 'static,
    lines: Arc<Lines>,
    echo: bool,
) -> JoinHandle<()> {
    let name = name.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if echo {
                eprintln!("[{name}] {line}");
            }
            lines.push(line);
        }
    })
}
