//! A tenant's secrets: generated with the OS CSPRNG, sealed at once for the cluster's
//! sealed-secrets controller, and only the sealed form kept (database and Git alike).

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::config::BackupCredentials;
use crate::render::{namespace_of, BACKUP_SECRET_KEYS, SECRET_NAME};
use crate::seal::{self, SealingKey};

pub const DATABASE_PASSWORD: &str = "DATABASE_PASSWORD";
pub const MQTT_ADMIN_PASSWORD: &str = "MQTT_ADMIN_PASSWORD";
pub const LICENSE_KEY: &str = "LICENSE_KEY";

/// A 32-character alphanumeric password (about 190 bits).
pub fn generate_password() -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Seals one value for the tenant's Secret.
pub fn seal_for(key: &SealingKey, customer_id: &str, plaintext: &str) -> anyhow::Result<String> {
    seal::seal(
        key,
        &namespace_of(customer_id),
        SECRET_NAME,
        plaintext.as_bytes(),
    )
}

/// Every secret a new tenant needs, sealed: fresh passwords and its license.
pub fn initial(
    key: &SealingKey,
    customer_id: &str,
    license_jwt: &str,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    Ok(vec![
        (
            DATABASE_PASSWORD,
            seal_for(key, customer_id, &generate_password())?,
        ),
        (
            MQTT_ADMIN_PASSWORD,
            seal_for(key, customer_id, &generate_password())?,
        ),
        (LICENSE_KEY, seal_for(key, customer_id, license_jwt)?),
    ])
}

/// The off-cluster backup credential sealed for the tenant, for each of its keys the tenant's
/// sealed values lack (tenants created before backups left the cluster get them on their next
/// render).
pub fn missing_backup_keys(
    key: &SealingKey,
    customer_id: &str,
    credentials: &BackupCredentials<'_>,
    present: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let [id_key, secret_key] = BACKUP_SECRET_KEYS;
    [
        (id_key, credentials.access_key_id),
        (secret_key, credentials.secret_access_key),
    ]
    .into_iter()
    .filter(|(name, _)| !present.contains_key(*name))
    .map(|(name, plaintext)| Ok((name, seal_for(key, customer_id, plaintext)?)))
    .collect()
}
