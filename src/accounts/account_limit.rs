//! The per-account login limit: guesses against one account spread over many addresses (a
//! botnet, credential stuffing) are slowed down without locking the owner out.
//!
//! After `LOGIN_ACCOUNT_FAILURES` failures of one email, from any addresses, within
//! `LOGIN_ACCOUNT_WINDOW_MINUTES`, addresses the account has not logged in from in the last 90
//! days are answered 429 before any hashing, for a minute after the latest failure, doubling
//! with each failure past the limit up to `LOGIN_ACCOUNT_MAX_DELAY_SECONDS`. The addresses the
//! owner logs in from stay open (the per-pair limit of `throttle` still applies there), so
//! the limit is no weapon. The counter is per email, account or not: an unknown email is
//! limited exactly like a known one, so the limit tells nobody which emails have accounts.
//! The owner is warned by email once per window.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::RequestMeta;
use crate::accounts::AccountError;
use crate::accounts::AccountsHandles;
use crate::db::accounts::CustomerRow;
use crate::db::{self, audit, login_throttle, notifications};
use crate::notify::{self, Email, Kind};

/// How long a successful login keeps its address exempt from the limit.
pub const KNOWN_ADDRESS_DAYS: i64 = 90;
/// The wait at the limit, before it doubles with each further failure.
const FIRST_DELAY_SECS: u64 = 60;

/// The wait after the latest of `failures` failures of an account whose limit is `limit`.
pub fn delay_secs(failures: i64, limit: i64, max: u64) -> u64 {
    // Past 20 doublings any sane cap is reached; the clamp keeps the shift in range.
    let past = (failures - limit).clamp(0, 20) as u32;
    (FIRST_DELAY_SECS << past).min(max)
}

fn window(handles: &AccountsHandles) -> Duration {
    Duration::minutes(handles.settings.login.login_account_window_minutes)
}

/// Seconds until `addr` may try `email` again, or None: the account is under its limit, or
/// the address is known for it.
pub async fn locked_out(
    handles: &AccountsHandles,
    email: &str,
    addr: &str,
    now: DateTime<Utc>,
) -> Result<Option<u64>, AccountError> {
    let cfg = &handles.settings.login;
    let pool = &handles.db.pool;
    // Both queries run for every login, so their time says nothing about the email or address.
    let failures =
        login_throttle::account_failures(pool, email, &db::ts(now - window(handles))).await?;
    let known_since = db::ts(now - Duration::days(KNOWN_ADDRESS_DAYS));
    let known = login_throttle::is_known_address(pool, email, addr, &known_since).await?;
    if known || failures.count < cfg.login_account_failures {
        return Ok(None);
    }
    let Some(latest) = failures.latest.as_deref().map(db::parse_ts).transpose()? else {
        return Ok(None);
    };
    let delay = delay_secs(
        failures.count,
        cfg.login_account_failures,
        cfg.login_account_max_delay_seconds,
    );
    let wait = (latest + Duration::seconds(delay as i64) - now).num_seconds();
    Ok((wait > 0).then_some(wait as u64))
}

/// After a failure against `customer`: once the account is over its limit, tells the owner,
/// once per window, how many logins failed from how many addresses (nothing they typed).
pub async fn warn_owner(
    handles: &AccountsHandles,
    customer: &CustomerRow,
    email: &str,
    meta: &RequestMeta,
    now: DateTime<Utc>,
) -> Result<(), AccountError> {
    let cfg = &handles.settings.login;
    let pool = &handles.db.pool;
    let since = db::ts(now - window(handles));
    let failures = login_throttle::account_failures(pool, email, &since).await?;
    if failures.count < cfg.login_account_failures
        || notifications::queued_since(pool, &customer.id, Kind::LoginAttempts, &since).await?
    {
        return Ok(());
    }
    let message = Email::LoginAttempts {
        company_name: &customer.company_name,
        failures: failures.count,
        addresses: failures.addresses,
        window_minutes: cfg.login_account_window_minutes,
        reset_url: cfg.password_reset_url.as_deref().filter(|u| !u.is_empty()),
    };
    // The window's number: concurrent failures queue one email between them.
    let bucket = now.timestamp().div_euclid(window(handles).num_seconds());
    let queued = notify::queue(
        pool,
        &handles.settings.smtp_from,
        &customer.id,
        &customer.email,
        &message,
        &bucket.to_string(),
        now,
    )
    .await?;
    if queued {
        let entry = audit::AuditEntry {
            action: "customer.login_attempts_warned",
            customer_id: Some(customer.id.clone()),
            actor: "system".to_string(),
            client_ip: meta.client_ip.clone(),
            user_agent: meta.user_agent.clone(),
            details: json!({ "failures": failures.count, "addresses": failures.addresses }),
        };
        audit::record(pool, &db::ts(now), &entry).await?;
    }
    Ok(())
}

/// Marks `addr` known for the customer after a successful login there.
pub async fn remember(
    handles: &AccountsHandles,
    customer_id: &str,
    addr: &str,
    now: DateTime<Utc>,
) -> Result<(), AccountError> {
    let forget_before = db::ts(now - Duration::days(KNOWN_ADDRESS_DAYS));
    let mut tx = handles.db.pool.begin().await?;
    login_throttle::remember_address(&mut tx, customer_id, addr, &db::ts(now), &forget_before)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// How many emails are over the limit now, for /metrics.
pub async fn limited_count(
    handles: &AccountsHandles,
    now: DateTime<Utc>,
) -> Result<i64, AccountError> {
    let since = db::ts(now - window(handles));
    let limit = handles.settings.login.login_account_failures;
    Ok(login_throttle::emails_over_limit(&handles.db.pool, &since, limit).await?)
}

#[cfg(test)]
mod tests {
    use super::delay_secs;

    #[test]
    fn the_wait_doubles_past_the_limit_up_to_the_cap() {
        let waits: Vec<u64> = (10..=16).map(|n| delay_secs(n, 10, 900)).collect();
        assert_eq!(waits, [60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(delay_secs(1_000_000, 10, 86_400), 86_400);
        assert_eq!(delay_secs(10, 10, 30), 30);
    }
}
