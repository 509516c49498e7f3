-- Sync watcher: what the cluster (Flux, Argo CD) last reported about each tenant, and the
-- history of every accepted report and of billing's own transitions.

-- The newest revision a Ready/Healthy report named (reports on revisions that do not contain
-- it are out of order and ignored), the reporter's health word and message, and when the
-- current commit was made (the stall clock).
ALTER TABLE deployments ADD COLUMN applied_revision TEXT;
ALTER TABLE deployments ADD COLUMN health TEXT;
ALTER TABLE deployments ADD COLUMN message TEXT;
ALTER TABLE deployments ADD COLUMN committed_at TEXT;
-- Tenants committed before the watcher existed start their stall clock at their last update.
UPDATE deployments SET committed_at = updated_at WHERE status = 'committed';
CREATE INDEX deployments_stall ON deployments (status, committed_at);

-- source: flux-event | argocd-event | kube-poller | billing; state: what was reported
-- (ready, failed, progressing) or billing's transition (committed, deleted, failed, stalled).
CREATE TABLE deployment_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    revision    TEXT,
    source      TEXT NOT NULL,
    state       TEXT NOT NULL,
    message     TEXT,
    at          TEXT NOT NULL
);
CREATE INDEX deployment_history_customer ON deployment_history (customer_id, id);
