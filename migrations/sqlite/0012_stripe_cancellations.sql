-- Stripe subscriptions to cancel because their customer was deleted: a transactional outbox.
-- The deletion inserts the row; billing serve cancels it at Stripe (DELETE /v1/subscriptions)
-- and marks it done, so a crash neither loses the cancellation nor leaves the card charged.
CREATE TABLE stripe_cancellations (
    subscription_id TEXT PRIMARY KEY,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    lease_owner     TEXT,
    lease_until     TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
