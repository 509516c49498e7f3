//! Password hashing: argon2id with the crate's defaults (OWASP: m=19 MiB, t=2, p=1); legacy
//! bcrypt hashes imported from the old service verify too and are flagged for rehashing.

use std::cell::RefCell;
use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::pool::Pool;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Match { needs_rehash: bool },
    Mismatch,
}

/// Password hashing: one thread per core (each argon2 run takes 19 MiB and a whole core, so
/// more at once only adds latency). A thread idle for [`crate::pool::IDLE_AFTER`] frees its
/// argon2 memory, so a server between signup bursts does not hold 19 MiB a core.
pub static HASHING: LazyLock<Pool> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Pool::with_idle("password-hash", cores, Some(release_working_memory))
});

thread_local! {
    /// Each hashing thread keeps its argon2 working memory (19 MiB) for the next hash while it
    /// is busy. A fresh allocation per hash either faults in 19 MiB of zeroed pages every time
    /// or, once glibc raises its mmap threshold, strands it in per-thread malloc arenas
    /// (hundreds of MB). An idle thread gives it back: [`release_working_memory`].
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Frees this thread's argon2 working memory and returns it to the OS. The hashing pool calls
/// it when a thread has been idle for a while.
pub fn release_working_memory() {
    BLOCKS.with(|memory| *memory.borrow_mut() = Vec::new());
    crate::pool::return_free_memory();
}

/// argon2id (or the `algorithm` of a stored hash) of `password` into `out`, in this thread's
/// reused working memory.
fn argon2_into(
    algorithm: Algorithm,
    params: Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let blocks = params.block_count();
    let hasher = Argon2::new(algorithm, Version::V0x13, params);
    BLOCKS.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        hasher.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
    })
}

pub fn hash(password: &str) -> anyhow::Result<String> {
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("hashing password: {e}");
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(|e| fail(&e))?;
    let params = Params::default();
    let mut out = vec![0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(
        Algorithm::Argon2id,
        params.clone(),
        password.as_bytes(),
        salt_bytes,
        &mut out,
    )
    .map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| fail(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches an argon2 PHC string (constant-time comparison).
fn argon2_matches(password: &str, parsed: &PasswordHash<'_>) -> bool {
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let Ok(params) = Params::try_from(parsed) else {
        return false;
    };
    if parsed
        .version
        .is_some_and(|v| v != u32::from(Version::V0x13))
    {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    argon2_into(algorithm, params, password.as_bytes(), salt, &mut out).is_ok()
        && Output::new(&out).is_ok_and(|computed| computed == expected)
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
    match argon2_matches(password, &parsed) {
        true => Verdict::Match {
            // Hashes made with other parameters are upgraded on the next login too.
            needs_rehash: parsed.algorithm != argon2::ARGON2ID_IDENT
                || argon2::Params::try_from(&parsed).map_or(true, |p| {
                    let want = Params::default();
                    (p.m_cost(), p.t_cost(), p.p_cost())
                        != (want.m_cost(), want.t_cost(), want.p_cost())
                }),
        },
        false => Verdict::Mismatch,
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

    #[tokio::test]
    async fn hashing_works_after_its_memory_was_released() {
        HASHING.run(release_working_memory).await.unwrap();
        let hash = HASHING
            .run(|| hash("after release"))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            verify("after release", &hash),
            Verdict::Match { .. }
        ));
    }

    /// Hashes made by the argon2 crate's own PHC API verify here, and ours verify there.
    #[test]
    fn interoperates_with_the_argon2_crate() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"interop", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            verify("interop", &theirs),
            Verdict::Match {
                needs_rehash: false
            }
        );
        assert_eq!(verify("interop!", &theirs), Verdict::Mismatch);
        let ours = hash("interop").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"interop", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"other", &parsed)
            .is_err());
        // Other parameters (an older, cheaper hash) still verify, and are flagged for rehashing.
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, None).unwrap(),
        )
        .hash_password(b"interop", &salt)
        .unwrap()
        .to_string();
        assert_eq!(
            verify("interop", &cheap),
            Verdict::Match { needs_rehash: true }
        );
    }

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
