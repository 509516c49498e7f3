//! The placement row of the GitOps bench: what placing one signup costs (lock the region's
//! open clusters, sum what is placed on them, choose, record) once `tenants` tenants are placed
//! over `clusters` clusters, on SQLite, each placement its own committed transaction as in a
//! signup.

use std::time::{Duration, Instant};

use billing::db::accounts::{insert_customer, NewCustomer};
use billing::db::clusters::{insert, NewCluster};
use billing::db::Db;
use billing::placement;
use billing::render::footprint::Footprint;

/// Four regions; every cluster room for `tenants / clusters + 10` starter-sized tenants.
const REGIONS: [&str; 4] = ["eu", "us", "ap", "sa"];
const NEED: Footprint = Footprint {
    cpu_millis: 1_000,
    memory_bytes: 2 << 30,
};
const NOW: &str = "2026-01-01T00:00:00.000000Z";

async fn customer(db: &Db, id: &str) {
    let email = format!("{id}@bench.example");
    let c = NewCustomer {
        id,
        email: &email,
        email_normalized: &email,
        email_skeleton: &email,
        password_hash: "!bench",
        company_name: "Bench",
        full_name: None,
        now: NOW,
    };
    assert!(insert_customer(&db.pool, &c).await.unwrap());
}

async fn place(db: &Db, id: &str, i: usize) -> Duration {
    let started = Instant::now();
    let mut tx = db.pool.begin().await.unwrap();
    let region = REGIONS[i % REGIONS.len()];
    let placed = placement::place(&mut tx, db.backend, id, region, NEED, NOW)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(placed.is_some(), "the bench's clusters have room");
    started.elapsed()
}

/// The median cost of one placement after `tenants` are placed over `clusters` clusters.
pub fn per_signup(tenants: usize, clusters: usize) -> Duration {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
        let db = Db::connect(&url, Duration::from_secs(10)).await.unwrap();
        db.migrate().await.unwrap();
        let per_cluster = (tenants / clusters + 10) as i64;
        let labels = Default::default();
        for c in 0..clusters {
            let name = format!("c{c:03}");
            let cluster = NewCluster {
                name: &name,
                region: REGIONS[c % REGIONS.len()],
                cpu_millis: per_cluster * NEED.cpu_millis as i64,
                memory_bytes: per_cluster * NEED.memory_bytes as i64,
                labels: &labels,
            };
            assert!(insert(&db.pool, &cluster, NOW).await.unwrap());
        }
        for i in 0..tenants {
            let id = format!("t{i:011}");
            customer(&db, &id).await;
            place(&db, &id, i).await;
        }
        let mut times = Vec::new();
        for i in tenants..tenants + 101 {
            let id = format!("t{i:011}");
            customer(&db, &id).await;
            times.push(place(&db, &id, i).await);
        }
        times.sort();
        times[times.len() / 2]
    })
}
