-- What a job wrote for its tenant, and what a review proposed, as Git names it: the ids of the
-- tenant's directory tree and of its Kustomization blob. Drift and merges are told by content,
-- not by a Change-Id line anyone can copy. NULL for jobs from before, and for jobs in flight.
ALTER TABLE render_jobs ADD COLUMN tree_fingerprint TEXT;
ALTER TABLE reviews ADD COLUMN tree_fingerprint TEXT;
