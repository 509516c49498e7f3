//! Login throttling: brute force is stopped without letting anyone lock a customer out.
//!
//! A lockout keyed on the email alone is a weapon: whoever knows a customer's email can keep
//! them out by failing five times. So failures are counted per (email, client address), and
//! five in 15 minutes lock only that pair: the attacker's address, not the customer's. One
//! address trying many emails (credential stuffing, or guessing one email per pair) is capped
//! separately at twenty failures in 15 minutes across all emails. IPv6 clients are counted
//! per /64, the smallest block one subscriber is usually given, so rotating addresses within
//! it buys nothing. A success forgets only its own pair's failures: logging in to one's own
//! account does not reset the address's budget for guessing other people's. Guesses at one
//! account from many addresses meet the per-account limit of `account_limit`, checked last.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

use crate::accounts::AccountError;
use crate::accounts::AccountsHandles;
use crate::db::{self, login_throttle, login_throttle::Scope};

/// Failures of one email from one address before that pair is locked.
pub const MAX_FAILURES: i64 = 5;
/// Failures from one address, whatever the emails, before that address is locked.
pub const MAX_ADDRESS_FAILURES: i64 = 20;
pub const FAILURE_WINDOW_MINUTES: i64 = 15;

/// What a failure is counted against: the client address as the throttle sees it.
pub fn client_key(client_ip: Option<&str>) -> String {
    let Some(text) = client_ip else {
        return "unknown".to_string();
    };
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(ip) => ip.to_string(),
        // Not an address (a proxy's odd header): counted as given, bounded.
        Err(_) => text.chars().take(64).collect(),
    }
}

/// Which limit a locked-out login hit, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    Pair,
    Address,
    Account,
}

impl Locked {
    pub fn as_str(self) -> &'static str {
        match self {
            Locked::Pair => "email_and_address",
            Locked::Address => "address",
            Locked::Account => "account",
        }
    }

    /// The `reason` label of the login failures metric.
    pub fn metric_reason(self) -> &'static str {
        match self {
            Locked::Pair => "pair_limit",
            Locked::Address => "address_limit",
            Locked::Account => "account_limit",
        }
    }
}

/// The limit hit and the seconds until the oldest failure counted leaves the window.
pub async fn locked_out(
    handles: &AccountsHandles,
    email: &str,
    addr: &str,
    now: DateTime<Utc>,
) -> Result<Option<(Locked, u64)>, AccountError> {
    let window = Duration::minutes(FAILURE_WINDOW_MINUTES);
    let since = db::ts(now - window);
    let checks = [
        (Locked::Pair, Scope::Pair { email, addr }, MAX_FAILURES),
        (Locked::Address, Scope::Address(addr), MAX_ADDRESS_FAILURES),
    ];
    for (locked, scope, limit) in checks {
        let (count, oldest) =
            login_throttle::failures_since(&handles.db.pool, scope, &since).await?;
        if count >= limit {
            let oldest = oldest
                .as_deref()
                .map(db::parse_ts)
                .transpose()?
                .unwrap_or(now);
            let wait = (oldest + window - now).num_seconds().max(1);
            return Ok(Some((locked, wait as u64)));
        }
    }
    let account = super::account_limit::locked_out(handles, email, addr, now).await?;
    Ok(account.map(|wait| (Locked::Account, wait)))
}

/// Counts a failure, and drops those too old to count for anything.
pub async fn record_failure(
    handles: &AccountsHandles,
    email: &str,
    addr: &str,
    now: DateTime<Utc>,
) -> Result<(), AccountError> {
    login_throttle::record_failure(&handles.db.pool, email, addr, &db::ts(now)).await?;
    // Kept for the longer of the two windows: the per-account one may be set longer.
    let minutes = FAILURE_WINDOW_MINUTES.max(handles.settings.login.login_account_window_minutes);
    login_throttle::prune(&handles.db.pool, &db::ts(now - Duration::minutes(minutes))).await?;
    Ok(())
}

pub async fn forget_pair(
    handles: &AccountsHandles,
    email: &str,
    addr: &str,
) -> Result<(), AccountError> {
    Ok(login_throttle::clear_pair(&handles.db.pool, email, addr).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_keyed_per_ipv4_address_and_ipv6_slash_64() {
        assert_eq!(client_key(Some("203.0.113.7")), "203.0.113.7");
        assert_eq!(client_key(Some("::ffff:203.0.113.7")), "203.0.113.7");
        assert_eq!(
            client_key(Some("2001:db8:1:2:aaaa::1")),
            client_key(Some("2001:db8:1:2:ffff:1:2:3"))
        );
        assert_ne!(
            client_key(Some("2001:db8:1:2::1")),
            client_key(Some("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(None), "unknown");
        assert_eq!(client_key(Some(&"x".repeat(500))).len(), 64);
    }
}
