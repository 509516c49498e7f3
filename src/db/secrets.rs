//! A tenant's sealed secret values (ciphertext for the cluster's controller, never plaintext).

use std::collections::BTreeMap;

use sqlx::{Any, Executor};

pub async fn upsert<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    name: &str,
    sealed_value: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tenant_secrets (customer_id, name, sealed_value, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (customer_id, name) DO UPDATE SET sealed_value = excluded.sealed_value, \
         updated_at = excluded.updated_at",
    )
    .bind(customer_id)
    .bind(name)
    .bind(sealed_value)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Stores a value unless the tenant already has one under that name (concurrent first renders
/// then agree on one ciphertext).
pub async fn insert_if_absent<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    name: &str,
    sealed_value: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tenant_secrets (customer_id, name, sealed_value, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (customer_id, name) DO NOTHING",
    )
    .bind(customer_id)
    .bind(name)
    .bind(sealed_value)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn all<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<BTreeMap<String, String>, sqlx::Error> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, sealed_value FROM tenant_secrets WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().collect())
}
