-- Template rollouts: a change of templates, plan file or render settings reaching tenants in
-- waves, each wave one commit, the next only once the cluster reports the last one healthy.

-- One row per rollout. `templates` is the digest of what it renders (templates, plans, render
-- settings): a server with other templates leaves it alone. The lease is the driving
-- worker's (the one lease queue's `Lease`), so replicas never drive one rollout at once.
CREATE TABLE rollouts (
    id            TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    templates     TEXT NOT NULL,
    origin        TEXT NOT NULL,
    waves         TEXT NOT NULL,
    ordering      TEXT NOT NULL,
    auto_rollback BIGINT NOT NULL,
    current_wave  BIGINT NOT NULL,
    wave_count    BIGINT NOT NULL,
    -- Why it is paused, or how it ended.
    reason        TEXT,
    -- Set by `abort --rollback`: the worker reverts every committed wave.
    rollback_requested BIGINT NOT NULL DEFAULT 0,
    lease_owner   TEXT,
    lease_until   TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX rollouts_by_status ON rollouts (status, created_at);

-- One row per wave: its commit (`revision`, found again after a crash by its trailers in the
-- commits after `base_revision`) and, once reverted, the commit that did it.
CREATE TABLE rollout_waves (
    rollout_id        TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    wave              BIGINT NOT NULL,
    size              BIGINT NOT NULL,
    status            TEXT NOT NULL,
    base_revision     TEXT,
    revision          TEXT,
    rollback_revision TEXT,
    committed_at      TEXT,
    finished_at       TEXT,
    PRIMARY KEY (rollout_id, wave)
);

-- The tenants a rollout changes (and those it skipped, with why), each in one wave.
CREATE TABLE rollout_tenants (
    rollout_id  TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    customer_id TEXT NOT NULL,
    wave        BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    status      TEXT NOT NULL,
    -- The render job naming this tenant's part of the wave's commit (`Change-Id:`).
    change_id   TEXT,
    note        TEXT,
    PRIMARY KEY (rollout_id, customer_id)
);
CREATE INDEX rollout_tenants_by_wave ON rollout_tenants (rollout_id, wave, position);

-- What ROLLOUT_POLICY did about each digest of templates it met: once per digest, whichever
-- replica inserts the row. `behind` counts the tenants whose files differed then.
CREATE TABLE rollout_checks (
    templates  TEXT PRIMARY KEY,
    policy     TEXT NOT NULL,
    behind     BIGINT NOT NULL,
    rollout_id TEXT,
    checked_at TEXT NOT NULL
);
