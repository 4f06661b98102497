-- Time-bound emergency grants (issue #15, docs/grants.md): an entitlement outside the user's
-- profiles, kept in the user's desired state while `state = 'active'` and `expires` is later
-- than now; a durable `grant_expiry` timer at `expires` re-plans the user so the outbox removes
-- it. `entitlement` is the entitlement as JSON; `approval_id` the engine_approvals row (kind
-- `grant`) when the entitlement's level needs one. Times are RFC 3339 text, as elsewhere.
CREATE TABLE engine_grants (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL,
    connector    TEXT NOT NULL,
    entitlement  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created      TEXT NOT NULL,
    expires      TEXT NOT NULL,
    state        TEXT NOT NULL,
    approval_id  TEXT,
    decided_by   TEXT,
    activated    TEXT,
    ended        TEXT,
    revoked_by   TEXT,
    revoked_at   TEXT,
    end_reason   TEXT
);
CREATE INDEX engine_grants_user_idx ON engine_grants (user_id);
CREATE INDEX engine_grants_state_idx ON engine_grants (state, expires);
CREATE INDEX engine_grants_created_idx ON engine_grants (created);
