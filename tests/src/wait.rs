//! Waiting for events instead of the clock: poll until a condition holds,
//! with a generous deadline; check that a condition keeps holding for a
//! while (a negative check, made all along rather than once at the end);
//! and keep requests going until the event a test waits for has happened.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    netns::NetNs,
    traffic::{Sample, Source, request},
};

/// How often conditions are polled. The sleeps below are the pause
/// between two looks at the condition, never a wait that stands for the
/// event: every loop checks the condition itself again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` until it returns `Ok`, and returns its value. `Err`
/// says what was seen instead; after `timeout` the last one is in the
/// panic, with what was awaited.
#[track_caller]
pub fn until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; last seen: {seen}"
            ),
        }
        std::thread::sleep(POLL);
    }
}

/// Checks `check` again and again for `span` (first at once, last after
/// `span`), and panics at the first failure with what it saw.
#[track_caller]
pub fn holds(what: &str, span: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let started = Instant::now();
    loop {
        if let Err(seen) = check() {
            panic!("{what}: broken after {:?}: {seen}", started.elapsed());
        }
        if started.elapsed() >= span {
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// Requests on new connections from a namespace, `concurrency` at a time,
/// until stopped: load that lasts until the event under test has happened,
/// however long that takes, rather than for a guessed time.
pub struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    workers: Vec<JoinHandle<()>>,
}

/// A worker's pause between requests, leaving the CPUs some room for the
/// agent under test.
const PAUSE: Duration = Duration::from_millis(2);

impl Load {
    /// Starts `concurrency` workers in `ns`, each sending `GET /` to
    /// `target` on a new connection, one after another.
    pub fn start(ns: &NetNs, target: SocketAddr, concurrency: usize) -> Self {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..concurrency)
            .map(|_| {
                let ns = NetNs::open(ns.name());
                let stop = Arc::clone(&stop);
                let samples = Arc::clone(&samples);
                std::thread::spawn(move || {
                    ns.enter_current_thread();
                    while !stop.load(Ordering::Relaxed) {
                        let at = started.elapsed();
                        let result = request(target, Source::Ephemeral, 0);
                        samples
                            .lock()
                            .expect("samples lock")
                            .push(Sample { at, result });
                        std::thread::sleep(PAUSE);
                    }
                })
            })
            .collect();
        Self {
            started,
            stop,
            samples,
            workers,
        }
    }

    /// Time since the load started: the clock of [`Sample::at`], to tell
    /// requests begun before an event from those begun after it.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Requests begun at `since` or later (on [`Load::elapsed`]'s clock)
    /// that were answered, by `backend` when one is named.
    pub fn answered(&self, since: Duration, backend: Option<&str>) -> usize {
        self.samples
            .lock()
            .expect("samples lock")
            .iter()
            .filter(|s| s.at >= since)
            .filter(|s| {
                s.result
                    .as_deref()
                    .is_ok_and(|b| backend.is_none_or(|name| b == name))
            })
            .count()
    }

    /// Every request finished so far, in the order they finished.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples lock").clone()
    }

    /// Stops the workers, lets their requests in flight finish, and returns
    /// every request's outcome in the order they started.
    pub fn stop(mut self) -> Vec<Sample> {
        self.join();
        let mut samples = std::mem::take(&mut *self.samples.lock().expect("samples lock"));
        samples.sort_by_key(|s| s.at);
        samples
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers.drain(..) {
            if let Err(panic) = worker.join()
                && !std::thread::panicking()
            {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.join();
    }
}
