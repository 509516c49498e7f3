//! Review mode's test helpers: templates a test can change (a template upgrade reaches every
//! tenant), what main holds for a tenant, and polling a tenant's status.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::TestServer;

/// A copy of the templates whose quota template gains a comment line after `restart`: a change
/// to every tenant, as a template upgrade is.
pub fn templates_copy(dir: &Path) -> PathBuf {
    let to = dir.join("templates");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to
}

pub fn upgrade_quota_template(templates: &Path, line: &str) {
    let path = templates.join("quota.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("# {line}\n{text}")).unwrap();
}

/// The tenant's `quota.yaml` on the remote's main.
pub fn quota_on_main(remote: &git2::Repository, id: &str) -> String {
    let tip = remote.refname_to_id("refs/heads/main").unwrap();
    let tree = remote.find_commit(tip).unwrap().tree().unwrap();
    let path = format!("{}/quota.yaml", billing::render::tenant_dir(id));
    let entry = tree.get_path(Path::new(&path)).unwrap();
    String::from_utf8_lossy(remote.find_blob(entry.id()).unwrap().content()).into_owned()
}

/// Polls the tenant's status until `ok` holds (60 s at most).
pub async fn wait_until(
    s: &TestServer,
    id: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = s.deployment_status(id).await;
        if ok(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never {what}: {st}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
