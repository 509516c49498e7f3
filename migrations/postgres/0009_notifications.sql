-- Customer emails: a transactional outbox. The change that causes an email inserts its row in
-- the same transaction; the sender in `billing serve` claims pending rows under a lease, sends
-- them with their stored Message-ID, then marks them sent and clears recipient and body.
CREATE TABLE notifications (
    id          BIGSERIAL PRIMARY KEY,
    customer_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    -- What makes one email of a kind distinct for a customer (a Stripe event id, a trial end
    -- date); '' for once-only kinds. The unique key keeps a reminder from being queued twice.
    dedupe_key  TEXT NOT NULL,
    recipient   TEXT,
    subject     TEXT NOT NULL,
    body        TEXT,
    message_id  TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT,
    lease_owner TEXT,
    lease_until TEXT,
    created_at  TEXT NOT NULL,
    sent_at     TEXT,
    UNIQUE (customer_id, kind, dedupe_key)
);
CREATE INDEX notifications_status ON notifications (status, id);
