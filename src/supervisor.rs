//! Supervised background workers: every loop of the server runs here under a name, is restarted
//! after a panic (logged, counted in `billing_worker_restarts_total{worker}`), shows in
//! `/readyz` while it is not running, and is asked to stop on shutdown, between two jobs.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Test-only: the worker of this name panics once, when it first starts, so the integration
/// tests can watch a real panic being caught, counted and followed by a restart. Inert unless
/// set; never set it in production.
pub const TEST_PANIC_ENV: &str = "BILLING_TEST_PANIC_WORKER";

/// A worker that ran this long without panicking starts its backoff again from the shortest.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Restart counts by worker name.
pub type Restarts = Family<[(&'static str, &'static str); 1], Counter>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    /// Panicked; waiting out its backoff before the next start.
    Restarting,
    /// Returned of its own accord (e.g. the Kubernetes poller without a cluster): nothing to run.
    Off,
    /// Returned after the shutdown request.
    Stopped,
}

/// The server's workers, their states and the shutdown request they all observe.
pub struct Supervisor {
    stop: CancellationToken,
    states: Arc<Mutex<BTreeMap<&'static str, State>>>,
    tasks: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
    restarts: Restarts,
}

impl Supervisor {
    pub fn new(restarts: Restarts) -> Self {
        Supervisor {
            stop: CancellationToken::new(),
            states: Arc::default(),
            tasks: Mutex::default(),
            restarts,
        }
    }

    /// Runs `worker(stop)` under `name` until it returns, starting it again after each panic.
    /// The worker is expected to return soon after `stop` is cancelled.
    pub fn spawn<F, Fut>(&self, name: &'static str, worker: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        let states = self.states.clone();
        let restarts = self.restarts.clone();
        let set = move |state| {
            states
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name, state);
        };
        set(State::Running);
        // Shown at 0 from the start, so an alert on its increase has a baseline.
        let _ = restarts.get_or_create(&[("worker", name)]);
        let mut panic_once = std::env::var(TEST_PANIC_ENV).is_ok_and(|w| w == name);
        let supervise = async move {
            let mut backoff = Backoff::default();
            loop {
                set(State::Running);
                let started = Instant::now();
                let run = worker(stop.clone());
                let inject = std::mem::take(&mut panic_once);
                let outcome = tokio::spawn(async move {
                    assert!(!inject, "{TEST_PANIC_ENV} asked this worker to panic once");
                    run.await
                })
                .await;
                match outcome {
                    Ok(()) if stop.is_cancelled() => {
                        set(State::Stopped);
                        tracing::info!(worker = name, "worker stopped");
                        return;
                    }
                    Ok(()) => {
                        set(State::Off);
                        tracing::info!(worker = name, "worker has nothing to do and ended");
                        return;
                    }
                    Err(err) => {
                        set(State::Restarting);
                        restarts.get_or_create(&[("worker", name)]).inc();
                        let delay = backoff.next(started.elapsed());
                        tracing::error!(worker = name, error = %err, retry_in_ms = delay.as_millis() as u64, "worker died; restarting");
                        if stop
                            .run_until_cancelled(tokio::time::sleep(delay))
                            .await
                            .is_none()
                        {
                            set(State::Stopped);
                            return;
                        }
                    }
                }
            }
        };
        let handle = tokio::spawn(supervise);
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name, handle));
    }

    /// Every worker's state, by name.
    pub fn states(&self) -> BTreeMap<&'static str, State> {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why readiness is degraded by a worker, if one is not running.
    pub fn problem(&self) -> Option<String> {
        let down: Vec<&str> = self
            .states()
            .into_iter()
            .filter(|(_, s)| *s == State::Restarting)
            .map(|(name, _)| name)
            .collect();
        (!down.is_empty()).then(|| format!("worker not running: {}", down.join(", ")))
    }

    /// Asks every worker to stop after its current job and waits for them until `deadline`.
    /// Returns the names of those still running then (their claimed jobs keep their leases,
    /// which expire).
    pub async fn shutdown(&self, deadline: Instant) -> Vec<&'static str> {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let mut late = Vec::new();
        for (name, mut task) in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                late.push(name);
            }
        }
        late
    }

    /// Cancelled when shutdown begins.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// The wait before restarting a panicked worker: doubles from 1 s up to a minute, so a worker
/// that panics at once on every start neither spins nor waits long after a one-off panic.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= STABLE_AFTER {
            self.failures = 0;
        }
        let delay = Duration::from_secs(1 << self.failures.min(6)).min(Duration::from_secs(60));
        self.failures += 1;
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_a_stable_run() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(10);
        let waits: Vec<u64> = (0..8).map(|_| b.next(quick).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.next(STABLE_AFTER).as_secs(), 1);
    }

    // One thread: the supervisor cannot move on between the test's checks of its state.
    #[tokio::test]
    async fn a_panicking_worker_is_restarted_counted_and_stopped() {
        let restarts = Restarts::default();
        let sup = Supervisor::new(restarts.clone());
        let starts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = starts.clone();
        sup.spawn("flaky", move |stop| {
            let first = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            async move {
                assert!(!first, "first run panics");
                stop.cancelled().await;
            }
        });
        let count = || restarts.get_or_create(&[("worker", "flaky")]).get();
        while count() < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // In its backoff: not running, and readiness says which worker.
        assert_eq!(sup.states()["flaky"], State::Restarting);
        assert_eq!(sup.problem().as_deref(), Some("worker not running: flaky"));
        while starts.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(count(), 1);
        assert_eq!(sup.states()["flaky"], State::Running);
        assert_eq!(sup.problem(), None);
        let late = sup.shutdown(Instant::now() + Duration::from_secs(1)).await;
        assert!(late.is_empty());
        assert_eq!(sup.states()["flaky"], State::Stopped);
    }
}
