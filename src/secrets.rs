//! A tenant's secrets: generated with the OS CSPRNG, sealed at once for the cluster's
//! sealed-secrets controller, and only the sealed form kept (database and Git alike).

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::render::{namespace_of, SECRET_NAME};
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
