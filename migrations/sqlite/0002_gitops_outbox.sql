-- GitOps: the transactional outbox of render jobs, and each tenant's sealed secrets.

-- One row per change to a tenant's stack. The signup transaction inserts the first one; a
-- worker claims pending rows under a lease, commits them to Git, then marks them done.
CREATE TABLE render_jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id   TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    action      TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    lease_owner TEXT,
    lease_until TEXT,
    commit_id   TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX render_jobs_status ON render_jobs (status, id);
CREATE INDEX render_jobs_customer ON render_jobs (customer_id, id);

-- Sealed (encrypted for the cluster's sealed-secrets controller) values only: the plaintext is
-- sealed once, when generated, and never stored. Re-renders reuse these, so no spurious diffs.
CREATE TABLE tenant_secrets (
    customer_id  TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    sealed_value TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (customer_id, name)
);
