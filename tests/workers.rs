//! Supervised workers in the real server: a worker that panics is restarted, counted in
//! `/metrics` and back at work; SIGTERM stops every worker after its current job and the process
//! exits 0 within 10 s, leaving nothing queued behind that the next start does not finish.

mod common;

use std::time::{Duration, Instant};

use billing::supervisor::TEST_PANIC_ENV;
use common::{Backend, TestServer};

const WAIT: Duration = Duration::from_secs(60);

/// Every worker `http::serve` starts.
const WORKERS: [&str; 9] = [
    "deploy",
    "drift_scan",
    "stripe_cancellations",
    "email_sender",
    "stall_sweep",
    "kube_poller",
    "lifecycle",
    "rollouts",
    "placement",
];

fn restarts(worker: &str) -> String {
    format!("billing_worker_restarts_total{{worker=\"{worker}\"}}")
}

async fn a_panicking_worker_is_restarted_counted_and_back_at_work(backend: Backend) {
    let env = [(TEST_PANIC_ENV, "deploy")];
    let Some(s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    let deadline = Instant::now() + WAIT;
    while s.metric(&restarts("deploy")).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no restart counted:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Only the restarted deploy worker commits: a signup reaching Git shows it at work.
    let id = s.signed_up("panic@acme.example", "Panic Co").await;
    s.wait_for_status(&id, "committed", WAIT).await;
    assert_eq!(s.metric(&restarts("deploy")).await, 1, "{}", s.log());
    assert_eq!(s.metric(&restarts("lifecycle")).await, 0);
    let (_, ready) = s.get_json("/readyz", None).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["workers"]["deploy"], "running", "{ready}");
    let log = s.log();
    assert!(log.contains("worker died; restarting"), "{log}");
}

async fn sigterm_stops_the_workers_and_exits_cleanly(backend: Backend) {
    let Some(mut s) = TestServer::start(backend).await else {
        return;
    };
    let (_, ready) = s.get_json("/readyz", None).await;
    for worker in WORKERS {
        // The Kubernetes poller ends at once without a cluster to poll.
        let state = &ready["workers"][worker];
        assert!(state == "running" || state == "off", "{worker}: {ready}");
    }
    // Queued right before the signal: the deploy worker is likely on it when SIGTERM comes.
    let id = s.signed_up("term@acme.example", "Term Co").await;
    let status = s.terminate(Duration::from_secs(10)).await;
    let log = s.log();
    assert!(
        status.is_some_and(|st| st.success()),
        "exit status {status:?} (None: still running after 10 s):\n{log}"
    );
    for worker in WORKERS.iter().filter(|w| **w != "kube_poller") {
        assert!(
            log.contains(&format!("worker stopped worker=\"{worker}\"")),
            "{worker} not stopped:\n{log}"
        );
    }
    assert!(!log.contains("at the shutdown deadline"), "{log}");
    // Whatever the deploy worker had not finished is taken up by the next start.
    s.restart().await;
    s.wait_for_status(&id, "committed", WAIT).await;
}

for_each_backend!(
    a_panicking_worker_is_restarted_counted_and_back_at_work,
    sigterm_stops_the_workers_and_exits_cleanly,
);
