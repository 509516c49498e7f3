//! The cluster catalogue and the tenants placed on it. States are [`ClusterState`]; room is
//! capacity minus the footprints of the tenants placed there, summed in the query that locks
//! the candidates, so two placements never both take the last room.

use std::collections::BTreeMap;

use sqlx::{Any, Executor, FromRow, Row};

use super::{Backend, Tx};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    /// Takes new tenants.
    Open,
    /// Keeps its tenants, takes no new ones.
    Cordoned,
    /// Its tenants are being moved out; takes no new ones.
    Draining,
}

impl ClusterState {
    pub const fn as_str(self) -> &'static str {
        match self {
            ClusterState::Open => "open",
            ClusterState::Cordoned => "cordoned",
            ClusterState::Draining => "draining",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "cordoned" => ClusterState::Cordoned,
            "draining" => ClusterState::Draining,
            _ => ClusterState::Open,
        }
    }
}

/// A cluster with what is placed on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Cluster {
    pub name: String,
    pub region: String,
    pub state: ClusterState,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub labels: BTreeMap<String, String>,
    pub allocated_cpu_millis: i64,
    pub allocated_memory_bytes: i64,
    pub tenants: i64,
    pub created_at: String,
}

impl Cluster {
    pub fn free_cpu_millis(&self) -> i64 {
        self.cpu_millis - self.allocated_cpu_millis
    }

    pub fn free_memory_bytes(&self) -> i64 {
        self.memory_bytes - self.allocated_memory_bytes
    }
}

#[derive(FromRow)]
struct ClusterRow {
    name: String,
    region: String,
    state: String,
    cpu_millis: i64,
    memory_bytes: i64,
    labels: String,
    allocated_cpu_millis: i64,
    allocated_memory_bytes: i64,
    tenants: i64,
    created_at: String,
}

impl From<ClusterRow> for Cluster {
    fn from(row: ClusterRow) -> Self {
        Cluster {
            labels: serde_json::from_str(&row.labels).unwrap_or_default(),
            state: ClusterState::parse(&row.state),
            name: row.name,
            region: row.region,
            cpu_millis: row.cpu_millis,
            memory_bytes: row.memory_bytes,
            allocated_cpu_millis: row.allocated_cpu_millis,
            allocated_memory_bytes: row.allocated_memory_bytes,
            tenants: row.tenants,
            created_at: row.created_at,
        }
    }
}

/// Clusters with their placed footprints summed (cast: a PostgreSQL SUM of BIGINT is NUMERIC,
/// which the Any driver cannot read).
const WITH_USAGE: &str =
    "SELECT c.name, c.region, c.state, c.cpu_millis, c.memory_bytes, c.labels, \
     c.created_at, \
     (SELECT CAST(COALESCE(SUM(p.cpu_millis), 0) AS BIGINT) FROM placements p WHERE p.cluster = c.name) \
        AS allocated_cpu_millis, \
     (SELECT CAST(COALESCE(SUM(p.memory_bytes), 0) AS BIGINT) FROM placements p WHERE p.cluster = c.name) \
        AS allocated_memory_bytes, \
     (SELECT COUNT(*) FROM placements p WHERE p.cluster = c.name) AS tenants \
     FROM clusters c";

pub struct NewCluster<'a> {
    pub name: &'a str,
    pub region: &'a str,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub labels: &'a BTreeMap<String, String>,
}

/// Adds a cluster; false when the name is taken.
pub async fn insert<'c>(
    db: impl Executor<'c, Database = Any>,
    cluster: &NewCluster<'_>,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let labels = serde_json::to_string(cluster.labels).unwrap_or_else(|_| "{}".into());
    let done = sqlx::query(
        "INSERT INTO clusters (name, region, cpu_millis, memory_bytes, labels, state, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
    )
    .bind(cluster.name)
    .bind(cluster.region)
    .bind(cluster.cpu_millis)
    .bind(cluster.memory_bytes)
    .bind(labels)
    .bind(ClusterState::Open.as_str())
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list<'c>(db: impl Executor<'c, Database = Any>) -> Result<Vec<Cluster>, sqlx::Error> {
    let rows: Vec<ClusterRow> = sqlx::query_as(&format!("{WITH_USAGE} ORDER BY c.name"))
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Cluster::from).collect())
}

pub async fn get<'c>(
    db: impl Executor<'c, Database = Any>,
    name: &str,
) -> Result<Option<Cluster>, sqlx::Error> {
    let row: Option<ClusterRow> = sqlx::query_as(&format!("{WITH_USAGE} WHERE c.name = $1"))
        .bind(name)
        .fetch_optional(db)
        .await?;
    Ok(row.map(Cluster::from))
}

/// Sets a cluster's state; false when there is no such cluster.
pub async fn set_state<'c>(
    db: impl Executor<'c, Database = Any>,
    name: &str,
    state: ClusterState,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE clusters SET state = $1 WHERE name = $2")
        .bind(state.as_str())
        .bind(name)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes an empty cluster; false when it has tenants (or does not exist).
pub async fn remove_if_empty<'c>(
    db: impl Executor<'c, Database = Any>,
    name: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM clusters WHERE name = $1 \
         AND NOT EXISTS (SELECT 1 FROM placements WHERE cluster = $1)",
    )
    .bind(name)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The regions of the catalogue, sorted.
pub async fn regions<'c>(
    db: impl Executor<'c, Database = Any>,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT DISTINCT region FROM clusters ORDER BY region")
        .fetch_all(db)
        .await?;
    rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
}

/// The open clusters of `region`, locked until `tx` ends (PostgreSQL; SQLite's single writer
/// serialises placements by itself), with what is placed on them now.
pub async fn lock_open_in_region(
    tx: &mut Tx<'_>,
    backend: Backend,
    region: &str,
) -> Result<Vec<Cluster>, sqlx::Error> {
    // Lock first, then sum: a placement committed while we waited is then in the sums.
    if backend == Backend::Sqlite {
        // A read-then-write transaction on SQLite fails with SQLITE_BUSY when another writer
        // got in between; a write statement first takes the lock (waiting for it) instead.
        sqlx::query("UPDATE clusters SET state = state WHERE 1 = 0")
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(&format!(
        "SELECT name FROM clusters WHERE region = $1 AND state = $2 ORDER BY name {}",
        backend.for_update()
    ))
    .bind(region)
    .bind(ClusterState::Open.as_str())
    .fetch_all(&mut **tx)
    .await?;
    let rows: Vec<ClusterRow> = sqlx::query_as(&format!(
        "{WITH_USAGE} WHERE c.region = $1 AND c.state = $2 ORDER BY c.name"
    ))
    .bind(region)
    .bind(ClusterState::Open.as_str())
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(Cluster::from).collect())
}

/// A tenant's placement row: its footprint, region and cluster (None: waiting for room).
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct Placement {
    pub customer_id: String,
    pub region: String,
    pub cluster: Option<String>,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

pub async fn upsert_placement(
    tx: &mut Tx<'_>,
    p: &Placement,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO placements (customer_id, region, cluster, cpu_millis, memory_bytes, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (customer_id) DO UPDATE SET \
         region = excluded.region, cluster = excluded.cluster, cpu_millis = excluded.cpu_millis, \
         memory_bytes = excluded.memory_bytes, updated_at = excluded.updated_at",
    )
    .bind(&p.customer_id)
    .bind(&p.region)
    .bind(&p.cluster)
    .bind(p.cpu_millis)
    .bind(p.memory_bytes)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn placement<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<Option<Placement>, sqlx::Error> {
    sqlx::query_as(
        "SELECT customer_id, region, cluster, cpu_millis, memory_bytes FROM placements \
         WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(db)
    .await
}

/// Tenants waiting for room, oldest first.
pub async fn unplaced<'c>(
    db: impl Executor<'c, Database = Any>,
    limit: i64,
) -> Result<Vec<Placement>, sqlx::Error> {
    sqlx::query_as(
        "SELECT customer_id, region, cluster, cpu_millis, memory_bytes FROM placements \
         WHERE cluster IS NULL ORDER BY updated_at, customer_id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Frees a deleted tenant's room.
pub async fn remove_placement<'c>(
    db: impl Executor<'c, Database = Any>,
    customer_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM placements WHERE customer_id = $1")
        .bind(customer_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Whether the catalogue has any cluster: without one, signups are not placed at all (a
/// single-cluster install works as before).
pub async fn any<'c>(db: impl Executor<'c, Database = Any>) -> Result<bool, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as("SELECT name FROM clusters LIMIT 1")
        .fetch_optional(db)
        .await?;
    Ok(row.is_some())
}

/// Locks one cluster (whatever its state) until `tx` ends and reads what is placed on it.
pub async fn lock_one(
    tx: &mut Tx<'_>,
    backend: Backend,
    name: &str,
) -> Result<Option<Cluster>, sqlx::Error> {
    if backend == Backend::Sqlite {
        // As in `lock_open_in_region`: take SQLite's write lock before reading.
        sqlx::query("UPDATE clusters SET state = state WHERE 1 = 0")
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(&format!(
        "SELECT name FROM clusters WHERE name = $1 {}",
        backend.for_update()
    ))
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?;
    get(&mut **tx, name).await
}

/// A summary of the room on offer (open clusters' capacity, placed footprints): while it stays
/// the same, a tenant that did not fit still does not, and the placement worker skips its
/// pass.
pub async fn room_signature<'c>(
    db: impl Executor<'c, Database = Any>,
) -> Result<(i64, i64, i64, i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT \
         (SELECT COUNT(*) FROM clusters WHERE state = $1), \
         (SELECT CAST(COALESCE(SUM(cpu_millis), 0) AS BIGINT) FROM clusters WHERE state = $1), \
         (SELECT CAST(COALESCE(SUM(memory_bytes), 0) AS BIGINT) FROM clusters WHERE state = $1), \
         (SELECT COUNT(*) FROM placements WHERE cluster IS NOT NULL), \
         (SELECT CAST(COALESCE(SUM(cpu_millis), 0) AS BIGINT) FROM placements \
            WHERE cluster IS NOT NULL), \
         (SELECT CAST(COALESCE(SUM(memory_bytes), 0) AS BIGINT) FROM placements \
            WHERE cluster IS NOT NULL)",
    )
    .bind(ClusterState::Open.as_str())
    .fetch_one(db)
    .await
}

/// Stores a cluster's (encrypted) event secret, replacing the one before; false when there is no
/// such cluster.
pub async fn set_event_secret<'c>(
    db: impl Executor<'c, Database = Any>,
    name: &str,
    sealed: &str,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE clusters SET event_secret = $1, event_secret_set_at = $2 WHERE name = $3",
    )
    .bind(sealed)
    .bind(now)
    .bind(name)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A cluster's encrypted event secret: None when there is no such cluster, Some(None) when it
/// has none yet (added before per-cluster secrets).
pub async fn event_secret<'c>(
    db: impl Executor<'c, Database = Any>,
    name: &str,
) -> Result<Option<Option<String>>, sqlx::Error> {
    let row = sqlx::query("SELECT event_secret FROM clusters WHERE name = $1")
        .bind(name)
        .fetch_optional(db)
        .await?;
    row.map(|r| r.try_get::<Option<String>, _>(0)).transpose()
}
