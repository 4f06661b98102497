-- The policy whose rules every user was last re-planned under (one row): a node that comes to
-- run another policy (a reload, or a start with an edited file) re-plans everyone once, as one
-- change for the blast-radius guard; the other nodes, following the same policy, find it
-- applied already.
CREATE TABLE engine_policy_applied (
    id         INTEGER PRIMARY KEY,
    sha256     TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    node       TEXT NOT NULL
);
