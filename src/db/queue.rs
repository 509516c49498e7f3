//! The one lease queue behind the render jobs, the emails and the Stripe cancellations (and,
//! through [`Lease`], the lifecycle scheduler's lease): a worker claims rows under a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never share a row), then completes
//! them or retries them after a [`Backoff`], until the queue's attempts run out. Each queue is
//! a [`Queue`] descriptor; every statement is built from it here.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Encode, Executor, FromRow, Type};

use crate::db::{self, Db};

/// How long a failed row waits: exponential with a cap, and equal jitter so rows that failed
/// together (one outage) do not all come back at once, yet none sooner than half the wait.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The wait after the first failure.
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The longest wait after `attempts` failures before this one: `base · 2^attempts`, at most
    /// the cap.
    pub fn ceiling(&self, attempts: i64) -> Duration {
        let factor = 2i64.saturating_pow(attempts.clamp(0, 62) as u32);
        let ms = self.base.num_milliseconds().saturating_mul(factor);
        Duration::milliseconds(ms.min(self.cap.num_milliseconds()))
    }

    /// A wait drawn uniformly from `[ceiling / 2, ceiling]`.
    pub fn delay(&self, attempts: i64) -> Duration {
        let ceiling = self.ceiling(attempts).num_milliseconds().max(0);
        Duration::milliseconds(rand::thread_rng().gen_range(ceiling / 2..=ceiling))
    }
}

/// The lease columns of a table: who holds a row and until when (`db::ts` text).
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub table: &'static str,
    /// The column naming a row.
    pub key: &'static str,
    pub owner: &'static str,
    pub until: &'static str,
}

/// The lease end of a lease given back, for columns that cannot be NULL.
const LONG_AGO: &str = "1970-01-01T00:00:00.000Z";

impl Lease {
    /// A queue table's lease: the columns `lease_owner` and `lease_until`.
    pub const fn of_queue(table: &'static str, key: &'static str) -> Lease {
        Lease {
            table,
            key,
            owner: "lease_owner",
            until: "lease_until",
        }
    }

    /// The condition that nobody holds a row at `now` (a placeholder).
    fn free_at(&self, now: &str) -> String {
        format!("({u} IS NULL OR {u} < {now})", u = self.until)
    }

    /// Takes row `key` for `owner` for `lease`, if nobody else holds it at `now` (the owner's own
    /// lease is renewed). False when another owner does.
    pub async fn take<'c, K: Key>(
        &self,
        db: impl Executor<'c, Database = Any>,
        key: K,
        owner: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let Lease {
            table, owner: o, ..
        } = self;
        let sql = format!(
            "UPDATE {table} SET {o} = $1, {u} = $2 WHERE {k} = $3 AND ({free} OR {o} = $1)",
            u = self.until,
            k = self.key,
            free = self.free_at("$4"),
        );
        let taken = sqlx::query(&sql)
            .bind(owner)
            .bind(db::ts(now + lease))
            .bind(key)
            .bind(db::ts(now))
            .execute(db)
            .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Gives row `key` back, if `owner` still holds it.
    pub async fn release<'c, K: Key>(
        &self,
        db: impl Executor<'c, Database = Any>,
        key: K,
        owner: &str,
    ) -> Result<(), sqlx::Error> {
        let sql = format!(
            "UPDATE {t} SET {o} = NULL, {u} = $1 WHERE {k} = $2 AND {o} = $3",
            t = self.table,
            o = self.owner,
            u = self.until,
            k = self.key,
        );
        sqlx::query(&sql)
            .bind(LONG_AGO)
            .bind(key)
            .bind(owner)
            .execute(db)
            .await?;
        Ok(())
    }
}

/// A row's key as a bind value (an integer id, a text id).
pub trait Key: for<'q> Encode<'q, Any> + Type<Any> + Send + 'static {}
impl<K: for<'q> Encode<'q, Any> + Type<Any> + Send + 'static> Key for K {}

/// A claimed row: read from the claim's `RETURNING` columns.
pub trait Item: for<'r> FromRow<'r, AnyRow> + Send + Unpin {
    type Key: Key + Ord;
    fn key(&self) -> Self::Key;
}

/// One queue: its table and the words of its status column. Every row has `attempts`,
/// `last_error` and the lease columns of `lease`.
#[derive(Debug, Clone, Copy)]
pub struct Queue {
    pub lease: Lease,
    /// What a claim returns (the [`Item`]'s columns) and the order it takes rows in.
    pub returning: &'static str,
    pub order: &'static str,
    pub pending: &'static str,
    pub done: &'static str,
    pub failed: &'static str,
    /// The column stamped with the time of every change, if the table has one.
    pub stamp: Option<&'static str>,
    /// Columns emptied when a row leaves the queue, done or failed (personal data).
    pub forget: &'static [&'static str],
    pub max_attempts: i64,
    pub backoff: Backoff,
}

impl Queue {
    /// `, updated_at = <now>` for a table with a stamp column.
    fn stamp(&self, now: &str) -> String {
        self.stamp
            .map(|c| format!(", {c} = {now}"))
            .unwrap_or_default()
    }

    /// `, recipient = NULL, …` for the columns forgotten when a row leaves the queue.
    fn forget(&self) -> String {
        self.forget
            .iter()
            .map(|c| format!(", {c} = NULL"))
            .collect()
    }

    /// Takes up to `limit` pending rows whose lease is free or expired, in the queue's order.
    pub async fn claim<T: Item>(
        &self,
        db: &Db,
        owner: &str,
        limit: i64,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<T>, sqlx::Error> {
        let Lease { table, key, .. } = self.lease;
        let sql = format!(
            "UPDATE {table} SET {o} = $1, {u} = $2{stamp} WHERE {key} IN (SELECT {key} FROM {table} \
             WHERE status = $5 AND {free} ORDER BY {order} LIMIT $4 {lock}) RETURNING {returning}",
            o = self.lease.owner,
            u = self.lease.until,
            stamp = self.stamp("$3"),
            free = self.lease.free_at("$3"),
            order = self.order,
            lock = db.backend.skip_locked(),
            returning = self.returning,
        );
        let mut rows: Vec<T> = sqlx::query_as(&sql)
            .bind(owner)
            .bind(db::ts(now + lease))
            .bind(db::ts(now))
            .bind(limit)
            .bind(self.pending)
            .fetch_all(&db.pool)
            .await?;
        // RETURNING has no order of its own.
        rows.sort_by_key(|r| r.key());
        Ok(rows)
    }

    /// The UPDATE by which `owner` lets go of row `key`, its lease ending at `until`, with the
    /// assignments `set`. It binds `$1` to `$4`; `set` and `until` go on from `$5`. A row settled
    /// or taken by another worker meanwhile is left alone.
    fn let_go<'q, K: Key>(
        &self,
        sql: &'q mut String,
        until: &str,
        set: &str,
        (key, owner, now): (K, &'q str, DateTime<Utc>),
    ) -> Query<'q, Any, AnyArguments<'q>> {
        let Lease {
            table,
            key: k,
            owner: o,
            until: u,
        } = self.lease;
        *sql = format!(
            "UPDATE {table} SET {o} = NULL, {u} = {until}{stamp}, {set} \
             WHERE {k} = $1 AND {o} = $2 AND status = $3",
            stamp = self.stamp("$4"),
        );
        sqlx::query(sql)
            .bind(key)
            .bind(owner)
            .bind(self.pending)
            .bind(db::ts(now))
    }

    /// Marks a row done (only while `owner` holds it), with `note` as its last error and the
    /// table's own columns `set`. False when the lease was lost meanwhile.
    pub async fn complete<'c, K: Key>(
        &self,
        db: impl Executor<'c, Database = Any>,
        key: K,
        owner: &str,
        note: Option<&str>,
        set: &[(&str, Option<&str>)],
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let mut assign = format!("status = $5, last_error = $6{}", self.forget());
        for (i, (column, _)) in set.iter().enumerate() {
            assign.push_str(&format!(", {column} = ${}", i + 7));
        }
        let mut sql = String::new();
        let mut query = self
            .let_go(&mut sql, "NULL", &assign, (key, owner, now))
            .bind(self.done)
            .bind(note);
        for (_, value) in set {
            query = query.bind(*value);
        }
        Ok(query.execute(db).await?.rows_affected() == 1)
    }

    /// Records a failed attempt of a row `owner` holds, which had `attempts` before: past the
    /// queue's attempts it has failed for good, otherwise it is claimable again after the
    /// backoff. True when it gave up.
    pub async fn retry<'c, K: Key>(
        &self,
        db: impl Executor<'c, Database = Any>,
        key: K,
        owner: &str,
        attempts: i64,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let gave_up = attempts + 1 >= self.max_attempts;
        let forget = if gave_up {
            self.forget()
        } else {
            String::new()
        };
        let assign = format!("attempts = $6, last_error = $7, status = $8{forget}");
        let mut sql = String::new();
        let retried = self
            .let_go(&mut sql, "$5", &assign, (key, owner, now))
            .bind(db::ts(now + self.backoff.delay(attempts)))
            .bind(attempts + 1)
            .bind(error)
            .bind(if gave_up { self.failed } else { self.pending })
            .execute(db)
            .await?;
        Ok(gave_up && retried.rows_affected() == 1)
    }

    /// Puts rows `owner` holds back without counting an attempt (what they need was
    /// unavailable): claimable again after `delay`.
    pub async fn postpone<K: Key + Clone>(
        &self,
        db: &Db,
        keys: &[K],
        owner: &str,
        error: &str,
        delay: Duration,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        for key in keys {
            let mut sql = String::new();
            self.let_go(&mut sql, "$5", "last_error = $6", (key.clone(), owner, now))
                .bind(db::ts(now + delay))
                .bind(error)
                .execute(&db.pool)
                .await?;
        }
        Ok(())
    }

    /// Frees every lease: only for a single-process SQLite deployment starting up, where no
    /// other worker can hold one.
    pub async fn release_all(&self, db: &Db) -> Result<u64, sqlx::Error> {
        let sql = format!(
            "UPDATE {t} SET {o} = NULL, {u} = NULL WHERE status = $1",
            t = self.lease.table,
            o = self.lease.owner,
            u = self.lease.until,
        );
        let r = sqlx::query(&sql)
            .bind(self.pending)
            .execute(&db.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// How many rows wait (leased or not).
    pub async fn pending_count(&self, db: &Db) -> Result<i64, sqlx::Error> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE status = $1",
            self.lease.table
        );
        sqlx::query_scalar(&sql)
            .bind(self.pending)
            .fetch_one(&db.pool)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        base: Duration::seconds(1),
        cap: Duration::seconds(256),
    };

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let ceilings: Vec<i64> = [0, 1, 2, 8, 9, 100, i64::MAX, -1]
            .into_iter()
            .map(|n| BACKOFF.ceiling(n).num_seconds())
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 256, 256, 256, 256, 1]);
    }

    #[test]
    fn the_jitter_stays_within_half_and_all_of_the_ceiling() {
        for attempts in 0..12 {
            let ceiling = BACKOFF.ceiling(attempts);
            let delays: Vec<Duration> = (0..200).map(|_| BACKOFF.delay(attempts)).collect();
            assert!(
                delays.iter().all(|d| *d >= ceiling / 2 && *d <= ceiling),
                "{attempts}: {delays:?}"
            );
            // Jittered, not constant.
            assert!(delays.iter().any(|d| *d != delays[0]), "{attempts}");
        }
    }
}
