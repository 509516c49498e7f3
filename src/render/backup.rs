//! Off-cluster backups: where the nightly job ships each dump (an S3-compatible bucket), the
//! checks on those settings, and what the templates see of them. Absent settings render the
//! job exactly as before (PVC only).

use serde::{Deserialize, Serialize};

use super::validate::is_pinned_image;
use super::{RenderError, RenderSettings};
use crate::plans::Resources;

/// Secret keys the uploader reads (sealed into the tenant's Secret, never in Git in plain text).
pub const BACKUP_SECRET_KEYS: [&str; 2] =
    ["BACKUP_S3_ACCESS_KEY_ID", "BACKUP_S3_SECRET_ACCESS_KEY"];
/// Days an uploaded dump is kept when the plan does not say (the newest one is always kept).
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Longest retention a plan may ask for (ten years).
pub const MAX_RETENTION_DAYS: u32 = 3650;
/// The uploader's image: the AWS CLI, which speaks to any S3-compatible endpoint.
pub const DEFAULT_UPLOAD_IMAGE: &str = "docker.io/amazon/aws-cli:2.22.0";

/// Where the platform ships tenant dumps: `s3://<bucket>/<prefix>/<tenant id>/<file>`.
/// No credentials here: they reach the cluster sealed, per tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupS3 {
    pub bucket: String,
    /// `https://host[:port]` of a non-AWS S3 service; None for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    /// Key prefix under which each tenant has its own `<tenant id>/` folder.
    pub prefix: String,
    /// Image of the uploader container (pinned, like every image).
    pub upload_image: String,
}

/// What the backup template sees when off-cluster backups are on.
#[derive(Debug, Serialize)]
pub(super) struct BackupView<'a> {
    bucket: &'a str,
    endpoint: Option<&'a str>,
    region: &'a str,
    /// `<prefix>/<tenant id>`: the tenant's own folder, nothing above it.
    prefix: String,
    retention_days: u32,
    /// The one port the backup pod may reach outside the cluster.
    egress_port: u16,
    image: &'a str,
}

impl<'a> BackupView<'a> {
    pub(super) fn new(s3: &'a BackupS3, resources: &Resources, id: &str) -> Self {
        BackupView {
            bucket: &s3.bucket,
            endpoint: s3.endpoint.as_deref(),
            region: &s3.region,
            prefix: format!("{}/{id}", s3.prefix),
            retention_days: resources
                .backup_retention_days
                .unwrap_or(DEFAULT_RETENTION_DAYS),
            egress_port: s3
                .endpoint
                .as_deref()
                .and_then(endpoint_port)
                .unwrap_or(443),
            image: &s3.upload_image,
        }
    }
}

/// `http[s]://host[:port][/]` -> its port (explicit, or the scheme's); None when malformed.
pub fn endpoint_port(endpoint: &str) -> Option<u16> {
    let (rest, default) = if let Some(rest) = endpoint.strip_prefix("https://") {
        (rest, 443)
    } else {
        (endpoint.strip_prefix("http://")?, 80)
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let host_ok = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".-".contains(&c))
    };
    match authority.rsplit_once(':') {
        Some((host, port)) if host_ok(host) => port.parse().ok().filter(|p| *p > 0),
        None if host_ok(authority) => Some(default),
        _ => None,
    }
}

/// S3 bucket naming rules: 3-63 of `[a-z0-9.-]`, alphanumeric at both ends.
fn is_bucket(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".-".contains(c))
}

/// Path segments of `[A-Za-z0-9._-]`, none empty, `.` or `..`.
fn is_prefix(s: &str) -> bool {
    s.len() <= 512
        && s.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
        })
}

pub(super) fn validate(settings: &RenderSettings) -> Result<(), RenderError> {
    let Some(s3) = &settings.backup_s3 else {
        return Ok(());
    };
    let err = |field, reason: String| Err(RenderError::InvalidSettings { field, reason });
    if !is_bucket(&s3.bucket) {
        return err(
            "backup_s3.bucket",
            format!("{:?} is not a bucket name", s3.bucket),
        );
    }
    if let Some(endpoint) = s3
        .endpoint
        .as_deref()
        .filter(|e| endpoint_port(e).is_none())
    {
        return err(
            "backup_s3.endpoint",
            format!("{endpoint:?} is not http[s]://host[:port]"),
        );
    }
    let region_ok = !s3.region.is_empty()
        && s3.region.len() <= 63
        && s3
            .region
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    if !region_ok {
        return err(
            "backup_s3.region",
            format!("{:?} is not a region", s3.region),
        );
    }
    if !is_prefix(&s3.prefix) {
        return err(
            "backup_s3.prefix",
            format!(
                "{:?} is not a key prefix (a/b, no leading or trailing /)",
                s3.prefix
            ),
        );
    }
    if !is_pinned_image(&s3.upload_image) {
        return err(
            "backup_s3.upload_image",
            format!("{:?} is not pinned", s3.upload_image),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{demo_sealed_values, demo_spec, Renderer, SealedValues};

    fn s3() -> BackupS3 {
        BackupS3 {
            bucket: "tenant-backups".into(),
            endpoint: None,
            region: "eu-west-1".into(),
            prefix: "prod/tenants".into(),
            upload_image: DEFAULT_UPLOAD_IMAGE.into(),
        }
    }

    fn with_backup_keys() -> SealedValues {
        let mut sealed = demo_sealed_values();
        for key in BACKUP_SECRET_KEYS {
            sealed.encrypted.insert(key.into(), "AgFAKE==".into());
        }
        sealed
    }

    fn render(
        settings: &RenderSettings,
        sealed: &SealedValues,
        retention: Option<u32>,
    ) -> Result<String, RenderError> {
        let mut plan = crate::plans::Catalogue::builtin().unwrap().plans["starter"].clone();
        plan.resources.backup_retention_days = retention;
        let out = Renderer::builtin().render(&demo_spec(), &plan, settings, sealed)?;
        let file = format!("{}/backup.yaml", crate::render::tenant_dir("demo"));
        Ok(String::from_utf8(out.files[&file].clone()).unwrap())
    }

    #[test]
    fn the_uploader_writes_under_the_tenants_own_prefix_with_the_plans_retention() {
        let settings = RenderSettings {
            backup_s3: Some(s3()),
            ..RenderSettings::default()
        };
        let yaml = render(&settings, &with_backup_keys(), None).unwrap();
        assert!(yaml.contains("value: \"prod/tenants/demo\""), "{yaml}");
        assert!(yaml.contains("value: \"30\""), "default retention");
        assert!(
            !yaml.contains("name: BACKUP_S3_ENDPOINT"),
            "AWS itself: no endpoint"
        );
        let yaml = render(&settings, &with_backup_keys(), Some(90)).unwrap();
        assert!(yaml.contains("value: \"90\""));
    }

    #[test]
    fn off_cluster_backups_need_their_sealed_keys_and_sane_settings() {
        let settings = RenderSettings {
            backup_s3: Some(s3()),
            ..RenderSettings::default()
        };
        let err = render(&settings, &demo_sealed_values(), None).unwrap_err();
        assert!(err.to_string().contains("BACKUP_S3_ACCESS_KEY_ID"), "{err}");
        let err = render(&settings, &with_backup_keys(), Some(MAX_RETENTION_DAYS + 1));
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("backup_retention_days"));
        let bad = [
            BackupS3 {
                bucket: "UPPER".into(),
                ..s3()
            },
            BackupS3 {
                endpoint: Some("objects.example.com".into()),
                ..s3()
            },
            BackupS3 {
                prefix: "/tenants".into(),
                ..s3()
            },
            BackupS3 {
                upload_image: "amazon/aws-cli:latest".into(),
                ..s3()
            },
            BackupS3 {
                region: "EU West".into(),
                ..s3()
            },
        ];
        for backup_s3 in bad {
            let settings = RenderSettings {
                backup_s3: Some(backup_s3.clone()),
                ..RenderSettings::default()
            };
            let err = render(&settings, &with_backup_keys(), None);
            assert!(
                matches!(err, Err(RenderError::InvalidSettings { .. })),
                "{backup_s3:?} accepted"
            );
        }
        // Without a bucket the keys are not needed, and extra keys change nothing else.
        let plain = render(&RenderSettings::default(), &demo_sealed_values(), None).unwrap();
        assert!(!plain.contains("s3-upload"));
    }

    #[test]
    fn endpoint_ports_come_from_the_url_or_its_scheme() {
        assert_eq!(endpoint_port("https://s3.example.com"), Some(443));
        assert_eq!(endpoint_port("http://minio.minio:9000/"), Some(9000));
        assert_eq!(endpoint_port("http://127.0.0.1"), Some(80));
        for bad in [
            "s3.example.com",
            "ftp://x",
            "https://",
            "https://a:0",
            "https://a b",
            "https://a/b",
        ] {
            assert_eq!(endpoint_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_follow_s3_rules() {
        assert!(is_bucket("tenant-backups.eu"));
        assert!(!is_bucket("Tenant"));
        assert!(!is_bucket("ab"));
        assert!(is_prefix("tenants"));
        assert!(is_prefix("prod/tenants"));
        for bad in ["", "/tenants", "tenants/", "a//b", "a/../b", "a b"] {
            assert!(!is_prefix(bad), "{bad}");
        }
    }
}
