//! Placing tenants on clusters: an open cluster of the tenant's region with room for its
//! footprint, the one with the most room left afterwards, ties by name. The choice is made
//! inside the caller's transaction, with the region's clusters locked, so concurrent signups on
//! several replicas never overbook a cluster.

mod handles;
pub mod resize;
pub mod waiting;

pub use handles::{PlacementError, PlacementHandles};

use std::cmp::Ordering;

use crate::db::clusters::{self, Cluster, Placement};
use crate::db::{Backend, Tx};
use crate::render::footprint::Footprint;

/// The free share of a cluster left after placing `need`, as the smaller of CPU's and memory's
/// (the scarcer resource decides), as an exact fraction (numerator, denominator).
fn room_after(cluster: &Cluster, need: Footprint) -> Option<(i128, i128)> {
    let cpu_left = cluster.free_cpu_millis() as i128 - need.cpu_millis as i128;
    let memory_left = cluster.free_memory_bytes() as i128 - need.memory_bytes as i128;
    if cpu_left < 0 || memory_left < 0 || cluster.cpu_millis <= 0 || cluster.memory_bytes <= 0 {
        return None;
    }
    let cpu = (cpu_left, cluster.cpu_millis as i128);
    let memory = (memory_left, cluster.memory_bytes as i128);
    Some(if compare(cpu, memory) == Ordering::Less {
        cpu
    } else {
        memory
    })
}

fn compare((a, b): (i128, i128), (c, d): (i128, i128)) -> Ordering {
    (a * d).cmp(&(c * b))
}

/// The cluster `need` goes to among `open` ones (all of one region), or None if none has room.
pub fn choose(open: &[Cluster], need: Footprint) -> Option<&Cluster> {
    open.iter()
        .filter_map(|c| room_after(c, need).map(|room| (c, room)))
        .max_by(|(a, room_a), (b, room_b)| {
            // Most room first; on a tie the name that sorts first wins (so max of reversed).
            compare(*room_a, *room_b).then_with(|| b.name.cmp(&a.name))
        })
        .map(|(c, _)| c)
}

/// Places (or re-places) a tenant in `tx`: records its footprint and region, and the chosen
/// cluster, or none when no open cluster of the region has room (the tenant waits, unplaced).
pub async fn place(
    tx: &mut Tx<'_>,
    backend: Backend,
    customer_id: &str,
    region: &str,
    need: Footprint,
    now: &str,
) -> Result<Option<String>, sqlx::Error> {
    let open = clusters::lock_open_in_region(tx, backend, region).await?;
    let cluster = choose(&open, need).map(|c| c.name.clone());
    let placement = Placement {
        customer_id: customer_id.to_string(),
        region: region.to_string(),
        cluster: cluster.clone(),
        cpu_millis: need.cpu_millis as i64,
        memory_bytes: need.memory_bytes as i64,
    };
    clusters::upsert_placement(tx, &placement, now).await?;
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::clusters::ClusterState;

    fn cluster(name: &str, cpu: i64, memory: i64, used_cpu: i64, used_memory: i64) -> Cluster {
        Cluster {
            name: name.into(),
            region: "eu".into(),
            state: ClusterState::Open,
            cpu_millis: cpu,
            memory_bytes: memory,
            labels: Default::default(),
            allocated_cpu_millis: used_cpu,
            allocated_memory_bytes: used_memory,
            tenants: 0,
            created_at: String::new(),
        }
    }

    const NEED: Footprint = Footprint {
        cpu_millis: 500,
        memory_bytes: 1000,
    };

    #[test]
    fn the_cluster_with_most_room_left_wins_with_the_scarcer_resource_deciding() {
        let open = [
            // Lots of CPU left, but memory nearly gone: its room is memory's.
            cluster("a", 10_000, 10_000, 0, 8_000),
            cluster("b", 4_000, 10_000, 2_000, 2_000),
        ];
        assert_eq!(choose(&open, NEED).unwrap().name, "b");
    }

    #[test]
    fn ties_go_to_the_first_name_and_full_clusters_are_skipped() {
        let open = [
            cluster("z", 2_000, 4_000, 0, 0),
            cluster("m", 2_000, 4_000, 0, 0),
            cluster("full", 100_000, 100_000, 99_800, 0),
        ];
        assert_eq!(choose(&open, NEED).unwrap().name, "m");
        assert!(choose(&open[2..], NEED).is_none());
        // Exactly the room needed still fits.
        assert!(choose(&[cluster("x", 500, 1000, 0, 0)], NEED).is_some());
    }
}
