//! The golden demo tenant: a fixed customer and fixed sealed secrets, so its rendering is
//! byte-for-byte reproducible. Its output (with its render lock) is checked in as
//! `tenants/d/e/m/demo/` and `flux-tenants/d/e/m/demo.yaml`; a test compares the two.

use std::collections::BTreeMap;
use std::path::Path;

use crate::plans::Catalogue;
use crate::render::{self, RenderSettings, RenderedTenant, Renderer, SealedValues, SECRET_NAME};

/// The demo's secrets, sealed once with the public key `demo-sealing-public.pem` (nobody holds
/// its private half) and kept as data: sealing draws fresh randomness, so sealing again would
/// change the golden files on every run. The tests below say what to add for a new secret.
const DEMO_SEALED: &str = include_str!("../../tests/fixtures/demo-sealed.json");

/// The demo's sealed values, by Secret key.
fn demo_sealed() -> anyhow::Result<BTreeMap<String, String>> {
    serde_json::from_str(DEMO_SEALED).map_err(|e| {
        anyhow::anyhow!("tests/fixtures/demo-sealed.json is not a JSON object of strings: {e}")
    })
}

pub fn render_demo(renderer: &Renderer, plans: &Catalogue) -> anyhow::Result<RenderedTenant> {
    let spec = render::demo_spec();
    let plan = plans
        .get(&spec.plan)
        .ok_or_else(|| anyhow::anyhow!("demo plan {:?} is not in the catalogue", spec.plan))?;
    let sealed = SealedValues {
        secret_name: SECRET_NAME.to_string(),
        encrypted: demo_sealed()?,
    };
    Ok(renderer.render(&spec, plan, &RenderSettings::default(), &sealed)?)
}

/// The demo tenant's files as a GitOps repository holds them (with its `render.json`).
pub fn demo_files(
    renderer: &Renderer,
    plans: &Catalogue,
) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let rendered = render_demo(renderer, plans)?;
    Ok(rendered.into_repository_files(&render::demo_spec().id))
}

/// Rewrites the golden files under `root` (the repository checkout): stale files go.
pub fn write_golden(root: &Path, files: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
    let dir = root.join(render::tenant_dir("demo"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    for (path, bytes) in files {
        let target = root.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::seal::{self, SealingKey};

    const DEMO_SEALING_KEY: &str = include_str!("../../tests/fixtures/demo-sealing-public.pem");

    /// A missing value fails the render; this says what to paste into the fixture.
    #[test]
    fn every_required_secret_has_a_sealed_demo_value() {
        let key = SealingKey::from_pem(DEMO_SEALING_KEY).unwrap();
        let namespace = render::namespace_of(&render::demo_spec().id);
        let sealed = demo_sealed().unwrap();
        let missing: Vec<String> = render::REQUIRED_SECRET_KEYS
            .iter()
            .filter(|name| !sealed.contains_key(**name))
            .map(|name| {
                let plaintext = format!("demo-only-{}", name.to_lowercase().replace('_', "-"));
                let value = seal::seal(&key, &namespace, SECRET_NAME, plaintext.as_bytes());
                format!("\"{name}\": \"{}\"", value.unwrap())
            })
            .collect();
        assert!(
            missing.is_empty(),
            "add to tests/fixtures/demo-sealed.json:\n{}",
            missing.join(",\n")
        );
    }

    /// Each value is sealed for the demo key: its RSA part is as long as the key's modulus.
    #[test]
    fn demo_values_are_sealed_for_the_demo_key() {
        use rsa::traits::PublicKeyParts;
        let key = SealingKey::from_pem(DEMO_SEALING_KEY).unwrap();
        let modulus = key.public_key().size();
        for (name, value) in demo_sealed().unwrap() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&value)
                .unwrap_or_else(|e| panic!("{name}: not base64: {e}"));
            assert!(bytes.len() > 2 + modulus + 16, "{name}: too short");
            let rsa_len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
            assert_eq!(rsa_len, modulus, "{name}: not sealed for the demo key");
        }
    }
}
