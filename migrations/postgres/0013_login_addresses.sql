-- Client addresses (IPv4, or the IPv6 /64, as src/accounts/throttle.rs keys them) from which
-- each customer logged in, and when last: for 90 days they are exempt from the per-account
-- login limit, so an attacker spreading guesses cannot lock the owner out from where the owner
-- usually logs in (see src/accounts/account_limit.rs).
CREATE TABLE login_addresses (
    customer_id   TEXT NOT NULL,
    client_addr   TEXT NOT NULL,
    last_login_at TEXT NOT NULL,
    PRIMARY KEY (customer_id, client_addr)
);
