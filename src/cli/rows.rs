//! Table rows of the smaller read commands (`license verify`, `lifecycle tick`).

use serde::Serialize;

use super::output::Tabular;

/// One tenant of a lifecycle pass, as `lifecycle tick -o` prints it.
#[derive(Debug, Serialize)]
pub struct TickRow {
    customer_id: String,
    /// `changed`, `reminded` or `failed`.
    outcome: &'static str,
    detail: String,
}

impl TickRow {
    pub fn of(report: &crate::billing::lifecycle::Report) -> Vec<TickRow> {
        let row = |outcome, (id, detail): &(String, String)| TickRow {
            customer_id: id.clone(),
            outcome,
            detail: detail.clone(),
        };
        let mut rows: Vec<TickRow> = report.changed.iter().map(|c| row("changed", c)).collect();
        rows.extend(report.reminded.iter().map(|r| row("reminded", r)));
        rows.extend(report.failed.iter().map(|id| TickRow {
            customer_id: id.clone(),
            outcome: "failed",
            detail: String::new(),
        }));
        rows
    }
}

impl Tabular for TickRow {
    fn headers() -> Vec<&'static str> {
        vec!["customer", "outcome", "detail"]
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.customer_id.clone(),
            self.outcome.to_string(),
            self.detail.clone(),
        ]
    }
}

impl Tabular for crate::license::LicenseClaims {
    fn headers() -> Vec<&'static str> {
        vec![
            "customer",
            "name",
            "plan",
            "subscription",
            "trial",
            "expires",
        ]
    }

    fn cells(&self) -> Vec<String> {
        let expires = chrono::DateTime::from_timestamp(self.expires_at, 0)
            .map(crate::db::ts)
            .unwrap_or_default();
        vec![
            self.customer_id.clone(),
            self.customer_name.clone(),
            self.plan.clone(),
            self.subscription.status.clone(),
            self.trial.is_trial_mode.to_string(),
            expires,
        ]
    }
}
