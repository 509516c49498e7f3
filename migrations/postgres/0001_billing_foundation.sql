-- Billing foundation: customers, subscriptions, license history, deployments, audit log,
-- login throttling. Timestamps are UTC RFC 3339 text with millisecond precision
-- (fixed width, so they sort and compare as text on both backends).

CREATE TABLE customers (
    id               TEXT PRIMARY KEY,
    email            TEXT NOT NULL,
    email_normalized TEXT NOT NULL UNIQUE,
    password_hash    TEXT NOT NULL,
    company_name     TEXT NOT NULL,
    full_name        TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);

CREATE TABLE subscriptions (
    id                     BIGSERIAL PRIMARY KEY,
    customer_id            TEXT NOT NULL UNIQUE REFERENCES customers(id) ON DELETE CASCADE,
    plan                   TEXT NOT NULL,
    status                 TEXT NOT NULL,
    trial_ends_at          TEXT,
    current_period_ends_at TEXT,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
);

CREATE TABLE license_history (
    id           BIGSERIAL PRIMARY KEY,
    customer_id  TEXT NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    action       TEXT NOT NULL,
    plan         TEXT NOT NULL,
    kid          TEXT NOT NULL,
    jti          TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL,
    issued_at    TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX license_history_customer ON license_history (customer_id, issued_at);

CREATE TABLE deployments (
    customer_id        TEXT PRIMARY KEY REFERENCES customers(id) ON DELETE CASCADE,
    status             TEXT NOT NULL,
    instance_url       TEXT NOT NULL,
    committed_revision TEXT,
    error              TEXT,
    updated_at         TEXT NOT NULL
);

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TEXT NOT NULL,
    action      TEXT NOT NULL,
    customer_id TEXT,
    actor       TEXT NOT NULL,
    client_ip   TEXT,
    user_agent  TEXT,
    details     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_customer ON audit_log (customer_id, at);

CREATE TABLE login_failures (
    id               BIGSERIAL PRIMARY KEY,
    email_normalized TEXT NOT NULL,
    at               TEXT NOT NULL
);
CREATE INDEX login_failures_email ON login_failures (email_normalized, at);
