//! Sealing against the controller's scheme: round trips, labels, certificates.

use super::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rsa::traits::PublicKeyParts;
use std::sync::OnceLock;

/// Unit tests use a 2048-bit key: the scheme does not depend on the size and 4096 keygen
/// would dominate the test run. `load_or_generate` tests exercise the real 4096 path.
fn test_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        RsaPrivateKey::new(&mut StdRng::seed_from_u64(7), 2048).expect("test key generation")
    })
}

fn sealing_key() -> SealingKey {
    SealingKey::try_from(RsaPublicKey::from(test_key())).unwrap()
}

#[test]
fn round_trip() {
    let key = sealing_key();
    for value in [&b""[..], b"hunter2", "pässwörd 🔐".as_bytes(), &[0u8; 3000]] {
        let sealed = seal(&key, "tenant-a", "db", value).unwrap();
        assert_eq!(
            unseal(test_key(), "tenant-a", "db", &sealed).unwrap(),
            value
        );
    }
}

#[test]
fn fresh_session_key_per_value() {
    let key = sealing_key();
    let a = seal(&key, "ns", "s", b"same").unwrap();
    let b = seal(&key, "ns", "s", b"same").unwrap();
    assert_ne!(a, b);
}

#[test]
fn strict_scope_binds_namespace_and_name() {
    let key = sealing_key();
    let sealed = seal(&key, "tenant-a", "x", b"secret").unwrap();
    assert!(unseal(test_key(), "tenant-b", "x", &sealed).is_err());
    assert!(unseal(test_key(), "tenant-a", "y", &sealed).is_err());
    // Neither namespace-wide ("tenant-a") nor cluster-wide ("") labels may open it.
    let label_err = unseal(test_key(), "tenant-a", "", &sealed).unwrap_err();
    assert!(label_err.to_string().contains("invalid secret name"));
    assert!(seal(&key, "a/b", "c", b"v").is_err());
    assert!(seal(&key, "", "c", b"v").is_err());
}

#[test]
fn tampering_any_part_fails() {
    let key = sealing_key();
    let sealed = seal(&key, "ns", "s", b"do not touch").unwrap();
    let bytes = BASE64.decode(&sealed).unwrap();
    // One byte in the RSA part, the AES ciphertext, and the tag.
    for idx in [10, bytes.len() - 20, bytes.len() - 1] {
        let mut t = bytes.clone();
        t[idx] ^= 0x01;
        assert!(
            unseal(test_key(), "ns", "s", &BASE64.encode(&t)).is_err(),
            "tampered byte {idx} was accepted"
        );
    }
    let truncated = BASE64.encode(&bytes[..bytes.len() - 1]);
    assert!(unseal(test_key(), "ns", "s", &truncated).is_err());
    assert!(unseal(test_key(), "ns", "s", "AAE=").is_err());
    assert!(unseal(test_key(), "ns", "s", "not base64!").is_err());
}

#[test]
fn byte_layout() {
    let key = sealing_key();
    let plaintext = b"0123456789";
    let sealed = seal(&key, "ns", "s", plaintext).unwrap();
    // Standard alphabet with padding, as the controller's base64.StdEncoding.
    assert_eq!(BASE64.encode(BASE64.decode(&sealed).unwrap()), sealed);
    let bytes = BASE64.decode(&sealed).unwrap();
    let modulus = key.public_key().size();
    assert_eq!(modulus, 256);
    assert_eq!(
        usize::from(u16::from_be_bytes([bytes[0], bytes[1]])),
        modulus
    );
    assert_eq!(bytes.len(), 2 + modulus + plaintext.len() + GCM_TAG_BYTES);
}

#[test]
fn layout_matches_manual_decryption() {
    // Decrypt by hand with the primitives to pin the zero nonce and OAEP label.
    let key = sealing_key();
    let sealed = seal(&key, "ns", "name", b"manual").unwrap();
    let bytes = BASE64.decode(&sealed).unwrap();
    let (rsa_ct, aes_ct) = bytes[2..].split_at(256);
    let sk = test_key()
        .decrypt(Oaep::new_with_label::<Sha256, _>("ns/name"), rsa_ct)
        .unwrap();
    assert_eq!(sk.len(), 32);
    let pt = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&sk))
        .decrypt(Nonce::from_slice(&[0u8; 12]), aes_ct)
        .unwrap();
    assert_eq!(pt, b"manual");
}

#[test]
fn from_pem_accepts_certificate_and_public_keys() {
    let private = test_key();
    let public = RsaPublicKey::from(private);
    let cert_pem = self_signed_cert(private)
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap();
    let spki_pem = public.to_public_key_pem(LineEnding::LF).unwrap();
    let pkcs1_pem = rsa::pkcs1::EncodeRsaPublicKey::to_pkcs1_pem(&public, LineEnding::LF).unwrap();
    for pem in [
        cert_pem.clone(),
        format!("# fetched with kubeseal\n{cert_pem}\n"),
        spki_pem,
        pkcs1_pem,
    ] {
        assert_eq!(SealingKey::from_pem(&pem).unwrap().public_key(), &public);
    }
    let private_pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
    let err = SealingKey::from_pem(&private_pem).unwrap_err().to_string();
    assert!(err.contains("never its private key"), "{err}");
    assert!(SealingKey::from_pem("garbage").is_err());
}

#[test]
fn certificate_matches_controller_shape() {
    let cert = self_signed_cert(test_key()).unwrap();
    let tbs = &cert.tbs_certificate;
    assert_eq!(tbs.subject.to_string(), "CN=sealed-secrets-local");
    assert_eq!(tbs.issuer, tbs.subject);
    let not_after = tbs.validity.not_after.to_system_time();
    assert!(not_after > SystemTime::now() + Duration::from_secs(9 * 365 * 24 * 3600));
}

#[test]
fn load_or_generate_creates_then_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let first = SealingKey::load_or_generate(None, dir.path()).unwrap();
    eprintln!(
        "RSA-{KEY_BITS} sealing key generated in {:?}",
        started.elapsed()
    );
    assert_eq!(first.public_key().size(), KEY_BITS / 8);

    let sealing = dir.path().join("sealing");
    let private_path = sealing.join(PRIVATE_FILE);
    let cert_path = sealing.join(CERT_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&private_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&sealing).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o077, 0);
    }
    let private_pem = fs::read_to_string(&private_path).unwrap();
    assert!(private_pem.starts_with(concat!("-----BEGIN ", "PRIVATE KEY-----")));
    let cert_pem = fs::read_to_string(&cert_path).unwrap();

    let second = SealingKey::load_or_generate(None, dir.path()).unwrap();
    assert_eq!(first, second);
    assert_eq!(fs::read_to_string(&cert_path).unwrap(), cert_pem);

    // The generated pair works end to end.
    let private = RsaPrivateKey::from_pkcs8_pem(&private_pem).unwrap();
    let sealed = seal(&second, "ns", "s", b"local").unwrap();
    assert_eq!(unseal(&private, "ns", "s", &sealed).unwrap(), b"local");

    // Explicit path loads the same certificate.
    let explicit =
        SealingKey::load_or_generate(Some(&cert_path), Path::new("/nonexistent")).unwrap();
    assert_eq!(explicit, first);

    // Lost certificate: re-issued for the same key rather than replaced.
    fs::remove_file(&cert_path).unwrap();
    let third = SealingKey::load_or_generate(None, dir.path()).unwrap();
    assert_eq!(third, first);
    assert!(cert_path.exists());

    // Lost private key: refuse to silently replace the certificate.
    fs::remove_file(&private_path).unwrap();
    let err = SealingKey::load_or_generate(None, dir.path()).unwrap_err();
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
}

#[test]
fn load_or_generate_rejects_mismatched_pair_and_bad_paths() {
    let dir = tempfile::tempdir().unwrap();
    let sealing = dir.path().join("sealing");
    fs::create_dir_all(&sealing).unwrap();
    let other = RsaPrivateKey::new(&mut StdRng::seed_from_u64(99), 2048).unwrap();
    fs::write(
        sealing.join(PRIVATE_FILE),
        other.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    fs::write(
        sealing.join(CERT_FILE),
        self_signed_cert(test_key())
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let err = SealingKey::load_or_generate(None, dir.path()).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");

    let missing = dir.path().join("missing.pem");
    let err = SealingKey::load_or_generate(Some(&missing), dir.path()).unwrap_err();
    assert!(format!("{err:#}").contains("missing.pem"), "{err:#}");
    let garbage = dir.path().join("garbage.pem");
    fs::write(&garbage, "not a certificate").unwrap();
    assert!(SealingKey::load_or_generate(Some(&garbage), dir.path()).is_err());
}
