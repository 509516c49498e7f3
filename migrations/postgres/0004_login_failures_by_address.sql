-- Failed logins are counted per (email, client address) and per client address, so that
-- knowing a customer's email is not enough to lock them out (see src/accounts/throttle.rs).
-- Rows from before this migration carry no address and age out of the 15-minute window.
ALTER TABLE login_failures ADD COLUMN client_addr TEXT NOT NULL DEFAULT '';
CREATE INDEX login_failures_addr ON login_failures (client_addr, at);
CREATE INDEX login_failures_at ON login_failures (at);
