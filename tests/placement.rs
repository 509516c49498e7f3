//! Placement against a real database: tenants fill clusters in the documented order, a full
//! region leaves them unplaced, cordoned clusters take nobody, and concurrent placements from
//! two processes' pools (two replicas) never overbook a cluster on PostgreSQL.

mod common;

use billing::db::clusters::{self, NewCluster};
use billing::db::{Backend as DbBackend, Db};
use billing::placement;
use billing::render::footprint::Footprint;
use common::{Backend, TestServer};

const TENANT: Footprint = Footprint {
    cpu_millis: 500,
    memory_bytes: 1 << 30,
};

async fn connect(server: &TestServer) -> Db {
    Db::connect(&server.database_url(), std::time::Duration::from_secs(10))
        .await
        .unwrap()
}

async fn add(db: &Db, name: &str, region: &str, cpu_millis: i64, memory_gib: i64) {
    let labels = Default::default();
    let cluster = NewCluster {
        name,
        region,
        cpu_millis,
        memory_bytes: memory_gib << 30,
        labels: &labels,
    };
    assert!(
        clusters::insert(&db.pool, &cluster, "2026-01-01T00:00:00.000000Z")
            .await
            .unwrap()
    );
}

async fn place(db: &Db, customer: &str, region: &str) -> Option<String> {
    let mut tx = db.pool.begin().await.unwrap();
    let placed = placement::place(
        &mut tx,
        db.backend,
        customer,
        region,
        TENANT,
        "2026-01-01T00:00:00.000000Z",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    placed
}

async fn signups(server: &TestServer, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            server
                .signed_up(&format!("p{i}@place.example"), "Placed")
                .await,
        );
    }
    ids
}

async fn fills_in_order(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let db = connect(&server).await;
    // Signed up before the catalogue exists, so the server places nobody: this test places.
    let ids = signups(&server, 7).await;
    // eu-a holds 2 tenants, eu-b 3 (by CPU); us-a 1.
    add(&db, "eu-a", "eu", 1000, 8).await;
    add(&db, "eu-b", "eu", 1500, 8).await;
    add(&db, "us-a", "us", 500, 8).await;
    let mut got = Vec::new();
    for id in &ids[..6] {
        got.push(place(&db, id, "eu").await);
    }
    let expected = ["eu-b", "eu-a", "eu-b", "eu-a", "eu-b"];
    let placed: Vec<&str> = got.iter().flatten().map(String::as_str).collect();
    assert_eq!(placed, expected, "{got:?}");
    assert_eq!(got[5], None, "a full region leaves the tenant unplaced");
    let waiting = clusters::unplaced(&db.pool, 10).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].customer_id, ids[5]);

    // A cordoned cluster takes nobody, even with room.
    assert!(
        clusters::set_state(&db.pool, "us-a", clusters::ClusterState::Cordoned)
            .await
            .unwrap()
    );
    assert_eq!(place(&db, &ids[6], "us").await, None);
    // Room appears: the waiting tenant now fits.
    add(&db, "eu-c", "eu", 4000, 8).await;
    assert_eq!(place(&db, &ids[5], "eu").await.as_deref(), Some("eu-c"));
    assert!(clusters::unplaced(&db.pool, 10)
        .await
        .unwrap()
        .iter()
        .all(|p| p.customer_id != ids[5]));
    // A cluster with tenants cannot be removed.
    assert!(!clusters::remove_if_empty(&db.pool, "eu-a").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_fill_clusters_in_order_on_sqlite() {
    fills_in_order(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_fill_clusters_in_order_on_postgres() {
    fills_in_order(Backend::Postgres).await;
}

/// 50 placements at once from two pools (two replicas) into room for 20: exactly 20 placed,
/// no cluster above its capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_placements_never_overbook_on_postgres() {
    let Some(server) = TestServer::start(Backend::Postgres).await else {
        return;
    };
    let replicas = [connect(&server).await, connect(&server).await];
    assert_eq!(replicas[0].backend, DbBackend::Postgres);
    // Signed up before the catalogue exists, so the server places nobody: this test places.
    let ids = signups(&server, 50).await;
    add(&replicas[0], "eu-a", "eu", 3000, 64).await; // 6 tenants
    add(&replicas[0], "eu-b", "eu", 5000, 64).await; // 10 tenants
    add(&replicas[0], "eu-c", "eu", 64_000, 4).await; // 4 tenants (memory)
    let mut tasks = Vec::new();
    for (i, id) in ids.into_iter().enumerate() {
        let db = replicas[i % 2].clone();
        tasks.push(tokio::spawn(async move { place(&db, &id, "eu").await }));
    }
    let mut placed = 0;
    for task in tasks {
        placed += task.await.unwrap().is_some() as usize;
    }
    assert_eq!(placed, 20);
    for cluster in clusters::list(&replicas[0].pool).await.unwrap() {
        assert!(
            cluster.allocated_cpu_millis <= cluster.cpu_millis
                && cluster.allocated_memory_bytes <= cluster.memory_bytes,
            "{cluster:?}"
        );
    }
    assert_eq!(
        clusters::unplaced(&replicas[1].pool, 100)
            .await
            .unwrap()
            .len(),
        30
    );
}

/// A plan change whose bigger footprint the tenant's cluster has no room for: the tenant stays
/// there, its booking is not raised past the cluster's capacity, and the warning says so (on
/// the placement, for the status, and in the audit trail). With room, the new footprint is
/// booked and the warning goes.
async fn plan_change_beyond_room(backend: Backend) {
    use billing::placement::{resize, PlacementHandles};
    use billing::render::{demo_sealed_values, RenderSettings, Renderer, TenantSpec};
    use std::sync::Arc;

    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let db = connect(&server).await;
    let id = signups(&server, 1).await.remove(0);
    for (name, value) in &demo_sealed_values().encrypted {
        billing::db::secrets::upsert(&db.pool, &id, name, value, "2026-01-01T00:00:00.000000Z")
            .await
            .unwrap();
    }
    let handles = PlacementHandles::new(
        db.clone(),
        Arc::new(Renderer::builtin()),
        Arc::new(RenderSettings::default()),
        Arc::new(billing::plans::Catalogue::builtin().unwrap()),
        None,
        Arc::new(tokio::sync::Notify::new()),
        std::time::Duration::from_secs(1),
    );
    let spec = |plan: &str| TenantSpec {
        id: id.clone(),
        plan: plan.into(),
        subscription_status: "active".into(),
        company_name: "Placed".into(),
        email: "p0@place.example".into(),
        full_name: None,
        restore_from: None,
    };
    let sealed = demo_sealed_values();
    let starter = handles.footprint(&spec("starter"), &sealed).await.unwrap();
    let enterprise = handles
        .footprint(&spec("enterprise"), &sealed)
        .await
        .unwrap();
    assert!(
        enterprise.cpu_millis > starter.cpu_millis,
        "{enterprise:?} {starter:?}"
    );
    // Room for the starter stack and a little more, not for the enterprise one.
    add(&db, "tight", "eu", starter.cpu_millis as i64 + 1, 64).await;
    let mut tx = db.pool.begin().await.unwrap();
    let now = "2026-01-02T00:00:00.000000Z";
    placement::place(&mut tx, db.backend, &id, "eu", starter, now)
        .await
        .unwrap();
    let warning = resize::refit(&handles, &mut tx, &spec("enterprise"), now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let warning = warning.expect("no room: a warning");
    assert!(
        warning.contains("tight") && warning.contains("enterprise"),
        "{warning}"
    );
    let p = clusters::placement(&db.pool, &id).await.unwrap().unwrap();
    assert_eq!(p.cluster.as_deref(), Some("tight"), "it stays where it is");
    assert_eq!(p.cpu_millis, starter.cpu_millis as i64, "not overbooked");
    let cluster = clusters::get(&db.pool, "tight").await.unwrap().unwrap();
    assert!(
        cluster.allocated_cpu_millis <= cluster.cpu_millis,
        "{cluster:?}"
    );
    assert_eq!(
        billing::db::placements::warning(&db.pool, &id)
            .await
            .unwrap(),
        Some(warning)
    );
    let pool = server.db().await;
    assert_eq!(
        common::count(
            &pool,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'placement.no_room' AND customer_id = $1",
            &id
        )
        .await,
        1
    );
    // Back to starter: it fits, is booked, and the warning goes.
    let mut tx = db.pool.begin().await.unwrap();
    let warning = resize::refit(&handles, &mut tx, &spec("starter"), now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(warning, None);
    assert_eq!(
        billing::db::placements::warning(&db.pool, &id)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_change_beyond_the_room_keeps_the_tenant_and_says_so_on_sqlite() {
    plan_change_beyond_room(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_change_beyond_the_room_keeps_the_tenant_and_says_so_on_postgres() {
    plan_change_beyond_room(Backend::Postgres).await;
}
