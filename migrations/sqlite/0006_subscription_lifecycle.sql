-- The subscription's life after signup: Stripe's ids, the history of every transition of the
-- subscription state machine (src/billing/subscription.rs), the Stripe events processed (each
-- once), and why a render job was queued (its commit message says so).

-- Our customer id is primary; Stripe's customer id is stored beside it once known.
ALTER TABLE customers ADD COLUMN stripe_customer_id TEXT;
CREATE UNIQUE INDEX customers_stripe_customer ON customers (stripe_customer_id);

-- stripe_event_at: the `created` (Unix seconds) of the newest Stripe event applied; Stripe
-- does not deliver in order, and an older event must not move the subscription back.
ALTER TABLE subscriptions ADD COLUMN stripe_subscription_id TEXT;
ALTER TABLE subscriptions ADD COLUMN stripe_event_at BIGINT;

-- source: stripe | clock | admin; reference: the Stripe event id, when there is one.
CREATE TABLE subscription_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    event       TEXT NOT NULL,
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    from_plan   TEXT NOT NULL,
    to_plan     TEXT NOT NULL,
    source      TEXT NOT NULL,
    reference   TEXT,
    at          TEXT NOT NULL
);
CREATE INDEX subscription_history_customer ON subscription_history (customer_id, id);

-- One row per Stripe event id, inserted in the transaction of its effects: a redelivery finds
-- it and is acknowledged without doing anything. outcome: applied | ignored (and why).
CREATE TABLE stripe_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    created     BIGINT NOT NULL,
    customer_id TEXT,
    outcome     TEXT NOT NULL,
    received_at TEXT NOT NULL
);

ALTER TABLE render_jobs ADD COLUMN reason TEXT;
