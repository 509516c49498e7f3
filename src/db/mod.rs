//! Database access through sqlx's `Any` driver, so one set of queries serves SQLite and
//! PostgreSQL. Queries use `$n` placeholders (both backends accept them) and only portable
//! types: TEXT, BIGINT/INTEGER, and timestamps as fixed-width RFC 3339 text.

pub mod accounts;
pub mod audit;
pub mod cancellations;
pub mod clusters;
pub mod deployments;
pub mod erasure;
pub mod gauges;
pub mod licenses;
pub mod lifecycle;
pub mod login_throttle;
pub mod notifications;
pub mod outbox;
pub mod placements;
pub mod queue;
pub mod reviews;
pub mod rollouts;
pub mod secrets;
pub mod storage;
pub mod subscriptions;
pub mod tenants;

use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

pub type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// How long a SQLite statement waits for another connection's lock before SQLITE_BUSY.
pub const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

/// How long `billing serve` waits at start-up for a database that is not up yet.
pub const STARTUP_WAIT: Duration = Duration::from_secs(30);

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The row lock a claim query ends with: PostgreSQL skips rows another replica holds;
    /// SQLite has one writer at a time, so the UPDATE itself is the lock.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// The row lock of a read-then-write in one transaction (SQLite: its single writer).
    pub fn for_update(self) -> &'static str {
        match self {
            Backend::Postgres => "FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    pub fn of_url(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            bail!("DATABASE_URL must start with sqlite:, postgres:// or postgresql://")
        }
    }
}

#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// The SQLite database file (None on PostgreSQL or in memory): where free space is read.
    pub sqlite_file: Option<std::path::PathBuf>,
}

impl Db {
    /// Connects (creating a SQLite file and its directory when needed); does not migrate.
    /// Requests wait at most `acquire_timeout` for a connection; start-up alone waits up to
    /// [`STARTUP_WAIT`] for the database to come up.
    pub async fn connect(url: &str, acquire_timeout: Duration) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let sqlite_file = (backend == Backend::Sqlite)
            .then(|| sqlite_file(url))
            .flatten();
        if let Some(parent) = sqlite_file.as_deref().and_then(|f| f.parent()) {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating database directory {}", parent.display()))?;
            }
        }
        let options = AnyConnectOptions::from_str(url).context("parsing DATABASE_URL")?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .acquire_timeout(acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the single writer; the busy timeout makes
                        // concurrent writers queue instead of failing with SQLITE_BUSY.
                        // secure_delete zeroes deleted and overwritten content, so a deleted
                        // customer's data does not linger in free pages of the file.
                        conn.execute(&*format!(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; \
                             PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
                             PRAGMA secure_delete = ON;"
                        ))
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        let deadline = tokio::time::Instant::now() + STARTUP_WAIT;
        loop {
            match pool.acquire().await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(e).context("connecting to the database");
                }
                Err(e) if is_unavailable(&e) => {
                    tracing::warn!(error = %e, "database not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e).context("connecting to the database"),
            }
        }
        Ok(Db {
            pool,
            backend,
            sqlite_file,
        })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&self.pool)
            .await
            .context("applying migrations")?;
        Ok(())
    }

    /// One round trip, bounded by `within` whatever the pool's acquire timeout.
    pub async fn ping(&self, within: Duration) -> Result<(), sqlx::Error> {
        tokio::time::timeout(within, sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        Ok(())
    }
}

/// The file a `sqlite:` URL names; None for an in-memory database.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}

/// Timestamps are stored as `2026-11-24T15:35:44.123Z`: fixed width, so text order is time order.
pub fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_ts(text: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("bad timestamp {text:?} in database"))?
        .with_timezone(&Utc))
}

/// True when the error says the database cannot be reached rather than that a query is wrong:
/// no connection within the acquire timeout, a refused or dropped connection, or PostgreSQL's
/// connection-exception (08) and operator-intervention (57P, e.g. shutting down) classes.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    use sqlx::Error::*;
    match err {
        PoolTimedOut | PoolClosed | Io(_) | Tls(_) | WorkerCrashed => true,
        Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_sort_as_text() {
        let a = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.006Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = a + chrono::Duration::milliseconds(995);
        assert_eq!(ts(a), "2026-01-02T03:04:05.006Z");
        assert_eq!(parse_ts(&ts(b)).unwrap(), b);
        assert!(ts(a) < ts(b));
    }

    #[test]
    fn backend_is_taken_from_the_url_scheme() {
        assert_eq!(Backend::of_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::of_url("postgresql://h/db").unwrap(),
            Backend::Postgres
        );
        assert!(Backend::of_url("mysql://h/db").is_err());
    }
}
