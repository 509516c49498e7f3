//! Deleting a customer (GDPR erasure): in one transaction the tenant's removal is queued (the
//! worker commits it), the subscription ends through the state machine, and personal data is
//! scrubbed from the database: the customer row (email, names, password hash), failed-login
//! rows for the email, client addresses, user agents and emails in the audit log, and the
//! tenant's sealed secrets. The audit trail and the billing records stay, without personal data.
//! SQLite runs with `secure_delete`, so the old bytes do not linger in the file either, and
//! [`checkpoint_until_done`] then empties the WAL of the pages from before.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::domain::Fields;
use super::password::{self, Verdict};
use super::{throttle, RequestMeta};
use crate::accounts::AccountError;
use crate::accounts::AccountsHandles;
use crate::db::outbox::{self, Action};
use crate::db::{self, audit, deployments, erasure, notifications, subscriptions, Tx};
use crate::model::subscription::{Event, SubscriptionStatus};
use crate::notify;
use crate::status;

/// Who asked for the deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Admin,
    /// The customer, with their current password.
    Customer,
    /// The scheduler, when a canceled subscription's retention period ended.
    Retention,
}

impl By {
    fn source(self) -> &'static str {
        match self {
            By::Admin => "admin",
            By::Customer => "customer",
            By::Retention => "retention",
        }
    }

    fn actor(self, id: &str) -> String {
        match self {
            By::Admin => "admin".into(),
            By::Customer => format!("customer:{id}"),
            By::Retention => "clock".into(),
        }
    }

    /// The commit message's words: `tenant <id>: delete (customer request)`.
    fn reason(self) -> &'static str {
        match self {
            By::Admin => "delete (admin)",
            By::Customer => "delete (customer request)",
            By::Retention => "delete (retention ended after cancellation)",
        }
    }
}

/// The customer's proof: `{password}`.
pub fn password_from_json(body: Value) -> Result<String, AccountError> {
    Fields::from_value(body)?.required("password")
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub message: &'static str,
    pub customer_id: String,
    /// The removal's change id (the `Change-Id:` trailer of its commit).
    pub change_id: String,
    pub subscription_status: Option<&'static str>,
}

/// The email a deleted customer's row holds: not an address anyone can sign up with (the
/// domain has no dot), unique per customer.
pub fn placeholder_email(id: &str) -> String {
    format!("deleted-{id}@invalid")
}

/// Stored instead of the password hash: no PHC string, so it never verifies.
const PLACEHOLDER_HASH: &str = "!deleted";

/// Keys of audit details that hold personal data.
const PERSONAL_KEYS: [&str; 3] = ["email", "company_name", "full_name"];

pub async fn delete(
    handles: &AccountsHandles,
    customer_id: &str,
    by: By,
    password: Option<String>,
    meta: &RequestMeta,
) -> Result<Deleted, AccountError> {
    let now = Utc::now();
    let Some(email) = erasure::live_email(&handles.db.pool, customer_id).await? else {
        return Err(AccountError::NotFound("no such customer"));
    };
    if by == By::Customer {
        check_password(
            handles,
            customer_id,
            &email,
            password.unwrap_or_default(),
            meta,
            now,
        )
        .await?;
    }
    let now_text = db::ts(now);
    let mut tx = handles.db.pool.begin().await?;
    let placeholder = placeholder_email(customer_id);
    let scrubbed = erasure::scrub_customer(
        &mut *tx,
        &erasure::Scrubbed {
            id: customer_id,
            old_email_normalized: &email,
            placeholder_email: &placeholder,
            placeholder_hash: PLACEHOLDER_HASH,
            now: &now_text,
        },
    )
    .await?;
    if !scrubbed {
        return Err(AccountError::NotFound("no such customer"));
    }
    let subscription_status =
        end_subscription(&mut tx, handles.db.backend, customer_id, by, &now_text).await?;
    erasure::cancel_pending_jobs(&mut *tx, customer_id, &now_text).await?;
    let change_id = outbox::enqueue_because(
        &mut *tx,
        customer_id,
        Action::Delete,
        Some(by.reason()),
        now,
    )
    .await?;
    deployments::apply_event(
        &mut tx,
        customer_id,
        status::Event::Queued,
        None,
        None,
        &now_text,
    )
    .await?;
    // The farewell is queued with the address read before the scrub; whatever else was
    // still unsent for this customer goes (it would name them after their deletion).
    notifications::drop_pending(&mut *tx, customer_id).await?;
    notify::queue(
        &mut *tx,
        &handles.settings.smtp_from,
        customer_id,
        &email,
        &notify::Email::AccountDeleted,
        "",
        now,
    )
    .await?;
    erasure::forget_login_history(&mut tx, &email, customer_id).await?;
    erasure::drop_secrets(&mut *tx, customer_id).await?;
    for row in erasure::audit_rows_of(&mut *tx, customer_id, &email).await? {
        let own = row.customer_id.as_deref() == Some(customer_id);
        if let Some(details) = scrub_details(&row.details, own, &email) {
            erasure::scrub_audit_row(&mut *tx, row.id, &details).await?;
        }
    }
    audit::record(
        &mut *tx,
        &now_text,
        &audit::AuditEntry {
            action: "customer.deleted",
            customer_id: Some(customer_id.to_string()),
            actor: by.actor(customer_id),
            details: json!({ "by": by.source(), "change_id": change_id }),
            ..Default::default()
        },
    )
    .await?;
    // A tenant still waiting for a cluster has nothing in Git: its held changes go, and it
    // waits no more. A placed one keeps its room until its removal is committed.
    if let Some(waiting) = db::clusters::placement(&mut *tx, customer_id).await? {
        if waiting.cluster.is_none() {
            outbox::drop_held(&mut *tx, customer_id).await?;
            db::clusters::remove_placement(&mut *tx, customer_id).await?;
        }
    }
    tx.commit().await?;
    handles.worker_wake.notify_one();
    handles.wal_scrub.notify_one();
    handles.placement.wake.notify_one();
    Ok(Deleted {
        message: "Customer deleted; the tenant's removal is queued",
        customer_id: customer_id.to_string(),
        change_id,
        subscription_status: subscription_status.map(SubscriptionStatus::as_str),
    })
}

/// The customer's current password, throttled and counted like a login.
async fn check_password(
    handles: &AccountsHandles,
    customer_id: &str,
    email: &str,
    given: String,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<(), AccountError> {
    let addr = throttle::client_key(meta.client_ip.as_deref());
    if let Some((_, retry_after_secs)) = throttle::locked_out(handles, email, &addr, now).await? {
        return Err(AccountError::TooManyAttempts { retry_after_secs });
    }
    let stored = crate::db::accounts::customer_by_id(&handles.db.pool, customer_id)
        .await?
        .map(|c| c.password_hash)
        .ok_or(AccountError::NotFound("no such customer"))?;
    let verdict = password::HASHING
        .run(move || password::verify(&given, &stored))
        .await?;
    if matches!(verdict, Verdict::Match { .. }) {
        return Ok(());
    }
    throttle::record_failure(handles, email, &addr, now).await?;
    audit::record(
        &handles.db.pool,
        &db::ts(now),
        &audit::AuditEntry {
            action: "customer.delete_refused",
            customer_id: Some(customer_id.to_string()),
            actor: By::Customer.actor(customer_id),
            client_ip: meta.client_ip.clone(),
            user_agent: meta.user_agent.clone(),
            details: json!({ "reason": "wrong password" }),
        },
    )
    .await?;
    Err(AccountError::InvalidCredentials)
}

/// Cancels (if need be) and erases the subscription through the state machine, each step in
/// its history. Returns the final status (None without a subscription).
async fn end_subscription(
    tx: &mut Tx<'_>,
    backend: crate::db::Backend,
    customer_id: &str,
    by: By,
    now: &str,
) -> anyhow::Result<Option<SubscriptionStatus>> {
    let Some(held) = subscriptions::state(&mut **tx, backend, customer_id).await? else {
        return Ok(None);
    };
    if let (Some(id), false) = (
        &held.stripe_subscription_id,
        held.status == SubscriptionStatus::Canceled,
    ) {
        // A deleted customer is charged no more: cancelled at Stripe through the outbox.
        crate::db::cancellations::queue(&mut **tx, id, now).await?;
    }
    let mut status = held.status;
    for event in [Event::Canceled, Event::Erased] {
        let Some(next) = status.on(event).filter(|next| *next != status) else {
            continue;
        };
        subscriptions::record_transition(
            &mut **tx,
            &subscriptions::Transition {
                customer_id,
                event: event.as_str(),
                from_status: status,
                to_status: next,
                from_plan: &held.plan,
                to_plan: &held.plan,
                source: by.source(),
                reference: None,
                at: now,
            },
        )
        .await?;
        status = next;
    }
    if status != held.status {
        let next = subscriptions::SubscriptionState { status, ..held };
        subscriptions::update(&mut **tx, customer_id, &next, now).await?;
    }
    Ok(Some(status))
}

/// An audit row's details without personal data, or None when the row is not the customer's:
/// their own rows lose every personal key; others (a failed login before signup) only when
/// they name the customer's email.
fn scrub_details(details: &str, own: bool, email: &str) -> Option<String> {
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(details) else {
        // Not an object: nothing to pick apart, so nothing of it is kept.
        return own.then(|| "{}".to_string());
    };
    let names_email = map
        .get("email")
        .and_then(Value::as_str)
        .is_some_and(|e| e.trim().to_lowercase() == email);
    if !own && !names_email {
        return None;
    }
    for key in PERSONAL_KEYS {
        map.remove(key);
    }
    Some(Value::Object(map).to_string())
}

const FIRST_RETRY: std::time::Duration = std::time::Duration::from_millis(50);
const MAX_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// The last step of an erasure on SQLite: a deleted customer's old pages stay in
/// `billing.db-wal` until a checkpoint copies the new ones into the file and the WAL is
/// truncated, and SQLite's own (passive, every 1,000 pages) checkpoints neither truncate it
/// nor run at all on a quiet server. So after each erasure commits, and after the farewell
/// email's row drops its address, `wal_checkpoint(TRUNCATE)` runs, retried until no reader or
/// writer keeps it from finishing. PostgreSQL: returns at once.
pub async fn checkpoint_until_done(db: &crate::db::Db) {
    let mut wait = FIRST_RETRY;
    let mut tries = 0u32;
    loop {
        match erasure::checkpoint_wal(db).await {
            Ok(true) => return,
            Ok(false) => tracing::debug!(tries, "WAL checkpoint blocked by a reader; retrying"),
            Err(e) => tracing::warn!(error = %e, tries, "WAL checkpoint failed; retrying"),
        }
        tries += 1;
        if tries == 20 {
            tracing::warn!(
                "a deleted customer's data is still in the WAL: checkpoints keep being blocked"
            );
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RETRY);
    }
}

/// The checkpoint loop of `billing serve`: one at start (a crash may have left an erasure in
/// the WAL), then one after each wake-up; wake-ups during a checkpoint fold into one more.
pub async fn run_wal_checkpoints(handles: AccountsHandles) {
    loop {
        checkpoint_until_done(&handles.db).await;
        handles.wal_scrub.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_audit_rows_lose_every_personal_key_others_only_when_they_name_the_email() {
        let signup = r#"{"email":"Ada@Example.com","company_name":"Acme","plan":"starter"}"#;
        assert_eq!(
            scrub_details(signup, true, "ada@example.com").as_deref(),
            Some(r#"{"plan":"starter"}"#)
        );
        let stranger = r#"{"email":"bob@example.com"}"#;
        assert_eq!(scrub_details(stranger, false, "ada@example.com"), None);
        let before_signup = r#"{"email":"ada@example.com","limit":"address"}"#;
        assert_eq!(
            scrub_details(before_signup, false, "ada@example.com").as_deref(),
            Some(r#"{"limit":"address"}"#)
        );
        assert_eq!(
            scrub_details("not json", true, "a@b.c").as_deref(),
            Some("{}")
        );
    }

    #[test]
    fn placeholders_cannot_be_signed_up_with_or_logged_in_to() {
        let email = placeholder_email("k3x9m2p7q4wz");
        assert!(super::super::domain::Email::parse(&email).is_err());
        assert_eq!(password::verify("", PLACEHOLDER_HASH), Verdict::Mismatch);
    }
}
