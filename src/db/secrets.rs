//! A tenant's sealed secret values (ciphertext for the cluster's controller, never plaintext).

use std::collections::BTreeMap;

use sqlx::{Any, Executor};

/// Stores a value, replacing the tenant's value of that name.
pub async fn upsert<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
    name: &str,
    sealed_value: &str,
    now: &str,
) -> Result<(), sqlx::Error> {
    let on_conflict =
        "DO UPDATE SET sealed_value = excluded.sealed_value, updated_at = excluded.updated_at";
    store(db, on_conflict, [customer_id, name, sealed_value, now]).await
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
    store(db, "DO NOTHING", [customer_id, name, sealed_value, now]).await
}

/// Inserts (customer id, name, sealed value, time), doing `on_conflict` when the name exists.
async fn store<'c>(
    db: impl Executor<'c, Database = Any>,
    on_conflict: &str,
    values: [&str; 4],
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO tenant_secrets (customer_id, name, sealed_value, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (customer_id, name) {on_conflict}"
    );
    values
        .into_iter()
        .fold(sqlx::query(&sql), |query, value| query.bind(value))
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
