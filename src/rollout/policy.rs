//! `ROLLOUT_POLICY` at work: the first time a server meets a digest of templates (a new binary,
//! TEMPLATES_DIR, PLANS_FILE or a render setting changed), once per digest whichever replica
//! is first: `waves` starts a rollout (default waves, auto-rollback on), `manual` only counts
//! the tenants behind, `all-at-once` queues a re-render of every tenant.

use chrono::Utc;

use super::control::{create, StartOptions};
use super::plan::plan;
use super::{templates_digest, Handles, RolloutError};
use crate::config::rollout::RolloutPolicy;
use crate::db::{self, outbox, rollouts};

/// Acts on this process's templates if nobody has yet. An active rollout goes first: the
/// policy waits until it has ended.
pub(crate) async fn apply(h: &Handles<'_>) -> Result<(), RolloutError> {
    let digest = templates_digest(h);
    if rollouts::check(&h.db.pool, &digest).await?.is_some()
        || rollouts::current(&h.db.pool, false).await?.is_some()
    {
        return Ok(());
    }
    let now = db::ts(Utc::now());
    match h.policy {
        RolloutPolicy::AllAtOnce => {
            let change_set = uuid::Uuid::new_v4().to_string();
            let mut tx = h.db.pool.begin().await?;
            let policy = h.policy.as_str();
            if rollouts::insert_check(&mut *tx, &digest, policy, 0, None, &now).await? {
                let action = outbox::Action::Update;
                let queued = outbox::enqueue_all_live(&mut *tx, &change_set, action, &now).await?;
                tracing::info!(
                    queued,
                    "new templates: every tenant queued (ROLLOUT_POLICY=all-at-once)"
                );
            }
            tx.commit().await?;
        }
        // In review mode too: the canary's pull request is opened by itself.
        RolloutPolicy::Waves => {
            let opts = StartOptions {
                auto_rollback: true,
                ..StartOptions::default()
            };
            let planned = plan(h, &opts.waves, &opts.order).await?;
            let behind = planned.tenants as i64;
            if planned.tenants == 0 {
                rollouts::insert_check(&h.db.pool, &digest, "waves", 0, None, &now).await?;
            } else {
                create(h, &planned, &opts, "policy", Some(("waves", behind))).await?;
            }
        }
        RolloutPolicy::Manual => {
            let planned = plan(h, &Default::default(), &Default::default()).await?;
            let behind = planned.tenants as i64;
            rollouts::insert_check(&h.db.pool, &digest, h.policy.as_str(), behind, None, &now)
                .await?;
            if behind > 0 {
                tracing::info!(
                    behind,
                    "tenants behind the current templates; `billing rollout start` rolls them out"
                );
            }
        }
    }
    Ok(())
}
