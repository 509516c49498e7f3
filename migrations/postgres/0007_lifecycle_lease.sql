-- Leases of the periodic schedulers: with several replicas, the process whose UPDATE moves
-- `lease_until` from the past into the future runs the pass; the others skip it. Times are
-- RFC 3339 UTC text like every other timestamp, so they compare as strings.
CREATE TABLE scheduler_leases (
    name        TEXT PRIMARY KEY,
    owner       TEXT,
    lease_until TEXT NOT NULL
);
INSERT INTO scheduler_leases (name, owner, lease_until)
VALUES ('lifecycle', NULL, '1970-01-01T00:00:00.000Z');

-- The scheduler's searches: trials by their end, past-due subscriptions by status.
CREATE INDEX subscriptions_status_trial ON subscriptions (status, trial_ends_at);
