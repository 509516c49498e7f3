//! The golden demo tenant: a fixed customer, fixed secrets and a fixed (public) sealing key,
//! sealed with a seeded RNG, so its rendering is byte-for-byte reproducible. Its output (with
//! its render lock) is checked in as `tenants/demo/` and `flux-tenants/demo.yaml`; a test
//! compares the two.

use std::collections::BTreeMap;
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::secrets::{DATABASE_PASSWORD, LICENSE_KEY, MQTT_ADMIN_PASSWORD};
use crate::plans::Catalogue;
use crate::render::{self, RenderSettings, RenderedTenant, Renderer, SealedValues, SECRET_NAME};
use crate::seal::{self, SealingKey};

/// Public half only: nobody can (or needs to) decrypt the demo's sealed values.
const DEMO_SEALING_KEY: &str = include_str!("../../tests/fixtures/demo-sealing-public.pem");
const DEMO_SEED: u64 = 0x1075_7157;

pub fn render_demo(renderer: &Renderer, plans: &Catalogue) -> anyhow::Result<RenderedTenant> {
    let spec = render::demo_spec();
    let key = SealingKey::from_pem(DEMO_SEALING_KEY)?;
    let mut rng = ChaCha20Rng::seed_from_u64(DEMO_SEED);
    let namespace = render::namespace_of(&spec.id);
    let mut encrypted = BTreeMap::new();
    for (name, value) in [
        (DATABASE_PASSWORD, "demo-only-database-password"),
        (MQTT_ADMIN_PASSWORD, "demo-only-mqtt-password"),
        (LICENSE_KEY, "demo-only-license"),
    ] {
        encrypted.insert(
            name.to_string(),
            seal::seal_with_rng(&mut rng, &key, &namespace, SECRET_NAME, value.as_bytes())?,
        );
    }
    let plan = plans
        .get(&spec.plan)
        .ok_or_else(|| anyhow::anyhow!("demo plan {:?} is not in the catalogue", spec.plan))?;
    let sealed = SealedValues {
        secret_name: SECRET_NAME.to_string(),
        encrypted,
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
