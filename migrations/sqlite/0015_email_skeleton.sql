-- The Unicode TS #39 confusable skeleton of the normalised email (src/accounts/domain.rs):
-- addresses that look alike share it, and this unique index lets only one of them sign up,
-- however close together. NULL for deleted customers (so the look is free again) and, until
-- `billing serve` fills them in at start, for rows from before.
ALTER TABLE customers ADD COLUMN email_skeleton TEXT;
CREATE UNIQUE INDEX customers_email_skeleton ON customers (email_skeleton);
