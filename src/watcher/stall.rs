//! The stall sweep: a tenant still `committed` `WATCHER_STALL_SECONDS` after its commit (no
//! success reported in time, by webhook or poller) becomes `stalled`, through the state
//! machine's `TimedOut`. A later success still makes it ready.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::db::{self, deployments};
use crate::watcher::WatcherHandles;

/// Marks every tenant whose stall clock ran out at `now`; returns how many.
pub async fn sweep(
    handles: &WatcherHandles,
    stall: Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let cutoff = now - chrono::Duration::from_std(stall)?;
    let candidates = deployments::stall_candidates(&handles.db.pool, &db::ts(cutoff)).await?;
    let message = format!(
        "no successful sync reported within {}s of the commit",
        stall.as_secs()
    );
    let now_text = db::ts(now);
    let mut stalled = 0;
    for (customer_id, revision, committed_at) in candidates {
        let mut tx = handles.db.pool.begin().await?;
        let next = deployments::time_out(&mut tx, &customer_id, &committed_at, &message, &now_text)
            .await?;
        tx.commit().await?;
        if let Some(status) = next {
            stalled += 1;
            tracing::warn!(%customer_id, revision = revision.as_deref().unwrap_or(""), %status, "deployment stalled");
        }
    }
    Ok(stalled)
}

/// How often to sweep: often enough that a stall shows within about half the timeout, and
/// never more than every 30 seconds.
pub fn interval(stall: Duration) -> Duration {
    (stall / 2).clamp(Duration::from_millis(200), Duration::from_secs(30))
}

/// The sweep task, started by `http::serve`.
pub async fn run(handles: WatcherHandles, stop: tokio_util::sync::CancellationToken) {
    let stall = Duration::from_secs(handles.cluster.watcher_stall_seconds.max(1));
    let every = interval(stall);
    loop {
        if stop
            .run_until_cancelled(tokio::time::sleep(every))
            .await
            .is_none()
        {
            return;
        }
        if let Err(err) = sweep(&handles, stall, Utc::now()).await {
            tracing::warn!(error = %format!("{err:#}"), "stall sweep failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_at_half_the_timeout_within_bounds() {
        assert_eq!(interval(Duration::from_secs(600)), Duration::from_secs(30));
        assert_eq!(interval(Duration::from_secs(20)), Duration::from_secs(10));
        assert_eq!(interval(Duration::from_secs(1)), Duration::from_millis(500));
        assert_eq!(
            interval(Duration::from_millis(100)),
            Duration::from_millis(200)
        );
    }
}
