//! What a tenant's placement row says beyond the catalogue's own reads (`db::clusters`): the
//! waiting tenant put on a cluster, a footprint that changed, the warning of a tenant whose
//! cluster lacked room for it, and the clusters of a page of tenants.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{Any, Executor};

use super::Tx;

/// Puts a waiting tenant on `cluster`; false when it is no longer waiting (placed by another
/// replica meanwhile, or gone). Its `updated_at` keeps its place in the queue otherwise.
pub async fn set_cluster(
    tx: &mut Tx<'_>,
    customer_id: &str,
    cluster: &str,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE placements SET cluster = $1, updated_at = $2 \
         WHERE customer_id = $3 AND cluster IS NULL",
    )
    .bind(cluster)
    .bind(now)
    .bind(customer_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a tenant's new footprint (its cluster unchanged) and the warning that comes with it
/// (None clears it).
pub async fn set_footprint(
    tx: &mut Tx<'_>,
    customer_id: &str,
    cpu_millis: i64,
    memory_bytes: i64,
    warning: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE placements SET cpu_millis = $1, memory_bytes = $2, warning = $3 \
         WHERE customer_id = $4",
    )
    .bind(cpu_millis)
    .bind(memory_bytes)
    .bind(warning)
    .bind(customer_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The warning recorded on a tenant's placement (its cluster lacked room for a bigger
/// footprint), if any.
pub async fn warning<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT warning FROM placements WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(db)
            .await?;
    Ok(row.and_then(|(w,)| w))
}

/// How many tenants wait for room.
pub async fn unplaced_count<'c>(db: impl Executor<'c, Database = Any>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM placements WHERE cluster IS NULL")
        .fetch_one(db)
        .await
}

/// The cluster of each of `customer_ids` that has one (a page of `tenant list`).
pub async fn clusters_of<'c>(
    db: impl Executor<'c, Database = Any> + Copy,
    customer_ids: &[String],
) -> Result<BTreeMap<String, String>, sqlx::Error> {
    let rows = among(db, "cluster IS NOT NULL", customer_ids).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, cluster)| Some((id, cluster?)))
        .collect())
}

/// Which of `customer_ids` wait for a cluster (their changes are held out of Git).
pub async fn unplaced_among<'c>(
    db: impl Executor<'c, Database = Any> + Copy,
    customer_ids: &[String],
) -> Result<BTreeSet<String>, sqlx::Error> {
    let rows = among(db, "cluster IS NULL", customer_ids).await?;
    Ok(rows.into_iter().map(|(id, _)| id).collect())
}

/// (customer, cluster) of the placements among `customer_ids` matching `condition`, read 500
/// ids at a time.
async fn among<'c>(
    db: impl Executor<'c, Database = Any> + Copy,
    condition: &str,
    customer_ids: &[String],
) -> Result<Vec<(String, Option<String>)>, sqlx::Error> {
    let mut found = Vec::new();
    for chunk in customer_ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT customer_id, cluster FROM placements WHERE {condition} \
             AND customer_id IN ({})",
            marks.join(", ")
        );
        let mut query = sqlx::query_as::<_, (String, Option<String>)>(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        found.extend(query.fetch_all(db).await?);
    }
    Ok(found)
}
