//! Kubernetes validity of rendered manifests, shared by tests/render.rs (included with `#[path]`):
//! `kubectl kustomize` builds a tenant directory the way Flux and Argo CD do, and
//! `kubernetes-validate --strict -k 1.30.0` (PyPI) checks built-in kinds against the OpenAPI
//! schemas. Custom resources have no schema offline; they are returned for structural checks.
//!
//! Missing tools skip the check locally and fail it when `CI` is set (`crate::skip`, which the
//! including test declares from `tools/skip.rs`).

use std::path::Path;
use std::process::Command;

use billing::render::RenderedTenant;
use serde_norway::Value;

pub const K8S_VERSION: &str = "1.30.0";

/// The tool's name if `name probe...` runs; `None` (after a SKIPPED note) when it is absent
/// outside CI.
pub fn tool(name: &str, probe: &[&str]) -> Option<String> {
    let ok = Command::new(name)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(name.to_string());
    }
    crate::skip::skip_unless_ci(
        "Kubernetes validation",
        format!("{name} is not installed (kubectl from the machine image; pip install kubernetes-validate)"),
    );
    None
}

/// Writes the rendered files under `root` as they would sit in the GitOps repository.
pub fn write_tree(out: &RenderedTenant, root: &Path) {
    for (path, bytes) in &out.files {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
}

/// Runs a command, panicking with its output unless it succeeds; returns stdout + stderr.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    stdout.into_owned()
}

/// `kubectl kustomize <dir>`: the objects Flux/Argo CD would apply.
pub fn kustomize_build(kubectl: &str, dir: &Path) -> String {
    run(Command::new(kubectl).arg("kustomize").arg(dir))
}

/// Built-in API groups have no dot or end in `.k8s.io`; anything else is a custom resource.
pub fn is_builtin(doc: &Value) -> bool {
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    let group = api.rsplit_once('/').map_or("", |(group, _)| group);
    !group.contains('.') || group.ends_with(".k8s.io")
}

/// Validates the built-in kinds of `docs` strictly; returns the custom resources.
pub fn validate_builtin(docs: &[Value], scratch: &Path, validator: &str) -> Vec<Value> {
    let (builtin, custom): (Vec<_>, Vec<_>) = docs.iter().cloned().partition(is_builtin);
    let text: Vec<String> = builtin
        .iter()
        .map(|d| serde_norway::to_string(d).unwrap())
        .collect();
    let file = scratch.join("builtin.yaml");
    std::fs::write(&file, text.join("---\n")).unwrap();
    let mut cmd = Command::new(validator);
    cmd.args(["--strict", "-k", K8S_VERSION, "--quiet"])
        .arg(&file);
    let out = cmd.output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !report.contains("ERROR"),
        "{cmd:?}:\n{report}"
    );
    custom
}
