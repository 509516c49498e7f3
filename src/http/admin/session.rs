//! The admin page's session and CSRF tokens, stateless and keyed by the admin token itself:
//! every replica that knows `ADMIN_API_TOKEN` accepts the cookie, and changing the token ends
//! every session at once. Cookies are HttpOnly and SameSite=Strict (Secure behind TLS).

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "billing_admin";
pub const LOGIN_CSRF_COOKIE: &str = "billing_admin_login";
/// How long a login lasts.
const SESSION_SECONDS: i64 = 12 * 3600;

/// Keys derived from the admin token.
pub struct AdminKeys {
    key: Vec<u8>,
}

/// A valid session: its nonce binds the CSRF token of every form it is shown.
pub struct AdminSession {
    nonce: String,
}

impl AdminKeys {
    pub fn from_admin_token(token: &str) -> AdminKeys {
        AdminKeys {
            key: mac(token.as_bytes(), &["billing admin page v1"]),
        }
    }

    /// A new session cookie value, valid for 12 hours from `now` (Unix seconds).
    pub fn issue(&self, now: i64) -> String {
        let nonce = random_hex();
        let expires = now + SESSION_SECONDS;
        let tag = hex::encode(mac(&self.key, &["session", &expires.to_string(), &nonce]));
        format!("{expires}.{nonce}.{tag}")
    }

    /// The session a cookie value proves, if its tag is ours and it has not expired.
    pub fn verify(&self, cookie: &str, now: i64) -> Option<AdminSession> {
        let mut parts = cookie.splitn(3, '.');
        let (expires, nonce, tag) = (parts.next()?, parts.next()?, parts.next()?);
        let expected = hex::encode(mac(&self.key, &["session", expires, nonce]));
        let valid: bool = expected.as_bytes().ct_eq(tag.as_bytes()).into();
        (valid && expires.parse::<i64>().ok()? > now).then(|| AdminSession {
            nonce: nonce.to_string(),
        })
    }

    /// The CSRF token forms of `session` carry.
    pub fn csrf_token(&self, session: &AdminSession) -> String {
        hex::encode(mac(&self.key, &["csrf", &session.nonce]))
    }

    pub fn csrf_matches(&self, session: &AdminSession, given: &str) -> bool {
        same(&self.csrf_token(session), given)
    }
}

fn mac(key: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part.as_bytes());
    }
    m.finalize().into_bytes().to_vec()
}

pub fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A cookie's value from the request.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Adds a `Set-Cookie` for the admin pages (`max_age` 0 deletes it).
pub fn set_cookie(headers: &mut HeaderMap, name: &str, value: &str, max_age: i64, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{name}={value}; Path=/admin; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.append(SET_COOKIE, value);
    }
}

pub const fn session_seconds() -> i64 {
    SESSION_SECONDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_die_with_the_token_and_bind_their_csrf_token() {
        let keys = AdminKeys::from_admin_token("admin-token");
        let cookie = keys.issue(1000);
        let session = keys.verify(&cookie, 1001).expect("fresh session");
        assert!(
            keys.verify(&cookie, 1000 + SESSION_SECONDS).is_none(),
            "expired"
        );
        let rotated = AdminKeys::from_admin_token("new-token");
        assert!(
            rotated.verify(&cookie, 1001).is_none(),
            "a new token ends sessions"
        );
        let forged = cookie.replace('.', "9.");
        assert!(keys.verify(&forged, 1001).is_none());

        let csrf = keys.csrf_token(&session);
        assert!(keys.csrf_matches(&session, &csrf));
        let other = keys.verify(&keys.issue(1000), 1001).unwrap();
        assert!(
            !keys.csrf_matches(&other, &csrf),
            "CSRF tokens are per session"
        );
        assert!(!keys.csrf_matches(&session, ""));
    }
}
