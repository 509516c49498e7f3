-- When the tenant last became ready (the cluster reported its commit synced and healthy): the
-- old admin dashboard's `deployedAt`. Tenants ready before this column existed take their last
-- update as the best estimate.
ALTER TABLE deployments ADD COLUMN ready_at TEXT;
UPDATE deployments SET ready_at = updated_at WHERE status = 'ready';
