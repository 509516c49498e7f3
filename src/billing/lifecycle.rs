//! The lifecycle scheduler: one pass as of a given time suspends the trials that ended and the
//! past-due subscriptions whose grace period ended, each through the state machine in its own
//! transaction (so each becomes its own commit through the outbox), then sends the reminders
//! due and deletes the canceled accounts past retention (`reminders`). `billing serve` runs a pass
//! every `LIFECYCLE_INTERVAL_SECONDS`; operators and tests run one with `billing lifecycle tick`.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};

use super::change::{self, Change, Outcome, Source};
use super::subscription::Event;
use crate::billing::BillingHandles;
use crate::db::{self, lifecycle};

/// How long a pass may hold the lease; a process killed mid-pass blocks the others this long.
const LEASE: Duration = Duration::seconds(120);

/// What one pass did.
#[derive(Debug, Default)]
pub struct Report {
    /// (customer id, the commit message's reason) of every change made.
    pub changed: Vec<(String, String)>,
    /// Customers whose change failed (logged; the next pass tries again).
    pub failed: Vec<String>,
    /// (customer id, what about) of every reminder email queued.
    pub reminded: Vec<(String, String)>,
}

/// Runs one pass as of `as_of`, or returns None when another process holds the lease. The lease
/// is taken and released by the wall clock, whatever `as_of` says, so a pass "in the future"
/// run by hand does not hold off the server's passes.
pub async fn tick(
    handles: &BillingHandles,
    as_of: DateTime<Utc>,
) -> anyhow::Result<Option<Report>> {
    let pool = &handles.db.pool;
    let owner = &handles.worker_id;
    let wall = Utc::now();
    let taken = lifecycle::take_lease(pool, owner, LEASE, wall).await?;
    if !taken {
        return Ok(None);
    }
    let report = pass(handles, as_of).await;
    if let Err(err) = lifecycle::release_lease(pool, owner).await {
        tracing::warn!(error = %err, "releasing the lifecycle lease (it expires by itself)");
    }
    report.map(Some)
}

async fn pass(handles: &BillingHandles, as_of: DateTime<Utc>) -> anyhow::Result<Report> {
    let pool = &handles.db.pool;
    let grace = Duration::days(i64::from(handles.settings.lifecycle_grace_days));
    let due = [
        (
            Event::TrialExpired,
            lifecycle::trials_ended(pool, &db::ts(as_of)).await?,
        ),
        (
            Event::GraceExpired,
            lifecycle::past_due_since(pool, &db::ts(as_of - grace)).await?,
        ),
    ];
    let mut report = Report::default();
    for (event, customers) in due {
        for id in customers {
            match apply_one(handles, &id, event, as_of).await {
                Ok(Outcome::Applied { reason, .. }) => report.changed.push((id, reason)),
                // A payment arrived since the search: the state machine leaves it alone.
                Ok(Outcome::Unchanged | Outcome::Ignored(_)) => {}
                Err(err) => {
                    tracing::warn!(customer_id = %id, error = %format!("{err:#}"), "lifecycle change failed");
                    report.failed.push(id);
                }
            }
        }
    }
    super::reminders::trials(handles, as_of, &mut report).await?;
    super::reminders::retention(handles, as_of, &mut report).await?;
    if !report.changed.is_empty() {
        handles.worker_wake.notify_one();
    }
    Ok(report)
}

async fn apply_one(
    handles: &BillingHandles,
    customer_id: &str,
    event: Event,
    as_of: DateTime<Utc>,
) -> anyhow::Result<Outcome> {
    let mut tx = handles.db.pool.begin().await?;
    let change = Change {
        event,
        plan: None,
        trial_ends_at: None,
        current_period_ends_at: None,
        source: Source::Clock,
        reference: None,
        stripe_subscription_id: None,
        stripe_event_at: None,
    };
    let outcome = change::apply(handles, &mut tx, customer_id, &change, as_of).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// The server's scheduler: a pass every `LIFECYCLE_INTERVAL_SECONDS`, the first at start-up.
pub async fn run(handles: BillingHandles, stop: tokio_util::sync::CancellationToken) {
    let mut interval = tokio::time::interval(StdDuration::from_secs(
        handles.settings.lifecycle_interval_seconds,
    ));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if stop.run_until_cancelled(interval.tick()).await.is_none() {
            return;
        }
        match tick(&handles, Utc::now()).await {
            Ok(Some(report)) if !report.changed.is_empty() || !report.failed.is_empty() => {
                tracing::info!(
                    changed = report.changed.len(),
                    failed = report.failed.len(),
                    "lifecycle pass"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %format!("{err:#}"), "lifecycle pass failed"),
        }
    }
}
