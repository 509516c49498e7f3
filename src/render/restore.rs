//! Moving a tenant in: while `TenantSpec::restore_from` is set, the stack carries a one-off
//! backup Job (it uploads a fresh dump wherever the database holds data: the source cluster)
//! and a restore Job (it fills an empty database from the newest dump taken since: the target
//! cluster), and the API waits for the restore before it starts. Both clusters sync the same
//! tenant directory during a move, so every step decides by the database it finds, not by which
//! cluster it runs on.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{RenderError, RenderSettings, TenantSpec};

/// Table the restore leaves in the tenant database once it is done (or found data to keep);
/// the API's init container waits for it.
const RESTORED_MARKER: &str = "_billing_restored";
/// How long the restore waits for the source's fresh dump before its Job fails (and retries).
const WAIT_SECONDS: u32 = 1800;

/// What the templates see of a move in progress.
#[derive(Debug, Serialize)]
pub(super) struct RestoreView {
    /// Dumps are named `<db>-YYYYmmddTHHMMSSZ.dump`: the oldest name acceptable, in that form.
    not_before: String,
    /// Part of the Jobs' names, so a later move runs them again (a Job's spec is immutable).
    run: String,
    wait_seconds: u32,
    marker: &'static str,
}

impl RestoreView {
    pub(super) fn new(from: DateTime<Utc>) -> Self {
        RestoreView {
            not_before: from.format("%Y%m%dT%H%M%SZ").to_string(),
            run: from.format("%Y%m%d%H%M%S").to_string(),
            wait_seconds: WAIT_SECONDS,
            marker: RESTORED_MARKER,
        }
    }
}

/// The two Jobs of a move that began at `from`: the backup that leaves the source, the restore.
pub(super) fn job_names(from: DateTime<Utc>) -> [String; 2] {
    let run = RestoreView::new(from).run;
    [
        format!("backup-before-move-{run}"),
        format!("restore-{run}"),
    ]
}

/// A move restores from off-cluster backups: without them there is nothing to restore from.
pub(super) fn validate(spec: &TenantSpec, settings: &RenderSettings) -> Result<(), RenderError> {
    if spec.restore_from.is_some() && settings.backup_s3.is_none() {
        return Err(RenderError::InvalidSpec {
            field: "restore_from",
            reason: "a move restores the database from off-cluster backups, which are not \
                     configured (BACKUP_S3_BUCKET)"
                .into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_dumps_and_jobs_naming() {
        let at = DateTime::parse_from_rfc3339("2026-12-07T21:05:09Z")
            .unwrap()
            .with_timezone(&Utc);
        let view = RestoreView::new(at);
        assert_eq!(view.not_before, "20261207T210509Z");
        assert_eq!(view.run, "20261207210509");
    }

    #[test]
    fn a_move_without_off_cluster_backups_is_refused() {
        let spec = TenantSpec {
            restore_from: Some(Utc::now()),
            ..super::super::demo_spec()
        };
        let err = validate(&spec, &RenderSettings::default()).unwrap_err();
        assert!(err.to_string().contains("BACKUP_S3_BUCKET"), "{err}");
        assert!(validate(&super::super::demo_spec(), &RenderSettings::default()).is_ok());
    }
}
