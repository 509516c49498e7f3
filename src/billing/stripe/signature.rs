//! `Stripe-Signature` as Stripe documents it: `t=<unix time>,v1=<hex>[,v1=<hex>…][,v0=…]`,
//! each v1 the hex HMAC-SHA256 of `<t>.<raw body>` under the endpoint's secret. Any v1 matching
//! any configured secret (several during a rotation) passes, compared in constant time; the
//! timestamp must be within the tolerance of now, so a captured request cannot be replayed.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Stripe's libraries' default tolerance (a setting, so it lives with the settings).
pub use crate::config::STRIPE_DEFAULT_TOLERANCE_SECONDS as DEFAULT_TOLERANCE_SECONDS;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("Stripe-Signature must be t=<unix time>,v1=<hex signature>")]
    Malformed,
    #[error("Stripe-Signature carries no v1 signature")]
    NoV1,
    #[error("no v1 signature in Stripe-Signature matches the body")]
    Mismatch,
    #[error("Stripe-Signature timestamp is {age} s from now, beyond the {tolerance} s tolerance")]
    Stale { age: i64, tolerance: i64 },
    #[error("STRIPE_WEBHOOK_SECRET is not set: Stripe webhooks cannot be verified")]
    NotConfigured,
}

/// The hex signature Stripe puts in `v1` for `body` sent at `t` under `secret`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks the header against the raw body; returns its timestamp.
pub fn verify(
    secrets: &[&str],
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<i64, SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NotConfigured);
    }
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" => {
                t = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            "v1" => v1.push(value),
            // v0 (test-mode legacy) and schemes to come are not ours to check.
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::NoV1);
    }
    let matched = secrets.iter().any(|secret| {
        let expected = sign(secret, t, body);
        v1.iter()
            .any(|given| bool::from(expected.as_bytes().ct_eq(given.as_bytes())))
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let age = now - t;
    if age.abs() > tolerance {
        return Err(SignatureError::Stale { age, tolerance });
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
    const T: i64 = 1_700_000_000;

    #[test]
    fn matches_an_independent_hmac() {
        // printf '1700000000.{"id":"evt_1","object":"event"}' |
        //   openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign("whsec_test", T, BODY),
            "4c15fb2a43f93ef61eaa3e0893866d57cad9cad4223242cfb96f362480cb4021"
        );
    }

    #[test]
    fn accepts_any_v1_under_any_secret() {
        let good = sign("whsec_new", T, BODY);
        let header = format!("t={T},v1={},v1={good},v0=ignored", "00".repeat(32));
        assert_eq!(
            verify(
                &["whsec_old", "whsec_new"],
                Some(&header),
                BODY,
                T + 10,
                300
            ),
            Ok(T)
        );
        assert_eq!(
            verify(&["whsec_old"], Some(&header), BODY, T, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn refuses_what_stripe_refuses() {
        let sig = sign("s", T, BODY);
        let ok = format!("t={T},v1={sig}");
        let check = |h: Option<&str>, body: &[u8], now: i64| verify(&["s"], h, body, now, 300);
        assert_eq!(check(None, BODY, T), Err(SignatureError::Missing));
        assert_eq!(
            check(Some("garbage"), BODY, T),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(Some(&format!("v1={sig}")), BODY, T),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(Some(&format!("t={T},v0={sig}")), BODY, T),
            Err(SignatureError::NoV1)
        );
        assert_eq!(check(Some(&ok), b"{}", T), Err(SignatureError::Mismatch));
        assert_eq!(
            check(Some(&format!("t={},v1={sig}", T + 1)), BODY, T),
            Err(SignatureError::Mismatch),
            "the timestamp is signed"
        );
        assert_eq!(
            check(Some(&ok), BODY, T + 301),
            Err(SignatureError::Stale {
                age: 301,
                tolerance: 300
            })
        );
        assert_eq!(check(Some(&ok), BODY, T + 300), Ok(T));
        assert_eq!(
            verify(&[], Some(&ok), BODY, T, 300),
            Err(SignatureError::NotConfigured)
        );
    }
}
