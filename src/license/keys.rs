//! License signing keys: load or generate the RSA pair, derive each key's `kid` (RFC 7638
//! thumbprint) and keep retired public keys so licenses they signed still verify.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const KEY_BITS: usize = 2048;

/// A public key in the form the JWKS publishes and verification uses.
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: String,
    pub n: String,
    pub e: String,
    pub public_pem: String,
    pub decoding: DecodingKey,
}

pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
}

/// The current signing key (absent in verify-only use) and every key that verifies.
pub struct KeyRing {
    pub signing: Option<SigningKey>,
    pub verifying: Vec<VerifyingKey>,
}

#[derive(Serialize)]
pub struct Jwk<'a> {
    pub kty: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub alg: &'static str,
    pub kid: &'a str,
    pub n: &'a str,
    pub e: &'a str,
}

impl VerifyingKey {
    pub fn from_public(key: &RsaPublicKey) -> anyhow::Result<Self> {
        let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
        let decoding = DecodingKey::from_rsa_components(&n, &e)?;
        Ok(VerifyingKey {
            kid: thumbprint(&n, &e),
            n,
            e,
            public_pem: key.to_public_key_pem(LineEnding::LF)?,
            decoding,
        })
    }

    pub fn jwk(&self) -> Jwk<'_> {
        Jwk {
            kty: "RSA",
            use_: "sig",
            alg: "RS256",
            kid: &self.kid,
            n: &self.n,
            e: &self.e,
        }
    }
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order.
pub fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

pub struct KeyPaths {
    pub private: PathBuf,
    pub public: PathBuf,
    pub retired_dir: PathBuf,
}

impl KeyRing {
    /// Loads the signing pair, generating it first when neither file exists.
    pub fn load_or_generate(paths: &KeyPaths) -> anyhow::Result<Self> {
        if !paths.private.exists() {
            if paths.public.exists() {
                bail!(
                    "license public key {} exists but its private key {} does not",
                    paths.public.display(),
                    paths.private.display()
                );
            }
            tracing::info!(path = %paths.private.display(), "generating a new RSA-{KEY_BITS} license key pair");
            write_new_pair(&paths.private, &paths.public)?;
        }
        let private = read_private_key(&paths.private)?;
        let public = RsaPublicKey::from(&private);
        if paths.public.exists() {
            if read_public_key(&paths.public)? != public {
                bail!(
                    "license public key {} does not match private key {}",
                    paths.public.display(),
                    paths.private.display()
                );
            }
        } else {
            write_public_key(&paths.public, &public)?;
        }
        let current = VerifyingKey::from_public(&public)?;
        let pem = private.to_pkcs8_pem(LineEnding::LF)?;
        let signing = SigningKey {
            kid: current.kid.clone(),
            encoding: EncodingKey::from_rsa_pem(pem.as_bytes())?,
        };
        let mut verifying = vec![current];
        verifying.extend(read_retired(&paths.retired_dir)?);
        Ok(KeyRing {
            signing: Some(signing),
            verifying,
        })
    }

    /// Verification only: the current public key (or the one derived from the private key)
    /// plus the retired keys. Never generates anything.
    pub fn load_verifying(paths: &KeyPaths) -> anyhow::Result<Self> {
        let public = if paths.public.exists() {
            read_public_key(&paths.public)?
        } else if paths.private.exists() {
            RsaPublicKey::from(&read_private_key(&paths.private)?)
        } else {
            bail!("no license key found at {}", paths.public.display());
        };
        let mut verifying = vec![VerifyingKey::from_public(&public)?];
        verifying.extend(read_retired(&paths.retired_dir)?);
        Ok(KeyRing {
            signing: None,
            verifying,
        })
    }

    pub fn find(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifying.iter().find(|k| k.kid == kid)
    }

    pub fn signing(&self) -> anyhow::Result<&SigningKey> {
        self.signing
            .as_ref()
            .context("no license signing key loaded")
    }
}

/// Generates a fresh pair and writes it; the private key file is readable by its owner only.
pub fn write_new_pair(private_path: &Path, public_path: &Path) -> anyhow::Result<String> {
    let private = RsaPrivateKey::new(&mut rand::thread_rng(), KEY_BITS)?;
    let pem = private.to_pkcs8_pem(LineEnding::LF)?;
    write_secret_file(private_path, pem.as_bytes())?;
    let public = RsaPublicKey::from(&private);
    write_public_key(public_path, &public)?;
    Ok(VerifyingKey::from_public(&public)?.kid)
}

/// Moves the current public key into the retired directory and writes a new pair in place.
/// Returns (retired kid, new kid).
pub fn rotate(paths: &KeyPaths) -> anyhow::Result<(String, String)> {
    let old = KeyRing::load_verifying(paths)?;
    let old_kid = old.verifying[0].kid.clone();
    let public = if paths.public.exists() {
        read_public_key(&paths.public)?
    } else {
        RsaPublicKey::from(&read_private_key(&paths.private)?)
    };
    fs::create_dir_all(&paths.retired_dir)?;
    write_public_key(&paths.retired_dir.join(format!("{old_kid}.pem")), &public)?;
    let new_kid = write_new_pair(&paths.private, &paths.public)?;
    Ok((old_kid, new_kid))
}

pub fn write_secret_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

fn write_public_key(path: &Path, key: &RsaPublicKey) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, key.to_public_key_pem(LineEnding::LF)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn read_private_key(path: &Path) -> anyhow::Result<RsaPrivateKey> {
    let pem = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    RsaPrivateKey::from_pkcs8_pem(&pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
        .with_context(|| format!("{} is not an RSA private key in PEM", path.display()))
}

fn read_public_key(path: &Path) -> anyhow::Result<RsaPublicKey> {
    let pem = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    RsaPublicKey::from_public_key_pem(&pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(&pem))
        .with_context(|| format!("{} is not an RSA public key in PEM", path.display()))
}

fn read_retired(dir: &Path) -> anyhow::Result<Vec<VerifyingKey>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| VerifyingKey::from_public(&read_public_key(p)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // The example key of RFC 7638 section 3.1 and its published thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn generated_keys_load_and_rotation_keeps_the_old_key() {
        let dir = tempfile::tempdir().unwrap();
        let paths = KeyPaths {
            private: dir.path().join("k/private.pem"),
            public: dir.path().join("k/public.pem"),
            retired_dir: dir.path().join("k/retired"),
        };
        let ring = KeyRing::load_or_generate(&paths).unwrap();
        let first_kid = ring.signing().unwrap().kid.clone();
        // Reloading reuses the pair rather than generating another.
        let again = KeyRing::load_or_generate(&paths).unwrap();
        assert_eq!(again.signing().unwrap().kid, first_kid);

        let (retired, new) = rotate(&paths).unwrap();
        assert_eq!(retired, first_kid);
        assert_ne!(new, first_kid);
        let ring = KeyRing::load_or_generate(&paths).unwrap();
        assert_eq!(ring.signing().unwrap().kid, new);
        assert!(ring.find(&first_kid).is_some());
        assert_eq!(ring.verifying.len(), 2);
    }
}
