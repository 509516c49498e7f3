-- A deleted customer (DELETE /api/customers/:id): the row stays, scrubbed of personal data,
-- so billing records and the audit trail keep their reference; deleted_at marks it, and
-- sessions and requests for it are refused from then on (src/accounts/deletion.rs).
ALTER TABLE customers ADD COLUMN deleted_at TEXT;
