//! Customer session tokens: short-lived HS256 JWTs with their own secret and audience, so a
//! session token is never mistaken for a license and vice versa.

use std::path::Path;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

const AUDIENCE: &str = "billing-session";

pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SessionClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

impl SessionKeys {
    pub fn from_secret(secret: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            secret.len() >= 32,
            "SESSION_SECRET must be at least 32 bytes"
        );
        Ok(SessionKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        })
    }

    /// Reads the secret from `path`, creating a random one (owner-readable only) on first use.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            let mut secret = [0u8; 48];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            crate::license::keys::write_secret_file(path, STANDARD.encode(secret).as_bytes())?;
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading session secret {}", path.display()))?;
        let secret = STANDARD
            .decode(text.trim())
            .with_context(|| format!("{} is not base64", path.display()))?;
        Self::from_secret(&secret)
    }

    pub fn issue(
        &self,
        issuer: &str,
        customer_id: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        let expires = now + ttl;
        let claims = SessionClaims {
            iss: issuer.to_string(),
            sub: customer_id.to_string(),
            aud: AUDIENCE.to_string(),
            iat: now.timestamp(),
            exp: expires.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, expires))
    }

    /// The customer id a valid, unexpired session token belongs to.
    pub fn verify(&self, issuer: &str, token: &str) -> Option<String> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[issuer]);
        validation.leeway = 0;
        jsonwebtoken::decode::<SessionClaims>(token, &self.decoding, &validation)
            .ok()
            .map(|d| d.claims.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_secret_and_before_expiry() {
        let keys = SessionKeys::from_secret(&[7u8; 32]).unwrap();
        let other = SessionKeys::from_secret(&[8u8; 32]).unwrap();
        let now = Utc::now();
        let (token, _) = keys.issue("iss", "c1", now, Duration::minutes(5)).unwrap();
        assert_eq!(keys.verify("iss", &token).as_deref(), Some("c1"));
        assert_eq!(other.verify("iss", &token), None);
        assert_eq!(keys.verify("other", &token), None);
        let (old, _) = keys
            .issue("iss", "c1", now - Duration::hours(2), Duration::minutes(5))
            .unwrap();
        assert_eq!(keys.verify("iss", &old), None);
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(SessionKeys::from_secret(b"short").is_err());
    }
}
