//! Placement at signup, through the running server: signups fill three clusters in two
//! regions in the documented order (most room first, ties by name), a full region leaves new
//! tenants `unplaced` and out of Git, `billing cluster add` and `uncordon` (other processes on
//! the same database) get them placed and committed, a cordoned cluster takes nobody, an
//! unknown region is a 400 naming the known ones, and 50 concurrent signups over two replicas
//! on PostgreSQL never overbook a cluster.

mod common;

use std::time::Duration;

use billing::db::clusters;
use common::{cli, Backend, TestServer, PASSWORD};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

async fn signup(s: &TestServer, i: &str, region: Option<&str>) -> (u16, Value) {
    let mut body = json!({
        "email": format!("{i}@placed.example"),
        "password": PASSWORD,
        "company_name": format!("Placed {i}"),
    });
    if let Some(region) = region {
        body["region"] = json!(region);
    }
    s.post_json("/api/customers/signup", &body).await
}

/// Signs up (asserting the 201): (customer id, its deployment status, its cluster).
async fn placed(s: &TestServer, i: &str, region: Option<&str>) -> (String, String, Option<String>) {
    let (code, body) = signup(s, i, region).await;
    assert_eq!(code, 201, "{body}");
    let d = &body["deployment"];
    (
        body["customer"]["customer_id"].as_str().unwrap().into(),
        d["status"].as_str().unwrap().into(),
        d["cluster"].as_str().map(String::from),
    )
}

fn billing(s: &TestServer, args: &[&str]) -> String {
    let (ok, out, err) = cli::run(s, args, &[]);
    assert!(ok, "billing {args:?}: {err}");
    out
}

fn add_cluster(s: &TestServer, name: &str, region: &str, cpu_millis: i64, memory_bytes: i64) {
    billing(
        s,
        &[
            "cluster",
            "add",
            name,
            "--region",
            region,
            "--cpu",
            &format!("{cpu_millis}m"),
            "--memory",
            &memory_bytes.to_string(),
        ],
    );
}

/// One starter tenant's footprint (cpu millis, memory bytes), from a tenant placed in a
/// region of its own: what the rendering of the current templates asks for.
async fn footprint(s: &TestServer) -> (i64, i64) {
    add_cluster(s, "probe", "probe", 1_000_000, 1 << 45);
    let (id, _, cluster) = placed(s, "probe", Some("probe")).await;
    assert_eq!(cluster.as_deref(), Some("probe"));
    let db = billing::db::Db::connect(&s.database_url(), Duration::from_secs(10))
        .await
        .unwrap();
    let p = clusters::placement(&db.pool, &id).await.unwrap().unwrap();
    assert!(p.cpu_millis > 0 && p.memory_bytes > 0, "{p:?}");
    (p.cpu_millis, p.memory_bytes)
}

fn status_of<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

async fn fill_wait_and_place(backend: Backend) {
    let env = [
        ("DEFAULT_REGION", "eu"),
        ("PLACEMENT_INTERVAL_SECONDS", "1"),
    ];
    let Some(s) = TestServer::start_with(backend, &env).await else {
        return;
    };
    // No catalogue: no placement and no region check, as before clusters existed.
    let (legacy, status, cluster) = placed(&s, "legacy", Some("anywhere")).await;
    assert_eq!((status.as_str(), cluster), ("pending", None));
    s.wait_for_status(&legacy, "committed", WAIT).await;

    let (cpu, memory) = footprint(&s).await;
    // By CPU, eu-a holds 2 tenants, eu-b 3, us-a 1; memory is plenty everywhere.
    add_cluster(&s, "eu-a", "eu", 2 * cpu, 64 * memory);
    add_cluster(&s, "eu-b", "eu", 3 * cpu, 64 * memory);
    add_cluster(&s, "us-a", "us", cpu, 64 * memory);

    let (code, body) = signup(&s, "mars", Some("mars")).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["field"], "region", "{body}");
    assert_eq!(body["code"], "unknown_region", "{body}");
    let message = body["message"].as_str().unwrap();
    for known in ["eu", "probe", "us"] {
        assert!(message.contains(known), "{message}");
    }

    // Without `region`, DEFAULT_REGION (eu): most room left first, ties by name.
    let mut eu = Vec::new();
    for i in 0..6 {
        eu.push(placed(&s, &format!("eu{i}"), None).await);
    }
    let clusters_chosen: Vec<Option<&str>> = eu.iter().map(|(_, _, c)| c.as_deref()).collect();
    assert_eq!(
        clusters_chosen,
        [
            Some("eu-b"),
            Some("eu-a"),
            Some("eu-b"),
            Some("eu-a"),
            Some("eu-b"),
            None
        ]
    );
    let waiting_eu = eu[5].0.clone();
    assert_eq!(eu[5].1, "unplaced");
    // A cordoned cluster takes nobody, even with room.
    billing(&s, &["cluster", "cordon", "us-a"]);
    let (waiting_us, status, cluster) = placed(&s, "us0", Some("us")).await;
    assert_eq!((status.as_str(), cluster), ("unplaced", None));

    for (id, ..) in &eu[..5] {
        let body = s.wait_for_status(id, "committed", WAIT).await;
        assert!(
            body["cluster"].as_str().unwrap().starts_with("eu-"),
            "{body}"
        );
    }
    // Held out of Git: nothing committed for the waiting tenants, and they say why.
    for id in [&waiting_eu, &waiting_us] {
        let body = s.deployment_status(id).await;
        assert_eq!(body["status"], "unplaced", "{body}");
        assert!(body["committed_revision"].is_null(), "{body}");
        assert!(body["cluster"].is_null(), "{body}");
    }
    let unplaced: Value = serde_json::from_str(&billing(
        &s,
        &["tenant", "list", "--status", "unplaced", "-o", "json"],
    ))
    .unwrap();
    let mut ids: Vec<&str> = unplaced
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![waiting_eu.as_str(), waiting_us.as_str()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(s.metric("billing_tenants_unplaced").await, 2);
    assert_eq!(
        s.metric("billing_tenants_by_deployment_state{state=\"unplaced\"}")
            .await,
        2
    );

    // Room appears from another process on the same database: the server places them.
    add_cluster(&s, "eu-c", "eu", 4 * cpu, 64 * memory);
    billing(&s, &["cluster", "uncordon", "us-a"]);
    let body = s.wait_for_status(&waiting_eu, "committed", WAIT).await;
    assert_eq!(body["cluster"], "eu-c", "{body}");
    assert!(body["committed_revision"].is_string(), "{body}");
    let body = s.wait_for_status(&waiting_us, "committed", WAIT).await;
    assert_eq!(body["cluster"], "us-a", "{body}");
    assert_eq!(s.metric("billing_tenants_unplaced").await, 0);

    // The operator's list says where each tenant runs.
    let list: Value =
        serde_json::from_str(&billing(&s, &["tenant", "list", "-o", "json"])).unwrap();
    assert_eq!(status_of(&list, &waiting_eu)["cluster"], "eu-c");
    assert!(status_of(&list, &legacy)["cluster"].is_null());
    let table = billing(&s, &["tenant", "list"]);
    assert!(table.to_lowercase().contains("cluster"), "{table}");
    // No cluster went over its capacity.
    let all: Value =
        serde_json::from_str(&billing(&s, &["cluster", "list", "-o", "json"])).unwrap();
    for c in all.as_array().unwrap() {
        assert!(
            c["allocated_cpu_millis"].as_i64() <= c["cpu_millis"].as_i64()
                && c["allocated_memory_bytes"].as_i64() <= c["memory_bytes"].as_i64(),
            "{c}"
        );
    }
}

for_each_backend!(fill_wait_and_place);

/// 50 signups at once over two replicas into room for 20 tenants: exactly 20 placed, the rest
/// unplaced, no cluster above its capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_signups_on_two_replicas_never_overbook_on_postgres() {
    let env = [("DEFAULT_REGION", "eu")];
    let Some(a) = TestServer::start_with(Backend::Postgres, &env).await else {
        return;
    };
    let b = a.start_replica(&env).await;
    let (cpu, memory) = footprint(&a).await;
    add_cluster(&a, "eu-a", "eu", 6 * cpu, 64 * memory); // 6 tenants
    add_cluster(&a, "eu-b", "eu", 10 * cpu, 64 * memory); // 10 tenants
    add_cluster(&a, "eu-c", "eu", 100 * cpu, 4 * memory); // 4 tenants (memory)
    let servers = std::sync::Arc::new([a, b]);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let servers = servers.clone();
        tasks.push(tokio::spawn(async move {
            placed(&servers[i % 2], &format!("c{i}"), None).await
        }));
    }
    let mut placed_count = 0;
    for task in tasks {
        let (_, status, cluster) = task.await.unwrap();
        assert_eq!(
            status == "unplaced",
            cluster.is_none(),
            "{status} {cluster:?}"
        );
        placed_count += cluster.is_some() as usize;
    }
    assert_eq!(placed_count, 20);
    let all: Value =
        serde_json::from_str(&billing(&servers[1], &["cluster", "list", "-o", "json"])).unwrap();
    for c in all.as_array().unwrap() {
        assert!(
            c["allocated_cpu_millis"].as_i64() <= c["cpu_millis"].as_i64()
                && c["allocated_memory_bytes"].as_i64() <= c["memory_bytes"].as_i64(),
            "{c}"
        );
    }
    let tenants: i64 = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tenants"].as_i64().unwrap())
        .sum();
    assert_eq!(tenants, 21, "20 and the probe: {all}");
    assert_eq!(servers[0].metric("billing_tenants_unplaced").await, 30);
}
