//! Password hashing: argon2id with the crate's defaults (OWASP: m=19 MiB, t=2, p=1); legacy
//! bcrypt hashes imported from the old service verify too and are flagged for rehashing.

use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Match { needs_rehash: bool },
    Mismatch,
}

pub fn hash(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

fn is_bcrypt(stored: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|p| stored.starts_with(p))
}

/// Checks a password against a stored hash of either kind. Unknown formats never match.
pub fn verify(password: &str, stored: &str) -> Verdict {
    if is_bcrypt(stored) {
        return match bcrypt::verify(password, stored) {
            Ok(true) => Verdict::Match { needs_rehash: true },
            _ => Verdict::Mismatch,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Verdict::Mismatch;
    };
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Verdict::Match {
            // Hashes made with other parameters are upgraded on the next login too.
            needs_rehash: parsed.algorithm != argon2::ARGON2ID_IDENT
                || argon2::Params::try_from(&parsed).map_or(true, |p| {
                    let want = Argon2::default().params().clone();
                    (p.m_cost(), p.t_cost(), p.p_cost())
                        != (want.m_cost(), want.t_cost(), want.p_cost())
                }),
        },
        Err(_) => Verdict::Mismatch,
    }
}

/// A real argon2id hash to verify against when the email is unknown, so that an unknown email
/// costs the same time as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: LazyLock<String> = LazyLock::new(|| {
        hash("timing-equaliser-not-a-password").expect("argon2 with default params")
    });
    &DUMMY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(
            verify("correct horse", &h),
            Verdict::Match {
                needs_rehash: false
            }
        );
        assert_eq!(verify("wrong horse", &h), Verdict::Mismatch);
    }

    #[test]
    fn legacy_bcrypt_verifies_and_asks_for_rehash() {
        let h = bcrypt::hash("legacy-pass", 10).unwrap();
        assert!(h.starts_with("$2b$10$"));
        assert_eq!(
            verify("legacy-pass", &h),
            Verdict::Match { needs_rehash: true }
        );
        assert_eq!(verify("legacy-pasz", &h), Verdict::Mismatch);
        let a = h.replacen("$2b$", "$2a$", 1);
        assert_eq!(
            verify("legacy-pass", &a),
            Verdict::Match { needs_rehash: true }
        );
    }

    #[test]
    fn garbage_hashes_never_match() {
        assert_eq!(verify("", ""), Verdict::Mismatch);
        assert_eq!(verify("x", "plaintext"), Verdict::Mismatch);
    }
}
