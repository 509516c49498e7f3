//! The one lease queue (`db/queue.rs`) through each queue that uses it, on SQLite and
//! PostgreSQL: a row is leased to one worker, only its holder completes, retries or postpones
//! it, a failure waits out the backoff, and the attempts run out; the lifecycle lease is held by
//! one process at a time.

mod common;

use billing::db::notifications::{self, NewNotification};
use billing::db::{cancellations, lifecycle, outbox, Db};
use billing::notify::Kind;
use chrono::{DateTime, Duration, Utc};
use common::pg::TempDatabase;
use common::Backend;

for_each_backend!(
    a_cancellation_is_retried_after_its_backoff_until_given_up,
    an_email_is_settled_by_its_holder_and_forgets_its_recipient,
    a_render_job_is_postponed_retried_and_completed_by_its_holder,
    the_lifecycle_lease_is_held_by_one_process_at_a_time
);

const LEASE: Duration = Duration::seconds(60);

/// A migrated database; the guard drops a PostgreSQL one at the end of the test.
async fn database(backend: Backend) -> Option<((tempfile::TempDir, Option<TempDatabase>), Db)> {
    let dir = tempfile::tempdir().unwrap();
    let (url, guard) = common::database_url(backend, dir.path()).await?;
    let db = Db::connect(&url, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    Some(((dir, guard), db))
}

/// (status, attempts, lease_until) of a row.
async fn row(db: &Db, table: &str, key: &str, id: &str) -> (String, i64, Option<String>) {
    let sql = format!("SELECT status, attempts, lease_until FROM {table} WHERE {key} = $1");
    sqlx::query_as(&sql)
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

fn at(now: DateTime<Utc>, ms: i64) -> DateTime<Utc> {
    now + Duration::milliseconds(ms)
}

async fn a_cancellation_is_retried_after_its_backoff_until_given_up(backend: Backend) {
    let Some((_dir, db)) = database(backend).await else {
        return;
    };
    let now = Utc::now();
    let ts = billing::db::ts(now);
    cancellations::queue(&db.pool, "sub_a", &ts).await.unwrap();
    let mine = cancellations::claim(&db, "a", 10, LEASE, now)
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    let taken = cancellations::claim(&db, "b", 10, LEASE, now)
        .await
        .unwrap();
    assert!(taken.is_empty(), "leased to a");
    let lost = cancellations::finish(&db, &mine[0], "b", Some("boom"), now).await;
    assert!(!lost.unwrap());
    assert_eq!(
        row(&db, "stripe_cancellations", "subscription_id", "sub_a")
            .await
            .1,
        0
    );

    // The first failure waits between half a second and a second.
    assert!(
        !cancellations::finish(&db, &mine[0], "a", Some("boom"), now)
            .await
            .unwrap()
    );
    let (status, attempts, until) =
        row(&db, "stripe_cancellations", "subscription_id", "sub_a").await;
    assert_eq!((status.as_str(), attempts), ("pending", 1));
    let until = until.unwrap();
    assert!(
        until >= billing::db::ts(at(now, 500)) && until <= billing::db::ts(at(now, 1000)),
        "{until}"
    );
    assert!(cancellations::claim(&db, "b", 10, LEASE, at(now, 499))
        .await
        .unwrap()
        .is_empty());

    // Ten attempts in all, however long each waits.
    let mut tries = 1;
    let mut later = now;
    loop {
        later += Duration::hours(2);
        let due = cancellations::claim(&db, "b", 10, LEASE, later)
            .await
            .unwrap();
        assert_eq!(due.len(), 1, "after {tries} attempts");
        assert_eq!(due[0].attempts, tries);
        tries += 1;
        if cancellations::finish(&db, &due[0], "b", Some("boom"), later)
            .await
            .unwrap()
        {
            break;
        }
    }
    assert_eq!(tries, 10);
    let (status, ..) = row(&db, "stripe_cancellations", "subscription_id", "sub_a").await;
    assert_eq!(status, "failed");
    let later = later + Duration::days(1);
    assert!(cancellations::claim(&db, "b", 10, LEASE, later)
        .await
        .unwrap()
        .is_empty());

    cancellations::queue(&db.pool, "sub_b", &ts).await.unwrap();
    let due = cancellations::claim(&db, "a", 10, LEASE, now)
        .await
        .unwrap();
    assert!(!cancellations::finish(&db, &due[0], "a", None, now)
        .await
        .unwrap());
    let (status, ..) = row(&db, "stripe_cancellations", "subscription_id", "sub_b").await;
    assert_eq!(status, "done");
}

async fn an_email_is_settled_by_its_holder_and_forgets_its_recipient(backend: Backend) {
    let Some((_dir, db)) = database(backend).await else {
        return;
    };
    let now = Utc::now();
    for key in ["1", "2"] {
        let email = NewNotification {
            customer_id: "cus_1",
            kind: Kind::Welcome,
            dedupe_key: key,
            recipient: "ann@acme.example",
            subject: "Welcome",
            body: "Hello",
            message_id: &format!("<{key}@billing.test>"),
        };
        assert!(notifications::enqueue(&db.pool, &email, now).await.unwrap());
    }
    let mine = notifications::claim(&db, "a", 10, LEASE, now)
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);
    assert!(mine[0].id < mine[1].id, "oldest first");
    assert!(!notifications::mark_sent(&db, mine[0].id, "b", now)
        .await
        .unwrap());
    assert!(notifications::mark_sent(&db, mine[0].id, "a", now)
        .await
        .unwrap());
    assert!(!notifications::retry(&db, &mine[1], "b", "451", now)
        .await
        .unwrap());

    let mut row = mine[1].clone();
    let mut later = now;
    while !notifications::retry(&db, &row, "a", "451", later)
        .await
        .unwrap()
    {
        later += Duration::hours(3);
        row = notifications::claim(&db, "a", 10, LEASE, later)
            .await
            .unwrap()
            .remove(0);
    }
    assert_eq!(row.attempts + 1, 10);
    let settled: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT status, recipient, body FROM notifications ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        settled,
        [("sent".into(), None, None), ("failed".into(), None, None)]
    );
}

async fn a_render_job_is_postponed_retried_and_completed_by_its_holder(backend: Backend) {
    let Some((_dir, db)) = database(backend).await else {
        return;
    };
    let now = Utc::now();
    let change = outbox::enqueue(&db.pool, "cus_1", outbox::Action::Create, now)
        .await
        .unwrap();
    let job = outbox::claim(&db, "a", 10, LEASE, now)
        .await
        .unwrap()
        .remove(0);
    let postpone = |owner| {
        let jobs = std::slice::from_ref(&job);
        outbox::postpone(&db, jobs, owner, "remote down", Duration::seconds(5), now)
    };
    postpone("b").await.unwrap();
    assert!(
        outbox::claim(&db, "b", 10, LEASE, now)
            .await
            .unwrap()
            .is_empty(),
        "still a's"
    );
    postpone("a").await.unwrap();
    assert!(outbox::claim(&db, "b", 10, LEASE, at(now, 4000))
        .await
        .unwrap()
        .is_empty());
    let job = outbox::claim(&db, "b", 10, LEASE, at(now, 6000))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(job.attempts, 0, "a postponement is no attempt");

    assert!(!outbox::retry(&db.pool, &job, "a", "gold?", 2, now)
        .await
        .unwrap());
    assert!(!outbox::retry(&db.pool, &job, "b", "gold?", 2, now)
        .await
        .unwrap());
    let later = at(now, 10_000);
    let job = outbox::claim(&db, "a", 10, LEASE, later)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(job.attempts, 1);
    assert!(
        !outbox::complete(&db.pool, &job, "b", "c0ffee", "tree", later)
            .await
            .unwrap()
    );
    assert!(
        outbox::complete(&db.pool, &job, "a", "c0ffee", "tree", later)
            .await
            .unwrap()
    );
    let named = outbox::named_jobs(&db.pool, &[change]).await.unwrap();
    assert_eq!(named[0].status, "done");
    assert_eq!(named[0].commit_id.as_deref(), Some("c0ffee"));
    assert!(named[0].wrote("tree"));
    assert_eq!(outbox::pending_count(&db).await.unwrap(), 0);
}

async fn the_lifecycle_lease_is_held_by_one_process_at_a_time(backend: Backend) {
    let Some((_dir, db)) = database(backend).await else {
        return;
    };
    let now = Utc::now();
    let pool = &db.pool;
    assert!(lifecycle::take_lease(pool, "a", LEASE, now).await.unwrap());
    assert!(!lifecycle::take_lease(pool, "b", LEASE, now).await.unwrap());
    assert!(
        lifecycle::take_lease(pool, "a", LEASE, now).await.unwrap(),
        "renewed"
    );
    lifecycle::release_lease(pool, "b").await.unwrap();
    assert!(!lifecycle::take_lease(pool, "b", LEASE, now).await.unwrap());
    let expired = now + LEASE + Duration::seconds(1);
    assert!(lifecycle::take_lease(pool, "b", LEASE, expired)
        .await
        .unwrap());
    lifecycle::release_lease(pool, "b").await.unwrap();
    assert!(lifecycle::take_lease(pool, "a", LEASE, now).await.unwrap());
}
