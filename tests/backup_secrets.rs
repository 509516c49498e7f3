//! Off-cluster backups through the real server: a tenant signed up before they were configured
//! gets the uploader's credential sealed into its Secret on its next render (never in plain
//! text in Git), and a bucket without a credential stops the server from starting.

mod common;

use std::time::Duration;

use common::{Backend, TestServer};
use git2::Repository;

on_both_backends!(existing_tenants_get_the_sealed_backup_credential_on_their_next_render);

const ACCESS_KEY_ID: &str = "AKIAEXISTINGTENANT01";
const SECRET_ACCESS_KEY: &str = "s3-secret-that-must-stay-sealed-91c2";

/// The file at `path` on the main branch of the server's repository.
fn committed(s: &TestServer, path: &str) -> String {
    let repo = Repository::open_bare(s.data_dir().join("gitops.git")).unwrap();
    let tree = repo
        .revparse_single("refs/heads/main")
        .unwrap()
        .peel_to_tree()
        .unwrap();
    let blob = tree.get_path(std::path::Path::new(path)).unwrap();
    let content = repo.find_blob(blob.id()).unwrap().content().to_vec();
    String::from_utf8(content).unwrap()
}

/// Every blob ever committed, as text: nothing secret may be in it.
fn history(s: &TestServer) -> String {
    let repo = Repository::open_bare(s.data_dir().join("gitops.git")).unwrap();
    let mut text = String::new();
    repo.odb()
        .unwrap()
        .foreach(|oid| {
            if let Ok(blob) = repo.find_blob(*oid) {
                text.push_str(&String::from_utf8_lossy(blob.content()));
            }
            true
        })
        .unwrap();
    text
}

async fn existing_tenants_get_the_sealed_backup_credential_on_their_next_render(mut s: TestServer) {
    let (code, body) = s
        .signup("early@acme.example", "correct-horse-battery", "Early Inc")
        .await;
    assert_eq!(code, 201, "{body}");
    let id = body["customer"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;
    let dir = billing::render::tenant_dir(&id);
    let before = committed(&s, &format!("{dir}/sealedsecret.yaml"));
    assert!(!before.contains("BACKUP_S3"), "{before}");

    // The platform turns off-cluster backups on: the same database, a server configured for it.
    s.stop();
    let s3 = s
        .start_replica(&[
            ("BACKUP_S3_BUCKET", "tenant-backups"),
            ("BACKUP_S3_ENDPOINT", "https://objects.example.com"),
            ("BACKUP_S3_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("BACKUP_S3_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ])
        .await;
    let (code, body) = s3.admin_post(&format!("/api/customers/{id}/deploy")).await;
    assert_eq!(code, 202, "{body}");
    s3.wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;

    let sealed = committed(&s3, &format!("{dir}/sealedsecret.yaml"));
    let doc: serde_json::Value = serde_norway::from_str(&sealed).unwrap();
    let data = &doc["spec"]["encryptedData"];
    let private = common::sealing_private_key();
    let open = |key: &str| {
        let value = data[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} not sealed"));
        let bytes =
            billing::seal::unseal(&private, &format!("customer-{id}"), "tenant-secrets", value)
                .unwrap();
        String::from_utf8(bytes).unwrap()
    };
    assert_eq!(open("BACKUP_S3_ACCESS_KEY_ID"), ACCESS_KEY_ID);
    assert_eq!(open("BACKUP_S3_SECRET_ACCESS_KEY"), SECRET_ACCESS_KEY);
    // The tenant's own secrets are the ones it had.
    let before: serde_json::Value = serde_norway::from_str(&before).unwrap();
    for key in ["DATABASE_PASSWORD", "MQTT_ADMIN_PASSWORD", "LICENSE_KEY"] {
        assert_eq!(data[key], before["spec"]["encryptedData"][key], "{key}");
    }

    let backup = committed(&s3, &format!("{dir}/backup.yaml"));
    assert!(backup.contains("s3-upload"), "{backup}");
    assert!(backup.contains(&format!("tenants/{id}")), "{backup}");
    let policies = committed(&s3, &format!("{dir}/networkpolicies.yaml"));
    assert!(policies.contains("port: 443"), "{policies}");
    let all = history(&s3);
    assert!(!all.contains(SECRET_ACCESS_KEY) && !all.contains(ACCESS_KEY_ID));

    // A second render seals nothing again: no new commit.
    let head = |s: &TestServer| {
        Repository::open_bare(s.data_dir().join("gitops.git"))
            .unwrap()
            .refname_to_id("refs/heads/main")
            .unwrap()
    };
    let first = head(&s3);
    let (code, _) = s3.admin_post(&format!("/api/customers/{id}/deploy")).await;
    assert_eq!(code, 202);
    s3.wait_for_status(&id, "committed", Duration::from_secs(30))
        .await;
    assert_eq!(head(&s3), first, "the credential was sealed again");
}

#[tokio::test]
async fn a_bucket_without_its_credential_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, _db)) = common::database_url(Backend::Sqlite, dir.path()).await else {
        return;
    };
    let out = common::billing_command(dir.path(), &url)
        .arg("serve")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("BACKUP_S3_BUCKET", "tenant-backups")
        .env("BACKUP_S3_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("BACKUP_S3_SECRET_ACCESS_KEY"), "{stderr}");
    assert!(!stderr.contains(ACCESS_KEY_ID), "{stderr}");
}
