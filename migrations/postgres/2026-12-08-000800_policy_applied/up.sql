-- The policies every user was re-planned under, in order (the last row is the one in force):
-- once every live node runs a policy other than the last, one of them re-plans everyone, as
-- one change for the blast-radius guard. A node that starts with a policy applied before and
-- since replaced (an old file) re-plans nobody.
CREATE TABLE engine_policy_applied (
    id         BIGSERIAL PRIMARY KEY,
    sha256     TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    node       TEXT NOT NULL
);
CREATE INDEX engine_policy_applied_sha_idx ON engine_policy_applied (sha256);
