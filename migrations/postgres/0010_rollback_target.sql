-- A rollback job names the revision whose version of the tenant it restores (NULL: the
-- parent of the tenant's last change, found when the job runs).
ALTER TABLE render_jobs ADD COLUMN target_revision TEXT;
