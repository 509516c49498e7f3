//! Customer licenses: RS256 JWTs carrying the plan's features and limits under the claim names
//! the running instances read, signed with a `kid` so instances verify offline via the JWKS.

pub mod keys;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plans::{Features, Limits, Plan};
pub use keys::KeyRing;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrialClaim {
    pub is_trial_mode: bool,
    /// RFC 3339, or null outside a trial.
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionClaim {
    pub status: String,
    /// RFC 3339, or null while trialing.
    pub current_period_ends_at: Option<String>,
}

/// The license claims, named exactly as the TypeScript service named them.
/// `issuedAt`/`expiresAt` are Unix seconds, like `iat`/`exp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseClaims {
    pub customer_id: String,
    pub customer_name: String,
    pub plan: String,
    pub features: Features,
    pub limits: Limits,
    pub trial: TrialClaim,
    pub subscription: SubscriptionClaim,
    pub issued_at: i64,
    pub expires_at: i64,
    pub iss: String,
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// What the license is for; everything the claims are built from.
pub struct LicenseSubject<'a> {
    pub customer_id: &'a str,
    pub customer_name: &'a str,
    pub plan_name: &'a str,
    pub plan: &'a Plan,
    pub subscription_status: &'a str,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub current_period_ends_at: Option<DateTime<Utc>>,
    /// How long past the paid period's end the license stays valid, so an instance keeps
    /// running while the renewal is paid (zero for a trial or a stopped subscription).
    pub grace_after_period: chrono::Duration,
}

pub struct IssuedLicense {
    pub jwt: String,
    pub claims: LicenseClaims,
    pub kid: String,
    pub token_sha256: String,
}

/// Signs a license valid until the trial ends, or the paid period plus its grace.
pub fn issue(
    ring: &KeyRing,
    issuer: &str,
    subject: &LicenseSubject<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<IssuedLicense> {
    let signing = ring.signing()?;
    let expires = match (subject.trial_ends_at, subject.current_period_ends_at) {
        (Some(trial), _) => trial,
        (None, Some(period)) => period + subject.grace_after_period,
        (None, None) => anyhow::bail!("a license needs a trial or period end"),
    };
    let rfc3339 = |t: DateTime<Utc>| crate::db::ts(t);
    let claims = LicenseClaims {
        customer_id: subject.customer_id.to_string(),
        customer_name: subject.customer_name.to_string(),
        plan: subject.plan_name.to_string(),
        features: subject.plan.features.clone(),
        limits: subject.plan.limits.clone(),
        trial: TrialClaim {
            is_trial_mode: subject.trial_ends_at.is_some(),
            expires_at: subject.trial_ends_at.map(rfc3339),
        },
        subscription: SubscriptionClaim {
            status: subject.subscription_status.to_string(),
            current_period_ends_at: subject.current_period_ends_at.map(rfc3339),
        },
        issued_at: now.timestamp(),
        expires_at: expires.timestamp(),
        iss: issuer.to_string(),
        sub: subject.customer_id.to_string(),
        iat: now.timestamp(),
        exp: expires.timestamp(),
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(signing.kid.clone());
    let jwt = jsonwebtoken::encode(&header, &claims, &signing.encoding)?;
    Ok(IssuedLicense {
        token_sha256: sha256_hex(&jwt),
        kid: signing.kid.clone(),
        jwt,
        claims,
    })
}

pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Why a license does not verify, worded for operators and instances alike.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VerifyError {
    #[error("malformed license: {0}")]
    Malformed(String),
    #[error("license signed with unknown key id {0:?}")]
    UnknownKey(String),
    #[error("license header has no key id and the current key does not verify it")]
    NoKeyId,
    #[error("unsupported algorithm {0}; licenses are RS256")]
    WrongAlgorithm(String),
    #[error("invalid signature")]
    BadSignature,
    #[error("license expired at {0}")]
    Expired(String),
    #[error("license issuer is not {0:?}")]
    WrongIssuer(String),
    #[error("invalid license claims: {0}")]
    BadClaims(String),
}

/// Verifies signature, algorithm, issuer and expiry (no leeway) and returns the claims.
pub fn verify(ring: &KeyRing, issuer: &str, token: &str) -> Result<LicenseClaims, VerifyError> {
    use jsonwebtoken::errors::ErrorKind;
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if header.alg != Algorithm::RS256 {
        return Err(VerifyError::WrongAlgorithm(format!("{:?}", header.alg)));
    }
    let key = match &header.kid {
        Some(kid) => ring
            .find(kid)
            .ok_or_else(|| VerifyError::UnknownKey(kid.clone()))?,
        None => ring.verifying.first().ok_or(VerifyError::NoKeyId)?,
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    match jsonwebtoken::decode::<LicenseClaims>(token, &key.decoding, &validation) {
        Ok(data) => Ok(data.claims),
        Err(err) => Err(match err.kind() {
            ErrorKind::InvalidSignature => VerifyError::BadSignature,
            ErrorKind::ExpiredSignature => VerifyError::Expired(expiry_of(token)),
            ErrorKind::InvalidIssuer => VerifyError::WrongIssuer(issuer.to_string()),
            ErrorKind::Json(e) => VerifyError::BadClaims(e.to_string()),
            ErrorKind::MissingRequiredClaim(c) => VerifyError::BadClaims(format!("missing {c}")),
            _ => VerifyError::Malformed(err.to_string()),
        }),
    }
}

/// Best-effort expiry time of a token already known to be correctly signed.
fn expiry_of(token: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["exp"].as_i64())
        .and_then(|exp| DateTime::<Utc>::from_timestamp(exp, 0))
        .map(crate::db::ts)
        .unwrap_or_else(|| "an unknown time".into())
}

#[cfg(test)]
mod tests {
    use super::keys::KeyPaths;
    use super::*;
    use crate::plans::Catalogue;

    fn ring(dir: &std::path::Path) -> KeyRing {
        KeyRing::load_or_generate(&KeyPaths {
            private: dir.join("p.pem"),
            public: dir.join("pub.pem"),
            retired_dir: dir.join("retired"),
        })
        .unwrap()
    }

    fn subject<'a>(plan: &'a Plan, trial_end: DateTime<Utc>) -> LicenseSubject<'a> {
        LicenseSubject {
            customer_id: "c1234567890a",
            customer_name: "Acme",
            plan_name: "starter",
            plan,
            subscription_status: "trialing",
            trial_ends_at: Some(trial_end),
            current_period_ends_at: None,
            grace_after_period: chrono::Duration::zero(),
        }
    }

    #[test]
    fn a_paid_license_outlives_its_period_by_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let ring = ring(dir.path());
        let catalogue = Catalogue::builtin().unwrap();
        let plan = catalogue.get("starter").unwrap();
        let now = Utc::now();
        let period_end = now + chrono::Duration::days(30);
        let paid = LicenseSubject {
            subscription_status: "active",
            trial_ends_at: None,
            current_period_ends_at: Some(period_end),
            grace_after_period: chrono::Duration::days(7),
            ..subject(plan, now)
        };
        let claims = issue(&ring, "iss", &paid, now).unwrap().claims;
        assert_eq!(
            claims.exp,
            (period_end + chrono::Duration::days(7)).timestamp()
        );
        assert_eq!(
            claims.subscription.current_period_ends_at,
            Some(crate::db::ts(period_end))
        );
        assert!(!claims.trial.is_trial_mode);
    }

    #[test]
    fn issued_license_verifies_and_tampering_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let ring = ring(dir.path());
        let catalogue = Catalogue::builtin().unwrap();
        let plan = catalogue.get("starter").unwrap();
        let now = Utc::now();
        let issued = issue(
            &ring,
            "iss",
            &subject(plan, now + chrono::Duration::days(14)),
            now,
        )
        .unwrap();
        let claims = verify(&ring, "iss", &issued.jwt).unwrap();
        assert_eq!(claims, issued.claims);
        assert!(claims.trial.is_trial_mode);
        assert_eq!(claims.exp - claims.iat, 14 * 86400);

        assert_eq!(
            verify(&ring, "other", &issued.jwt),
            Err(VerifyError::WrongIssuer("other".into()))
        );
        // Upgrading one's own plan in the payload breaks the signature.
        use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
        let mut parts: Vec<String> = issued.jwt.split('.').map(String::from).collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        payload["plan"] = "enterprise".into();
        parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
        assert_eq!(
            verify(&ring, "iss", &parts.join(".")),
            Err(VerifyError::BadSignature)
        );
        assert!(matches!(
            verify(&ring, "iss", "not-a-jwt"),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn expired_license_says_when() {
        let dir = tempfile::tempdir().unwrap();
        let ring = ring(dir.path());
        let catalogue = Catalogue::builtin().unwrap();
        let plan = catalogue.get("starter").unwrap();
        let then = Utc::now() - chrono::Duration::days(30);
        let issued = issue(
            &ring,
            "iss",
            &subject(plan, then + chrono::Duration::days(14)),
            then,
        )
        .unwrap();
        match verify(&ring, "iss", &issued.jwt) {
            Err(VerifyError::Expired(at)) => {
                assert!(at.starts_with(&crate::db::ts(then + chrono::Duration::days(14))[..10]))
            }
            other => panic!("expected expiry, got {other:?}"),
        }
    }
}
