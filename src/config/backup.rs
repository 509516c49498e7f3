//! Off-cluster backups: the S3-compatible bucket every tenant's nightly dump is copied to, and
//! the credential its uploader uses (sealed into each tenant's Secret, never rendered in plain).

use clap::Args;
use secrecy::{ExposeSecret, SecretString};

use crate::render::{BackupS3, DEFAULT_UPLOAD_IMAGE};

#[derive(Debug, Clone, Args)]
pub struct BackupConfig {
    /// Bucket the nightly dumps are copied to, as `s3://<bucket>/<prefix>/<tenant id>/<file>`.
    /// Unset: dumps stay on each tenant's `backups` claim only.
    #[arg(long, env = "BACKUP_S3_BUCKET", global = true)]
    pub backup_s3_bucket: Option<String>,

    /// Endpoint of a non-AWS S3 service (`https://host[:port]`). Unset: AWS S3.
    #[arg(long, env = "BACKUP_S3_ENDPOINT", global = true)]
    pub backup_s3_endpoint: Option<String>,

    /// Region of the bucket.
    #[arg(
        long,
        env = "BACKUP_S3_REGION",
        default_value = "us-east-1",
        global = true
    )]
    pub backup_s3_region: String,

    /// Key prefix; each tenant writes under `<prefix>/<tenant id>/` only.
    #[arg(
        long,
        env = "BACKUP_S3_PREFIX",
        default_value = "tenants",
        global = true
    )]
    pub backup_s3_prefix: String,

    /// Access key id of the uploader's credential (sealed into each tenant's Secret).
    #[arg(
        long,
        env = "BACKUP_S3_ACCESS_KEY_ID",
        global = true,
        hide_env_values = true
    )]
    pub backup_s3_access_key_id: Option<SecretString>,

    /// Secret access key of that credential.
    #[arg(
        long,
        env = "BACKUP_S3_SECRET_ACCESS_KEY",
        global = true,
        hide_env_values = true
    )]
    pub backup_s3_secret_access_key: Option<SecretString>,

    /// Image of the uploader (the AWS CLI), pinned by tag or digest.
    #[arg(
        long,
        env = "BACKUP_S3_UPLOAD_IMAGE",
        default_value = DEFAULT_UPLOAD_IMAGE,
        global = true
    )]
    pub backup_s3_upload_image: String,
}

/// The uploader's credential, in plain text only until it is sealed.
pub struct BackupCredentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A credential part that must be set (and not empty) once a bucket is.
fn required<'a>(value: &'a Option<SecretString>, name: &str) -> anyhow::Result<&'a str> {
    value
        .as_ref()
        .map(|v| v.expose_secret())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow::anyhow!("BACKUP_S3_BUCKET is set but {name} is not"))
}

impl BackupConfig {
    /// Where dumps go, if a bucket is configured (an empty value counts as unset).
    pub fn render_settings(&self) -> Option<BackupS3> {
        Some(BackupS3 {
            bucket: non_empty(&self.backup_s3_bucket)?.to_string(),
            endpoint: non_empty(&self.backup_s3_endpoint).map(str::to_string),
            region: self.backup_s3_region.trim().to_string(),
            prefix: self.backup_s3_prefix.trim().trim_matches('/').to_string(),
            upload_image: self.backup_s3_upload_image.trim().to_string(),
        })
    }

    /// The credential to seal for each tenant; None when backups stay on the cluster.
    pub fn credentials(&self) -> anyhow::Result<Option<BackupCredentials<'_>>> {
        if self.render_settings().is_none() {
            return Ok(None);
        }
        Ok(Some(BackupCredentials {
            access_key_id: required(&self.backup_s3_access_key_id, "BACKUP_S3_ACCESS_KEY_ID")?,
            secret_access_key: required(
                &self.backup_s3_secret_access_key,
                "BACKUP_S3_SECRET_ACCESS_KEY",
            )?,
        }))
    }
}
