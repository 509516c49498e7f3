//! Applying one subscription event: the state machine decides, then in the caller's
//! transaction the subscription row, its history, a new license (recorded and re-sealed), the
//! audit entry and an outbox job whose commit message says why.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::subscription::{Event, SubscriptionStatus};
use crate::billing::BillingHandles;
use crate::db::outbox;
use crate::db::{self, accounts, audit, licenses, subscriptions, Tx};
use crate::license::{self, LicenseSubject};
use crate::notify;
use crate::plans::Catalogue;

/// Who caused a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Stripe,
    Clock,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Stripe => "stripe",
            Source::Clock => "clock",
        }
    }
}

/// One event and what it carries; None fields keep what the subscription holds.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub event: Event,
    pub plan: Option<&'a str>,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub current_period_ends_at: Option<DateTime<Utc>>,
    pub source: Source,
    /// The Stripe event id, named in the commit message and the history.
    pub reference: Option<&'a str>,
    pub stripe_subscription_id: Option<&'a str>,
    /// `created` of the Stripe event: older than what was applied before, it changes nothing.
    pub stripe_event_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Something changed; a render job `change_id` commits it with `reason`.
    Applied {
        reason: String,
        change_id: String,
        /// The tenant's cluster lacks room for its new footprint: it stays there.
        placement_warning: Option<String>,
    },
    /// The event agrees with what is held already.
    Unchanged,
    /// The event does not apply (out of order, or not in this status).
    Ignored(String),
}

/// Applies `change` to the customer's subscription inside `tx`.
pub async fn apply(
    handles: &BillingHandles,
    tx: &mut Tx<'_>,
    customer_id: &str,
    change: &Change<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<Outcome> {
    let now_text = db::ts(now);
    let Some(held) = subscriptions::state(&mut **tx, handles.db.backend, customer_id).await? else {
        return Ok(Outcome::Ignored("customer has no subscription".into()));
    };
    if let (Some(at), Some(newest)) = (change.stripe_event_at, held.stripe_event_at) {
        if at < newest {
            return Ok(Outcome::Ignored(format!(
                "event created at {at}, older than the state held (from {newest})"
            )));
        }
    }
    let Some(status) = held.status.on(change.event) else {
        return Ok(Outcome::Ignored(format!(
            "{} does not apply to a {} subscription",
            change.event.as_str(),
            held.status
        )));
    };
    let plan = match change.plan {
        Some(p) if handles.plans.get(p).is_none() => {
            return Ok(Outcome::Ignored(format!("unknown plan {p:?}")))
        }
        Some(p) => p.to_string(),
        None => held.plan.clone(),
    };
    let next = subscriptions::SubscriptionState {
        plan,
        status,
        trial_ends_at: change
            .trial_ends_at
            .map(db::ts)
            .or(held.trial_ends_at.clone()),
        current_period_ends_at: change
            .current_period_ends_at
            .map(db::ts)
            .or(held.current_period_ends_at.clone()),
        stripe_subscription_id: change
            .stripe_subscription_id
            .map(String::from)
            .or(held.stripe_subscription_id.clone()),
        stripe_event_at: change.stripe_event_at.or(held.stripe_event_at),
    };
    subscriptions::update(&mut **tx, customer_id, &next, &now_text).await?;
    let changed = next.status != held.status
        || next.plan != held.plan
        || next.current_period_ends_at != held.current_period_ends_at;
    if !changed {
        return Ok(Outcome::Unchanged);
    }

    let reason = describe(&handles.plans, &held, &next, change);
    subscriptions::record_transition(
        &mut **tx,
        &subscriptions::Transition {
            customer_id,
            event: change.event.as_str(),
            from_status: held.status,
            to_status: next.status,
            from_plan: &held.plan,
            to_plan: &next.plan,
            source: change.source.as_str(),
            reference: change.reference,
            at: &now_text,
        },
    )
    .await?;
    let jti = reissue_license(handles, tx, customer_id, &next, now).await?;
    let placement_warning = refit(handles, tx, customer_id, &next, &now_text).await?;
    tell_customer(handles, tx, customer_id, &held, &next, change, now).await?;
    let change_id = outbox::enqueue_because(
        &mut **tx,
        customer_id,
        outbox::Action::Update,
        Some(&reason),
        now,
    )
    .await?;
    audit::record(
        &mut **tx,
        &now_text,
        &audit::AuditEntry {
            action: "subscription.changed",
            customer_id: Some(customer_id.to_string()),
            actor: change.source.as_str().to_string(),
            details: json!({
                "event": change.event.as_str(),
                "from_status": held.status.as_str(),
                "to_status": next.status.as_str(),
                "from_plan": held.plan,
                "to_plan": next.plan,
                "current_period_ends_at": next.current_period_ends_at,
                "reference": change.reference,
                "license_jti": jti,
                "change_id": change_id,
                "placement_warning": placement_warning,
            }),
            ..Default::default()
        },
    )
    .await?;
    Ok(Outcome::Applied {
        reason,
        change_id,
        placement_warning,
    })
}

/// Books the tenant's footprint in its new state on its cluster (see `placement::resize`);
/// returns the warning when the cluster lacks room for it.
async fn refit(
    handles: &BillingHandles,
    tx: &mut Tx<'_>,
    customer_id: &str,
    next: &subscriptions::SubscriptionState,
    now: &str,
) -> anyhow::Result<Option<String>> {
    let customer = accounts::customer_by_id(&mut **tx, customer_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("customer {customer_id} not found"))?;
    let spec = crate::render::TenantSpec {
        id: customer_id.to_string(),
        plan: next.plan.clone(),
        subscription_status: next.status.as_str().to_string(),
        company_name: customer.company_name,
        email: customer.email,
        full_name: customer.full_name,
        restore_from: None,
    };
    crate::placement::resize::refit(&handles.accounts.placement, tx, &spec, now).await
}

/// Queues the email a change calls for: a suspension, or a failed payment that made the
/// subscription past due. Keyed by the Stripe event (or the moment, for the clock), so a
/// redelivered event queues nothing new.
async fn tell_customer(
    handles: &BillingHandles,
    tx: &mut Tx<'_>,
    customer_id: &str,
    held: &subscriptions::SubscriptionState,
    next: &subscriptions::SubscriptionState,
    change: &Change<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let became = |s| next.status == s && held.status != s;
    let kind = if became(SubscriptionStatus::Suspended) {
        notify::Kind::Suspended
    } else if change.event == Event::PaymentFailed && became(SubscriptionStatus::PastDue) {
        notify::Kind::PaymentFailed
    } else {
        return Ok(());
    };
    let customer = accounts::customer_by_id(&mut **tx, customer_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("customer {customer_id} not found"))?;
    let company_name = &customer.company_name;
    let email = match kind {
        notify::Kind::PaymentFailed => notify::Email::PaymentFailed {
            company_name,
            grace_days: handles.settings.lifecycle_grace_days,
        },
        _ => notify::Email::Suspended { company_name },
    };
    let dedupe_key = change.reference.map_or_else(|| db::ts(now), String::from);
    notify::queue(
        &mut **tx,
        &handles.settings.smtp_from,
        customer_id,
        &customer.email,
        &email,
        &dedupe_key,
        now,
    )
    .await?;
    Ok(())
}

/// Signs, records and seals the license of the subscription's new state; returns its jti.
async fn reissue_license(
    handles: &BillingHandles,
    tx: &mut Tx<'_>,
    customer_id: &str,
    s: &subscriptions::SubscriptionState,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    let customer = accounts::customer_by_id(&mut **tx, customer_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("customer {customer_id} not found"))?;
    let plan = handles
        .plans
        .get(&s.plan)
        .ok_or_else(|| anyhow::anyhow!("unknown plan {:?}", s.plan))?;
    let parse = |t: &Option<String>| t.as_deref().map(db::parse_ts).transpose();
    // Only a trial license is in trial mode; one without a known end (a suspended tenant's)
    // expires at once.
    let trial_ends_at = match s.status {
        SubscriptionStatus::Trialing => parse(&s.trial_ends_at)?,
        _ => None,
    };
    let period_ends_at = match (trial_ends_at, parse(&s.current_period_ends_at)?) {
        (None, None) => Some(now),
        (_, period) => period,
    };
    let issued = license::issue(
        &handles.keys,
        &handles.settings.license_issuer,
        &LicenseSubject {
            customer_id,
            customer_name: &customer.company_name,
            plan_name: &s.plan,
            plan,
            subscription_status: s.status.as_str(),
            trial_ends_at,
            current_period_ends_at: period_ends_at,
            grace_after_period: match s.status {
                SubscriptionStatus::Active | SubscriptionStatus::PastDue => {
                    chrono::Duration::days(i64::from(handles.settings.lifecycle_grace_days))
                }
                _ => chrono::Duration::zero(),
            },
        },
        now,
    )?;
    let expires_at = DateTime::<Utc>::from_timestamp(issued.claims.exp, 0).unwrap_or(now);
    licenses::insert(
        &mut **tx,
        &licenses::LicenseRecord {
            customer_id: customer_id.to_string(),
            action: "reissued".into(),
            plan: s.plan.clone(),
            kid: issued.kid.clone(),
            jti: issued.claims.jti.clone(),
            token_sha256: issued.token_sha256.clone(),
            issued_at: db::ts(now),
            expires_at: db::ts(expires_at),
        },
    )
    .await?;
    let sealed = crate::secrets::seal_for(&handles.sealing, customer_id, &issued.jwt)?;
    db::secrets::upsert(
        &mut **tx,
        customer_id,
        crate::secrets::LICENSE_KEY,
        &sealed,
        &db::ts(now),
    )
    .await?;
    Ok(issued.claims.jti)
}

/// The commit message's words for a change: `upgrade starter → professional (Stripe evt_…)`.
fn describe(
    plans: &Catalogue,
    held: &subscriptions::SubscriptionState,
    next: &subscriptions::SubscriptionState,
    change: &Change<'_>,
) -> String {
    let mut parts = Vec::new();
    if next.plan != held.plan {
        let rank = |name: &str| {
            plans.get(name).map_or(0, |p| match p.features.max_devices {
                -1 => i64::MAX,
                n => n,
            })
        };
        let word = match rank(&next.plan).cmp(&rank(&held.plan)) {
            std::cmp::Ordering::Greater => "upgrade",
            std::cmp::Ordering::Less => "downgrade",
            std::cmp::Ordering::Equal => "change plan",
        };
        parts.push(format!("{word} {} → {}", held.plan, next.plan));
    }
    if next.status != held.status {
        let word = match next.status {
            SubscriptionStatus::Suspended => "suspend",
            SubscriptionStatus::Canceled => "cancel",
            SubscriptionStatus::Active if held.status == SubscriptionStatus::Suspended => {
                "reactivate"
            }
            _ => "subscription",
        };
        parts.push(format!("{word} {} → {}", held.status, next.status));
    }
    if parts.is_empty() {
        parts.push(format!(
            "renew {} until {}",
            next.plan,
            next.current_period_ends_at.as_deref().unwrap_or("?")
        ));
    }
    let mut reason = parts.join(", ");
    match (change.source, change.reference) {
        (Source::Stripe, Some(reference)) => reason.push_str(&format!(" (Stripe {reference})")),
        (Source::Clock, _) => reason.push_str(match change.event {
            Event::TrialExpired => " (trial ended)",
            Event::GraceExpired => " (grace period ended)",
            Event::Erased => " (retention period ended)",
            _ => " (clock)",
        }),
        (source, _) => reason.push_str(&format!(" ({})", source.as_str())),
    }
    reason
}
