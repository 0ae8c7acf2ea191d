//! Health checks: one task per checked backend, TCP or HTTP, at its own
//! interval with jitter, counting rise and fall; each change of health is
//! sent to the supervisor, which updates the datapath.

pub mod http;
pub mod state;
pub mod tcp;

use std::{net::SocketAddr, time::Duration};

use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    backends::{BackendKey, Target},
    config::validate::{BackendConfig, CheckConfig, CheckKind},
};
pub use state::{Health, HealthState};

/// A backend's health changed.
#[derive(Debug, Clone)]
pub struct HealthChange {
    pub backend: BackendKey,
    pub health: Health,
    /// The last check's outcome, for the log line.
    pub detail: String,
}

/// The running checks; dropping it stops them all.
pub struct Checks {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Checks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The backends of one target (a layer-4 service or a layer-7 pool).
#[derive(Debug, Clone)]
pub struct Checked {
    pub target: Target,
    pub backends: Vec<BackendConfig>,
}

impl Checks {
    /// Starts a task for every backend of `checked` that has a check,
    /// each from the health `initial` gives it.
    pub fn start(
        checked: &[Checked],
        changes: mpsc::Sender<HealthChange>,
        initial: impl Fn(&BackendKey) -> Health,
    ) -> Self {
        let mut tasks = Vec::new();
        for group in checked {
            for backend in &group.backends {
                let Some(check) = backend.check.clone() else {
                    continue;
                };
                let probed = SocketAddr::new(backend.address, check.port);
                let key = BackendKey::new(
                    &group.target,
                    SocketAddr::new(backend.address, backend.port),
                );
                let changes = changes.clone();
                let state = HealthState::starting(initial(&key));
                tasks.push(tokio::spawn(async move {
                    run(key, probed, check, state, changes).await;
                }));
            }
        }
        Self { tasks }
    }
}

async fn run(
    backend: BackendKey,
    target: SocketAddr,
    check: CheckConfig,
    mut state: HealthState,
    changes: mpsc::Sender<HealthChange>,
) {
    let mut jitter = Jitter::seeded(&backend.addr);
    // Spread the first checks over one interval, so a hundred backends are
    // not all checked in the same millisecond.
    tokio::time::sleep(jitter.fraction_of(check.interval)).await;
    loop {
        let result = probe(target, &check).await;
        let detail = match &result {
            Ok(()) => "check passed".to_owned(),
            Err(e) => e.clone(),
        };
        if let Some(health) = state.observe(result.is_ok(), check.rise, check.fall) {
            let change = HealthChange {
                backend: backend.clone(),
                health,
                detail,
            };
            if changes.send(change).await.is_err() {
                return;
            }
        }
        // Each interval varies by up to ±10%.
        let interval = check.interval.mul_f64(0.9) + jitter.fraction_of(check.interval / 5);
        tokio::time::sleep(interval).await;
    }
}

async fn probe(target: SocketAddr, check: &CheckConfig) -> Result<(), String> {
    match &check.kind {
        CheckKind::Tcp => tcp::check(target, check.timeout).await,
        CheckKind::Http {
            path,
            expect_status,
            expect_body,
        } => {
            let expect = http::Expect {
                path,
                status: *expect_status,
                body: expect_body.as_deref(),
            };
            http::check(target, check.timeout, &expect).await
        }
    }
}

/// A small xorshift generator: jitter needs spread, not secrecy.
struct Jitter(u64);

impl Jitter {
    fn seeded(backend: &SocketAddr) -> Self {
        use std::hash::BuildHasher;
        // RandomState's keys are random per process: a fresh seed each run.
        Self(std::collections::hash_map::RandomState::new().hash_one(backend) | 1)
    }

    /// A random duration in [0, `of`).
    fn fraction_of(&mut self, of: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        of.mul_f64((self.0 % 10_000) as f64 / 10_000.0)
    }
}
