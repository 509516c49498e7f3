-- Review mode: each change of a tenant committed on its own branch, waiting for a person to
-- merge it. One row per change; at most one open per tenant (a newer one supersedes it).
CREATE TABLE reviews (
    change_id       TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    branch          TEXT NOT NULL,
    -- The branch's commit, and where main took it in once merged.
    revision        TEXT NOT NULL,
    merged_revision TEXT,
    state           TEXT NOT NULL,
    -- The pull or merge request on the forge, once opened.
    forge_number    BIGINT,
    forge_url       TEXT,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX reviews_by_state ON reviews (state, customer_id);
