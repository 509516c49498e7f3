//! The scheduler's emails ahead of a change, and the end of retention: a trial's end 7 and 2
//! days ahead, a canceled account's deletion 7 days ahead, and the deletion itself once
//! `DELETION_RETENTION_DAYS` have passed since the cancellation. Each reminder is queued once
//! (its dedupe key names the date it is about), however many passes see it.

use chrono::{DateTime, Duration, Utc};

use super::lifecycle::Report;
use crate::accounts::deletion::{self, By};
use crate::accounts::RequestMeta;
use crate::billing::BillingHandles;
use crate::db::{self, lifecycle};
use crate::notify::{self, Email};

/// How long before the deletion of a canceled account its reminder goes.
const DELETION_NOTICE_DAYS: i64 = 7;

/// Queues the trial reminders due at `as_of`.
pub(super) async fn trials(
    handles: &BillingHandles,
    as_of: DateTime<Utc>,
    report: &mut Report,
) -> anyhow::Result<()> {
    // (days ahead, the next reminder's window start): a customer inside 2 days gets only the
    // 2-day one.
    for (days, closer) in [(7, 2), (2, 0)] {
        let after = db::ts(as_of + Duration::days(closer));
        let until = db::ts(as_of + Duration::days(days));
        for r in lifecycle::trials_ending(&handles.db.pool, &after, &until).await? {
            let ends = db::parse_ts(&r.at)?;
            let email = Email::TrialEnding {
                company_name: &r.company_name,
                trial_ends_at: &ends.format("%Y-%m-%d").to_string(),
                // Whole days left, rounded up: 30 hours before the end is "2 days".
                days_left: ((ends - as_of).num_hours() + 23).div_euclid(24).max(1),
            };
            let key = format!("{days}d {}", r.at);
            if queue(handles, &r.customer_id, &r.email, &email, &key, as_of).await? {
                report
                    .reminded
                    .push((r.customer_id.clone(), format!("trial ends in {days} days")));
            }
        }
    }
    Ok(())
}

/// Deletes the canceled accounts whose retention ended, and reminds those within a week of it.
pub(super) async fn retention(
    handles: &BillingHandles,
    as_of: DateTime<Utc>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let retention = Duration::days(i64::from(handles.settings.deletion_retention_days));
    for r in lifecycle::canceled(&handles.db.pool).await? {
        let delete_at = db::parse_ts(&r.at)? + retention;
        if delete_at <= as_of {
            match deletion::delete(
                &handles.accounts,
                &r.customer_id,
                By::Retention,
                None,
                &RequestMeta::default(),
            )
            .await
            {
                Ok(_) => report
                    .changed
                    .push((r.customer_id.clone(), "delete (retention ended)".into())),
                Err(e) => {
                    tracing::warn!(customer_id = %r.customer_id, error = %e, "deletion after retention failed");
                    report.failed.push(r.customer_id.clone());
                }
            }
        } else if delete_at - Duration::days(DELETION_NOTICE_DAYS) <= as_of {
            let email = Email::DeletionReminder {
                company_name: &r.company_name,
                deleted_on: &delete_at.format("%Y-%m-%d").to_string(),
            };
            if queue(handles, &r.customer_id, &r.email, &email, &r.at, as_of).await? {
                report
                    .reminded
                    .push((r.customer_id.clone(), "deletion in under a week".into()));
            }
        }
    }
    Ok(())
}

async fn queue(
    handles: &BillingHandles,
    customer_id: &str,
    to: &str,
    email: &Email<'_>,
    key: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    Ok(notify::queue(
        &handles.db.pool,
        &handles.settings.smtp_from,
        customer_id,
        to,
        email,
        key,
        now,
    )
    .await?)
}
