//! Cross-checks `billing::seal` against an independent Python unsealer (`tests/tools/unseal.py`,
//! built on the `cryptography` package), so a shared misunderstanding of the format cannot pass.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use billing::seal::{seal, SealingKey};

#[path = "tools/skip.rs"]
mod skip;

/// Returns the Python interpreter to use, or None after printing why the test is skipped.
/// With `CI` set, a missing prerequisite is a failure: CI installs `cryptography`.
fn python_with_cryptography() -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let problem = match Command::new(&python)
        .args(["-c", "import cryptography; print(cryptography.__version__)"])
        .output()
    {
        Ok(out) if out.status.success() => {
            eprintln!(
                "using {python} with cryptography {}",
                String::from_utf8_lossy(&out.stdout).trim()
            );
            return Some(python);
        }
        Ok(out) => format!(
            "`{python}` cannot import the `cryptography` module (pip install cryptography): {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
        ),
        Err(e) => format!("`{python}` not found or not runnable: {e}"),
    };
    skip::skip_unless_ci("seal_interop", problem);
    None
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/unseal.py")
}

#[test]
fn python_unseals_what_rust_seals() {
    let Some(python) = python_with_cryptography() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // The default (no cluster) path: a generated RSA-4096 pair and self-signed certificate.
    let key = SealingKey::load_or_generate(None, dir.path()).expect("generate sealing key");
    let private_pem = dir.path().join("sealing/sealing-private.pem");
    let cert_pem = dir.path().join("sealing/sealing-cert.pem");

    let two_kb: Vec<u8> = (0..2048u32).map(|i| (i * 7 + 3) as u8).collect();
    let values: Vec<(&str, &str, Vec<u8>)> = vec![
        ("tenant-acme", "db-credentials", b"s3cr3t-Pa55word".to_vec()),
        (
            "tenant-acme",
            "mqtt-admin",
            "mot de passe ünïcødé 🔐 密码".as_bytes().to_vec(),
        ),
        ("tenant-acme", "license", two_kb),
        ("tenant-b", "db-credentials", b"".to_vec()),
    ];
    let cases: Vec<serde_json::Value> = values
        .iter()
        .map(|(ns, name, plaintext)| {
            serde_json::json!({
                "namespace": ns,
                "name": name,
                "sealed": seal(&key, ns, name, plaintext).expect("seal"),
                "expected_b64": BASE64.encode(plaintext),
            })
        })
        .collect();
    let cases_path = dir.path().join("cases.json");
    std::fs::write(
        &cases_path,
        serde_json::to_vec_pretty(&cases).expect("json"),
    )
    .expect("write cases");

    let out = Command::new(&python)
        .arg(script())
        .arg(&private_pem)
        .arg(&cases_path)
        .arg(&cert_pem)
        .output()
        .expect("run unseal.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "unseal.py failed:\n{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("all {} cases ok", values.len())),
        "{stdout}"
    );
    assert!(
        stdout.contains("sealed-secrets-local") && stdout.contains("bits=4096"),
        "{stdout}"
    );
}

#[test]
fn python_rejects_a_value_sealed_for_another_secret() {
    // Guards the checker itself: a wrong label must make unseal.py fail.
    let Some(python) = python_with_cryptography() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let key = SealingKey::load_or_generate(None, dir.path()).expect("generate sealing key");
    let sealed = seal(&key, "tenant-a", "x", b"value").expect("seal");
    let cases = serde_json::json!([{
        "namespace": "tenant-a", "name": "y", "sealed": sealed, "expected_b64": BASE64.encode(b"value"),
    }]);
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, cases.to_string()).expect("write cases");
    let out = Command::new(&python)
        .arg(script())
        .arg(dir.path().join("sealing/sealing-private.pem"))
        .arg(&cases_path)
        .output()
        .expect("run unseal.py");
    assert!(
        !out.status.success(),
        "unseal.py accepted a value sealed for tenant-a/x as tenant-a/y"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAIL"));
}
