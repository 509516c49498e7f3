//! Each cluster's event credential: the key its Flux Provider signs events with (generic-hmac)
//! and the bearer token its argocd-notifications webhook sends. HMAC verification needs the
//! secret itself, so the database keeps it encrypted (AES-256-GCM under the cluster-secrets key,
//! the cluster's name as associated data, so a ciphertext copied onto another cluster's row
//! does not open); the plain secret is printed once by `billing cluster add|rotate-secret`.
//!
//! The cluster-secrets key is `CLUSTER_SECRETS_KEY` (any string of at least 32 bytes; its
//! SHA-256 is the AES key) or `<DATA_DIR>/keys/cluster-secrets.key`, generated (0600) on first
//! use. The CLI and every replica must share it, as they share `SESSION_SECRET`.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;
use secrecy::zeroize::Zeroizing;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// Prefix of a stored ciphertext, naming the scheme (so a later one can coexist).
const SCHEME: &str = "v1:";
const NONCE_BYTES: usize = 12;
const KEY_FILE: &str = "cluster-secrets.key";

/// The key that encrypts the clusters' event secrets at rest.
#[derive(Clone)]
pub struct EventKey {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for EventKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the stored event secret is not a v1 ciphertext")]
    Malformed,
    /// Another cluster-secrets key sealed it, or the row was tampered with.
    #[error("the stored event secret does not open with this CLUSTER_SECRETS_KEY")]
    WrongKey,
}

impl EventKey {
    pub fn from_secret(secret: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            secret.len() >= 32,
            "CLUSTER_SECRETS_KEY must be at least 32 bytes"
        );
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&Sha256::digest(secret));
        Ok(EventKey { key })
    }

    /// Reads the key from `path`, creating a random one (owner-readable only) on first use.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            let mut secret = [0u8; 48];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            crate::license::keys::write_secret_file(path, STANDARD.encode(secret).as_bytes())?;
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading cluster secrets key {}", path.display()))?;
        Self::from_secret(text.trim().as_bytes())
    }

    /// `CLUSTER_SECRETS_KEY` when set, else the key file under the keys directory.
    pub fn configured(secret: Option<&SecretString>, keys_dir: &Path) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        match secret {
            Some(s) => Self::from_secret(s.expose_secret().as_bytes()),
            None => Self::load_or_generate(&keys_dir.join(KEY_FILE)),
        }
    }

    /// `v1:<base64(nonce || ciphertext+tag)>`, bound to `cluster`.
    pub fn seal(&self, cluster: &str, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.key[..]));
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: cluster.as_bytes(),
        };
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("AES-GCM encrypts any message under 64 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{SCHEME}{}", STANDARD.encode(out))
    }

    /// The plain secret of `cluster` from what [`EventKey::seal`] stored.
    pub fn open(&self, cluster: &str, stored: &str) -> Result<SecretString, OpenError> {
        let bytes = stored
            .strip_prefix(SCHEME)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > NONCE_BYTES)
            .ok_or(OpenError::Malformed)?;
        let (nonce, ct) = bytes.split_at(NONCE_BYTES);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.key[..]));
        let payload = Payload {
            msg: ct,
            aad: cluster.as_bytes(),
        };
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| OpenError::WrongKey)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| OpenError::Malformed)
    }
}

/// A fresh event secret: 32 random bytes as 64 hex digits (a valid HTTP header value and a
/// Kubernetes Secret `token` as it is).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn opens_only_for_its_cluster_and_key() {
        let key = EventKey::from_secret(&[7u8; 32]).unwrap();
        let secret = generate();
        let stored = key.seal("eu-1", &secret);
        assert!(!stored.contains(&secret));
        assert_eq!(key.open("eu-1", &stored).unwrap().expose_secret(), secret);
        assert!(matches!(
            key.open("eu-2", &stored),
            Err(OpenError::WrongKey)
        ));
        let other = EventKey::from_secret(&[8u8; 32]).unwrap();
        assert!(matches!(
            other.open("eu-1", &stored),
            Err(OpenError::WrongKey)
        ));
        assert!(matches!(
            key.open("eu-1", "plain"),
            Err(OpenError::Malformed)
        ));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(EventKey::from_secret(b"short").is_err());
    }
}
