//! Seals tenant secrets into values a Bitnami sealed-secrets controller can decrypt, so they can live in Git.
//!
//! Format (mirrors `HybridEncrypt` in bitnami-labs/sealed-secrets `pkg/crypto/crypto.go`):
//! `u16 BE len(rsa_ct) || rsa_ct || aes_gcm_ct+tag`, where `rsa_ct` is RSA-OAEP(SHA-256, MGF1-SHA-256)
//! of a fresh 32-byte AES-256 key with label `<namespace>/<name>` (strict scope), and the AES-GCM nonce
//! is all zeroes (each key seals exactly one value). `spec.encryptedData` holds standard base64 of it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use anyhow::{bail, ensure, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use openssl::md::Md;
use openssl::pkey::{PKey, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use rand::RngCore;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use secrecy::zeroize::Zeroizing;
use sha2::Sha256;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::{Decode, Encode, EncodePem};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;
use x509_cert::Certificate;

/// The controller's default `--key-size`.
pub const KEY_BITS: usize = 4096;
/// The controller's default `--key-ttl` (10 years); kubeseal refuses expired certificates.
const CERT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
const CERT_CN: &str = "sealed-secrets-local";
const CERT_FILE: &str = "sealing-cert.pem";
const PRIVATE_FILE: &str = "sealing-private.pem";
const SESSION_KEY_BYTES: usize = 32;
/// AES-GCM standard nonce size; the controller uses `aed.NonceSize()` zero bytes.
const NONCE_BYTES: usize = 12;
const GCM_TAG_BYTES: usize = 16;

/// The sealed-secrets controller's RSA public key, which is all that sealing needs.
#[derive(Clone, Debug)]
pub struct SealingKey {
    public: RsaPublicKey,
    /// The same key, parsed once for OpenSSL, which does the encryption.
    openssl: PKey<Public>,
}

impl PartialEq for SealingKey {
    fn eq(&self, other: &Self) -> bool {
        self.public == other.public
    }
}

impl Eq for SealingKey {}

impl SealingKey {
    /// Accepts a PEM X.509 certificate (what `kubeseal --fetch-cert` prints; SEALED_SECRETS_CERT) or a PEM public key.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let (label, der) = first_pem_block(pem)?;
        let public = match label.as_str() {
            "CERTIFICATE" => {
                let cert = Certificate::from_der(&der)
                    .context("the PEM CERTIFICATE block is not a valid X.509 certificate")?;
                warn_if_expired(&cert);
                public_key_of(&cert)?
            }
            "PUBLIC KEY" => RsaPublicKey::from_public_key_der(&der)
                .context("the PEM PUBLIC KEY block is not an RSA SubjectPublicKeyInfo")?,
            "RSA PUBLIC KEY" => RsaPublicKey::from_pkcs1_der(&der)
                .context("the PEM RSA PUBLIC KEY block is not a PKCS#1 RSA public key")?,
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => bail!(
                "got a PEM {label} where the sealing certificate was expected; \
                 pass the controller's certificate (`kubeseal --fetch-cert`), never its private key"
            ),
            other => bail!(
                "unsupported PEM block {other:?}: expected CERTIFICATE, PUBLIC KEY or RSA PUBLIC KEY"
            ),
        };
        Self::try_from(public)
    }

    /// `cert_path` Some => load it (error if missing/invalid). None => use `<data_dir>/sealing/`: if
    /// `sealing-cert.pem` and `sealing-private.pem` exist load the cert, else generate an RSA-4096 key
    /// pair, write the private key (PKCS#8 PEM, mode 0600) and a self-signed certificate
    /// (CN=sealed-secrets-local), so the default run works without a cluster.
    pub fn load_or_generate(cert_path: Option<&Path>, data_dir: &Path) -> anyhow::Result<Self> {
        if let Some(path) = cert_path {
            return load_cert_file(path);
        }
        let dir = data_dir.join("sealing");
        let cert_file = dir.join(CERT_FILE);
        let private_file = dir.join(PRIVATE_FILE);
        match (cert_file.exists(), private_file.exists()) {
            (true, true) => {
                let key = load_cert_file(&cert_file)?;
                // A certificate that does not belong to the private key would seal values
                // nobody holding this directory can open; catch it before anything is sealed.
                let private = read_private_key(&private_file)?;
                ensure!(
                    RsaPublicKey::from(&private) == key.public,
                    "{} does not belong to the private key {}; restore the matching pair or remove both",
                    cert_file.display(),
                    private_file.display()
                );
                Ok(key)
            }
            (false, true) => {
                // Crash between the two writes below: keep the key (values may already be sealed
                // to it) and only re-issue its certificate.
                let private = read_private_key(&private_file)?;
                write_cert(&cert_file, &private)?;
                tracing::info!(path = %cert_file.display(), "re-issued local sealing certificate");
                Self::try_from(RsaPublicKey::from(&private))
            }
            (true, false) => bail!(
                "{} exists without {}; refusing to overwrite it with a new key. Pass the controller \
                 certificate explicitly (SEALED_SECRETS_CERT) or remove the file to generate a local pair",
                cert_file.display(),
                private_file.display()
            ),
            (false, false) => {
                create_private_dir(&dir)?;
                let started = std::time::Instant::now();
                let private = generate_private_key(KEY_BITS)?;
                tracing::info!(
                    bits = KEY_BITS,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "generated local sealing key; use the controller's certificate in production"
                );
                let pem = private
                    .to_pkcs8_pem(LineEnding::LF)
                    .context("encoding the sealing private key as PKCS#8 PEM")?;
                // Private key first: if we die before the certificate, the branch above recovers.
                write_file_atomic(&private_file, pem.as_bytes(), true)?;
                write_cert(&cert_file, &private)?;
                Self::try_from(RsaPublicKey::from(&private))
            }
        }
    }

    pub fn public_key(&self) -> &rsa::RsaPublicKey {
        &self.public
    }
}

impl TryFrom<RsaPublicKey> for SealingKey {
    type Error = anyhow::Error;

    fn try_from(public: RsaPublicKey) -> anyhow::Result<Self> {
        let der = public
            .to_public_key_der()
            .context("encoding the sealing public key")?;
        let openssl = PKey::public_key_from_der(der.as_bytes())
            .context("OpenSSL cannot read the sealing public key")?;
        Ok(Self { public, openssl })
    }
}

/// Seal one value for Secret `secret_name` in `namespace` (strict scope). Returns base64.
pub fn seal(
    key: &SealingKey,
    namespace: &str,
    secret_name: &str,
    plaintext: &[u8],
) -> anyhow::Result<String> {
    let label = strict_label(namespace, secret_name)?;

    let mut session_key = Zeroizing::new([0u8; SESSION_KEY_BYTES]);
    rand::rngs::OsRng
        .try_fill_bytes(&mut session_key[..])
        .context("reading random bytes for the session key")?;

    let rsa_ct = oaep_encrypt(&key.openssl, label.as_bytes(), &session_key[..])
        .context("RSA-OAEP encryption of the session key")?;
    let rsa_len = u16::try_from(rsa_ct.len())
        .context("RSA ciphertext longer than 65535 bytes cannot be length-prefixed")?;

    let aes_ct = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&session_key[..]))
        .encrypt(Nonce::from_slice(&[0u8; NONCE_BYTES]), plaintext)
        .map_err(|_| anyhow::anyhow!("AES-256-GCM encryption failed"))?;

    let mut out = Vec::with_capacity(2 + rsa_ct.len() + aes_ct.len());
    out.extend_from_slice(&rsa_len.to_be_bytes());
    out.extend_from_slice(&rsa_ct);
    out.extend_from_slice(&aes_ct);
    Ok(BASE64.encode(out))
}

/// RSA-OAEP with SHA-256 for both the digest and MGF1, as the controller decrypts it; OpenSSL's
/// (0.06 ms a value for RSA-4096, against 0.45 ms with the `rsa` crate's bignums).
fn oaep_encrypt(public: &PKey<Public>, label: &[u8], message: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut ctx = PkeyCtx::new(public)?;
    ctx.encrypt_init()?;
    ctx.set_rsa_padding(Padding::PKCS1_OAEP)?;
    ctx.set_rsa_oaep_md(Md::sha256())?;
    ctx.set_rsa_mgf1_md(Md::sha256())?;
    ctx.set_rsa_oaep_label(label)?;
    let mut out = Vec::new();
    ctx.encrypt_to_vec(message, &mut out)?;
    Ok(out)
}

/// The inverse, for tests and operators holding the private key.
pub fn unseal(
    private: &rsa::RsaPrivateKey,
    namespace: &str,
    secret_name: &str,
    sealed_b64: &str,
) -> anyhow::Result<Vec<u8>> {
    let label = strict_label(namespace, secret_name)?;
    let data = BASE64
        .decode(sealed_b64.trim())
        .context("sealed value is not standard base64")?;
    ensure!(data.len() >= 2, "sealed value is too short");
    let rsa_len = usize::from(u16::from_be_bytes([data[0], data[1]]));
    ensure!(
        data.len() >= 2 + rsa_len + GCM_TAG_BYTES,
        "sealed value is too short for its {rsa_len}-byte RSA part and the GCM tag"
    );
    let (rsa_ct, aes_ct) = data[2..].split_at(rsa_len);

    let session_key = Zeroizing::new(
        private
            .decrypt(Oaep::new_with_label::<Sha256, _>(&label), rsa_ct)
            .with_context(|| {
                format!(
                    "cannot decrypt the session key: wrong private key, or not sealed for {label:?} (strict scope)"
                )
            })?,
    );
    ensure!(
        session_key.len() == SESSION_KEY_BYTES,
        "session key is {} bytes, expected {SESSION_KEY_BYTES}",
        session_key.len()
    );
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&session_key))
        .decrypt(Nonce::from_slice(&[0u8; NONCE_BYTES]), aes_ct)
        .map_err(|_| {
            anyhow::anyhow!("sealed value failed AES-GCM authentication (corrupted or tampered)")
        })
}

/// Strict-scope OAEP label, as `EncryptionLabel` builds it: `fmt.Sprintf("%s/%s", namespace, name)`.
fn strict_label(namespace: &str, secret_name: &str) -> anyhow::Result<String> {
    // Kubernetes names never contain '/', and rejecting it keeps `a/b`+`c` distinct from `a`+`b/c`.
    ensure!(
        !namespace.is_empty() && !namespace.contains('/'),
        "invalid namespace {namespace:?} for strict-scope sealing"
    );
    ensure!(
        !secret_name.is_empty() && !secret_name.contains('/'),
        "invalid secret name {secret_name:?} for strict-scope sealing"
    );
    Ok(format!("{namespace}/{secret_name}"))
}

/// Returns the label and DER bytes of the first PEM block, ignoring text around it
/// (some tools print comments or a chain after the certificate).
fn first_pem_block(pem: &str) -> anyhow::Result<(String, Vec<u8>)> {
    const BEGIN: &str = "-----BEGIN ";
    let start = pem.find(BEGIN).context("no PEM block found")?;
    let rest = &pem[start..];
    let label_end = rest[BEGIN.len()..]
        .find("-----")
        .context("malformed PEM BEGIN line")?;
    let label = &rest[BEGIN.len()..BEGIN.len() + label_end];
    let end_marker = format!("-----END {label}-----");
    let end = rest
        .find(&end_marker)
        .with_context(|| format!("PEM block {label:?} has no END line"))?;
    let block = &rest[..end + end_marker.len()];
    let (decoded_label, der) = x509_cert::der::pem::decode_vec(block.as_bytes())
        .map_err(|e| anyhow::anyhow!("invalid PEM {label:?} block: {e}"))?;
    Ok((decoded_label.to_string(), der))
}

fn public_key_of(cert: &Certificate) -> anyhow::Result<RsaPublicKey> {
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .context("re-encoding the certificate's public key")?;
    RsaPublicKey::from_public_key_der(&spki)
        .context("the certificate does not hold an RSA public key")
}

/// kubeseal refuses expired certificates; the controller still decrypts, so only warn here.
fn warn_if_expired(cert: &Certificate) {
    let not_after = cert.tbs_certificate.validity.not_after.to_system_time();
    if not_after < SystemTime::now() {
        tracing::warn!("the sealing certificate has expired; kubeseal would refuse it");
    }
}

fn load_cert_file(path: &Path) -> anyhow::Result<SealingKey> {
    let pem = fs::read_to_string(path)
        .with_context(|| format!("reading sealing certificate {}", path.display()))?;
    SealingKey::from_pem(&pem)
        .with_context(|| format!("loading sealing certificate {}", path.display()))
}

fn read_private_key(path: &Path) -> anyhow::Result<RsaPrivateKey> {
    let pem = Zeroizing::new(
        fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    RsaPrivateKey::from_pkcs8_pem(&pem)
        .with_context(|| format!("{} is not a PKCS#8 RSA private key", path.display()))
}

fn generate_private_key(bits: usize) -> anyhow::Result<RsaPrivateKey> {
    RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
        .with_context(|| format!("generating an RSA-{bits} sealing key"))
}

/// Self-signed CA certificate like the controller's `SignKey` (random 128-bit serial, 10 years).
fn self_signed_cert(private: &RsaPrivateKey) -> anyhow::Result<Certificate> {
    let mut serial = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut serial)
        .context("reading random bytes for the certificate serial")?;
    // DER INTEGER must be positive; a set second-highest bit also keeps the length fixed.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let serial = SerialNumber::new(&serial).context("building the certificate serial number")?;
    let validity = Validity::from_now(CERT_VALIDITY).context("computing certificate validity")?;
    let subject =
        Name::from_str(&format!("CN={CERT_CN}")).context("building the certificate subject")?;
    let spki_der = RsaPublicKey::from(private)
        .to_public_key_der()
        .context("encoding the public key")?;
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes())
        .context("decoding the public key info")?;
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(private.clone());
    CertificateBuilder::new(Profile::Root, serial, validity, subject, spki, &signer)
        .context("preparing the sealing certificate")?
        .build::<rsa::pkcs1v15::Signature>()
        .context("signing the sealing certificate")
}

fn write_cert(path: &Path, private: &RsaPrivateKey) -> anyhow::Result<()> {
    let pem = self_signed_cert(private)?
        .to_pem(LineEnding::LF)
        .context("encoding the sealing certificate as PEM")?;
    write_file_atomic(path, pem.as_bytes(), false)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes via a temporary file and rename so readers never see half a key; `secret` => mode 0600.
fn write_file_atomic(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    // A leftover temporary file may carry looser permissions; start from scratch.
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    fs::rename(&tmp, path).with_context(|| format!("moving {} into place", path.display()))
}

#[cfg(test)]
mod tests;
