//! The placement worker: tenants that signed up while their region had no room wait
//! `unplaced`, their changes held out of Git; as soon as room appears (`cluster add`,
//! `uncordon`, a tenant deleted, in this process or in another one sharing the database) they
//! are placed, oldest first, and their held changes go to the deploy worker.

use chrono::Utc;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{choose, PlacementHandles};
use crate::db::{self, audit, clusters, deployments, outbox, placements};
use crate::render::footprint::Footprint;
use crate::status::Event;

/// How many waiting tenants one pass looks at.
const PASS: i64 = 500;

type Signature = (i64, i64, i64, i64, i64, i64);

/// Places the waiting tenants that fit now, oldest first (a big one that does not fit does not
/// stop a smaller one behind it); returns how many were placed.
pub async fn place_waiting(handles: &PlacementHandles) -> anyhow::Result<usize> {
    let db = &handles.db;
    let mut placed = 0;
    for waiting in clusters::unplaced(&db.pool, PASS).await? {
        let need = Footprint {
            cpu_millis: waiting.cpu_millis.max(0) as u64,
            memory_bytes: waiting.memory_bytes.max(0) as u64,
        };
        let now = db::ts(Utc::now());
        let mut tx = db.pool.begin().await?;
        let open = clusters::lock_open_in_region(&mut tx, db.backend, &waiting.region).await?;
        let Some(cluster) = choose(&open, need).map(|c| c.name.clone()) else {
            tx.rollback().await?;
            continue;
        };
        let id = waiting.customer_id.as_str();
        // Another replica may have placed it while this one waited for the lock.
        if !placements::set_cluster(&mut tx, id, &cluster, &now).await? {
            tx.rollback().await?;
            continue;
        }
        deployments::apply_event(&mut tx, id, Event::Placed, None, None, &now).await?;
        outbox::release_held_of(&mut *tx, id).await?;
        let entry = audit::AuditEntry {
            action: "tenant.placed",
            customer_id: Some(id.to_string()),
            actor: "placement".into(),
            details: json!({
                "cluster": cluster,
                "region": waiting.region,
                "cpu_millis": waiting.cpu_millis,
                "memory_bytes": waiting.memory_bytes,
            }),
            ..Default::default()
        };
        audit::record(&mut *tx, &now, &entry).await?;
        tx.commit().await?;
        tracing::info!(customer_id = id, %cluster, "unplaced tenant placed");
        placed += 1;
    }
    Ok(placed)
}

/// One pass: release held jobs whose tenant is placed, and, when the room on offer changed
/// since the last fruitless pass, try to place the waiting tenants.
async fn pass(handles: &PlacementHandles, last: &mut Option<Signature>) -> anyhow::Result<()> {
    let released = outbox::release_placed(&handles.db.pool).await?;
    let signature = clusters::room_signature(&handles.db.pool).await?;
    let mut placed = 0;
    if last.as_ref() != Some(&signature) {
        placed = place_waiting(handles).await?;
        // After a placement the room changed again: look once more on the next pass.
        *last = (placed == 0).then_some(signature);
    }
    if released > 0 || placed > 0 {
        handles.worker_wake.notify_one();
    }
    Ok(())
}

/// The supervised worker: a pass every `PLACEMENT_INTERVAL_SECONDS`, or at once when woken.
pub async fn run(handles: PlacementHandles, stop: CancellationToken) {
    let mut last = None;
    while !stop.is_cancelled() {
        if let Err(err) = pass(&handles, &mut last).await {
            tracing::warn!(error = %format!("{err:#}"), "placement worker");
        }
        let woken = tokio::time::timeout(handles.interval, handles.wake.notified());
        if stop.run_until_cancelled(woken).await.is_none() {
            return;
        }
    }
}
