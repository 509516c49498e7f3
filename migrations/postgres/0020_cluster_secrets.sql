-- Each cluster's own event credential (#27): the secret its Flux Provider signs with and its
-- Argo CD webhook sends as a bearer token, AES-256-GCM-encrypted under the cluster-secrets key
-- (src/event_secret.rs; HMAC verification needs the secret itself). NULL for clusters added
-- before this migration: their per-cluster endpoints refuse until `cluster rotate-secret`.
ALTER TABLE clusters ADD COLUMN event_secret TEXT;
ALTER TABLE clusters ADD COLUMN event_secret_set_at TEXT;

-- Which cluster reported a history row (NULL: the single-cluster endpoints, billing itself,
-- or a poller without a configured context).
ALTER TABLE deployment_history ADD COLUMN cluster TEXT;
