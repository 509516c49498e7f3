-- Review mode's rollouts: each wave proposed on its own branch as one pull request, merged by
-- a person before the wave waits for the cluster. One row per proposal of a wave (a wave
-- whose pull request was closed unmerged is proposed again after `rollout resume`: `attempt`).
CREATE TABLE rollout_reviews (
    rollout_id   TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    wave         BIGINT NOT NULL,
    attempt      BIGINT NOT NULL,
    branch       TEXT NOT NULL,
    -- The branch's commit, made from main's tip at `base_revision`.
    revision     TEXT NOT NULL,
    base_revision TEXT,
    -- open -> merged | closed (unmerged, by a person) | closing (the rollout was aborted: the
    -- worker closes the pull request) -> withdrawn.
    state        TEXT NOT NULL,
    forge_number BIGINT,
    forge_url    TEXT,
    title        TEXT NOT NULL,
    body         TEXT NOT NULL,
    -- The commit on main that took it in (a merge commit, a squash, a rebase).
    merged_revision TEXT,
    -- When the forge was last asked about it (asked every few seconds, not on every tick).
    checked_at   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (rollout_id, wave, attempt)
);
CREATE INDEX rollout_reviews_by_state ON rollout_reviews (state);
