-- The cluster catalogue (#27): where tenants can run. Capacities are what the cluster offers
-- tenant pods, as whole millicores and bytes. `state`: open | cordoned (no new tenants) |
-- draining (tenants being moved out); see src/db/clusters.rs.
CREATE TABLE clusters (
    name TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    cpu_millis BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'open',
    created_at TEXT NOT NULL
);
CREATE INDEX clusters_region ON clusters (region, state);

-- One row per tenant once a catalogue exists: its footprint (what its rendered stack
-- requests), the region it asked for, and its cluster (NULL while no cluster has room).
CREATE TABLE placements (
    customer_id TEXT PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,
    region TEXT NOT NULL,
    cluster TEXT REFERENCES clusters (name),
    cpu_millis BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX placements_cluster ON placements (cluster);
