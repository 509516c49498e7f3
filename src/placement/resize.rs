//! A placed tenant's footprint after a subscription change (a plan change, a suspension):
//! re-computed from the rendering and booked on its cluster when the cluster has room. When it
//! has not, the tenant stays where it is (moving tenants is not built yet), its booking is not
//! raised past the cluster's capacity, and the warning says so: recorded on the placement (the
//! status shows it) and in the audit trail.

use serde_json::json;

use super::PlacementHandles;
use crate::db::{self, audit, clusters, placements, Tx};
use crate::quantity::{Cpu, Memory};
use crate::render::{SealedValues, TenantSpec, SECRET_NAME};

/// Re-books `spec`'s tenant in `tx`; returns the warning when its cluster lacks room.
pub async fn refit(
    handles: &PlacementHandles,
    tx: &mut Tx<'_>,
    spec: &TenantSpec,
    now: &str,
) -> anyhow::Result<Option<String>> {
    let id = spec.id.as_str();
    let Some(placed) = clusters::placement(&mut **tx, id).await? else {
        return Ok(None);
    };
    let sealed = SealedValues {
        secret_name: SECRET_NAME.to_string(),
        encrypted: db::secrets::all(&mut **tx, id).await?,
    };
    let need = handles.footprint(spec, &sealed).await?;
    let (cpu, memory) = (need.cpu_millis as i64, need.memory_bytes as i64);
    let Some(name) = placed.cluster.as_deref() else {
        // Still waiting: it waits with what it needs now.
        placements::set_footprint(tx, id, cpu, memory, None).await?;
        return Ok(None);
    };
    let Some(cluster) = clusters::lock_one(tx, handles.db.backend, name).await? else {
        return Ok(None);
    };
    // The room it has is what is free plus what it holds already.
    let fits = cluster.free_cpu_millis() + placed.cpu_millis >= cpu
        && cluster.free_memory_bytes() + placed.memory_bytes >= memory;
    if fits {
        placements::set_footprint(tx, id, cpu, memory, None).await?;
        return Ok(None);
    }
    let warning = format!(
        "the {} plan's stack asks for {} CPU and {} memory, more than cluster {name} has room \
         for: the tenant stays on {name} with its earlier booking ({} CPU, {}) until it is \
         moved (tenant move is not available yet)",
        spec.plan,
        Cpu(need.cpu_millis),
        Memory(need.memory_bytes),
        Cpu(placed.cpu_millis.max(0) as u64),
        Memory(placed.memory_bytes.max(0) as u64),
    );
    placements::set_footprint(
        tx,
        id,
        placed.cpu_millis,
        placed.memory_bytes,
        Some(&warning),
    )
    .await?;
    let entry = audit::AuditEntry {
        action: "placement.no_room",
        customer_id: Some(id.to_string()),
        actor: "placement".into(),
        details: json!({
            "cluster": name,
            "plan": spec.plan,
            "cpu_millis": cpu,
            "memory_bytes": memory,
            "booked_cpu_millis": placed.cpu_millis,
            "booked_memory_bytes": placed.memory_bytes,
            "free_cpu_millis": cluster.free_cpu_millis(),
            "free_memory_bytes": cluster.free_memory_bytes(),
        }),
        ..Default::default()
    };
    audit::record(&mut **tx, now, &entry).await?;
    tracing::warn!(customer_id = id, cluster = name, "{warning}");
    Ok(Some(warning))
}
