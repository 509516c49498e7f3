//! The checked-in demo tenant (`tenants/d/e/m/demo/` with its `render.json`, and
//! `flux-tenants/d/e/m/demo.yaml`)
//! is exactly what the templates render today. After an intended template change, regenerate it with
//! `cargo run -- tenant render --demo` and review the diff like any other change.

use std::collections::BTreeMap;
use std::path::Path;

fn checked_in(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let dir = root.join(billing::render::tenant_dir("demo"));
    for entry in std::fs::read_dir(&dir).expect("the demo tenant is checked in") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.insert(
            format!("{}/{name}", billing::render::tenant_dir("demo")),
            std::fs::read(&path).unwrap(),
        );
    }
    let flux = billing::render::flux_kustomization_path("demo");
    if let Ok(bytes) = std::fs::read(root.join(&flux)) {
        files.insert(flux, bytes);
    }
    files
}

#[test]
fn golden_demo_tenant_matches_the_templates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let renderer = billing::render::Renderer::from_dir(&root.join("templates")).unwrap();
    let plans = billing::plans::Catalogue::builtin().unwrap();
    let rendered = billing::deploy::demo::demo_files(&renderer, &plans).unwrap();
    let golden = checked_in(root);

    let mut problems = Vec::new();
    for (path, bytes) in &rendered {
        match golden.get(path) {
            None => problems.push(format!("{path}: rendered but not checked in")),
            Some(old) if old != bytes => problems.push(format!("{path}: differs")),
            Some(_) => {}
        }
    }
    for path in golden.keys().filter(|p| !rendered.contains_key(*p)) {
        problems.push(format!("{path}: checked in but no longer rendered"));
    }
    assert!(
        problems.is_empty(),
        "the golden demo tenant is out of date:\n  {}\nregenerate with `cargo run -- tenant render --demo` and review the diff",
        problems.join("\n  ")
    );
}

#[test]
fn builtin_templates_are_the_checked_in_templates() {
    // The binary embeds templates/ at build time; both must render the same demo.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plans = billing::plans::Catalogue::builtin().unwrap();
    let from_dir = billing::render::Renderer::from_dir(&root.join("templates")).unwrap();
    let builtin = billing::render::Renderer::builtin();
    let a = billing::deploy::demo::render_demo(&from_dir, &plans).unwrap();
    let b = billing::deploy::demo::render_demo(&builtin, &plans).unwrap();
    assert_eq!(a.files, b.files);
}

#[test]
fn demo_rendering_is_reproducible_and_seals_every_secret() {
    let plans = billing::plans::Catalogue::builtin().unwrap();
    let renderer = billing::render::Renderer::builtin();
    let a = billing::deploy::demo::render_demo(&renderer, &plans).unwrap();
    let b = billing::deploy::demo::render_demo(&renderer, &plans).unwrap();
    assert_eq!(a.files, b.files);
    let sealed = String::from_utf8(
        a.files[&format!("{}/sealedsecret.yaml", billing::render::tenant_dir("demo"))].clone(),
    )
    .unwrap();
    assert!(
        !sealed.contains("demo-only"),
        "a demo secret is in plain text"
    );
    for key in ["DATABASE_PASSWORD", "MQTT_ADMIN_PASSWORD", "LICENSE_KEY"] {
        assert!(sealed.contains(key));
    }
}
