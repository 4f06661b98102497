-- Access certification (docs/certification.md). A campaign asks reviewers to certify, revoke
-- or delegate each person's access in its scope; a micro-review is a one-item campaign opened
-- from a drift finding under `review`. Ids are UUIDv7 text, as approvals and holds.
CREATE TABLE engine_campaigns (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    -- 'campaign' (on demand or scheduled) or 'micro' (one drift finding)
    kind         TEXT NOT NULL,
    -- JSON: {"connectors": [...], "departments": [...], "profiles": [...], "privileged": bool}
    scope        TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created      TEXT NOT NULL,
    due          TEXT NOT NULL,
    -- open, completed, cancelled
    state        TEXT NOT NULL,
    completed_at TEXT,
    -- a scheduled campaign's period and scope ('2027-Q1:0'): created once, whatever the nodes
    schedule_key TEXT UNIQUE
);
CREATE INDEX engine_campaigns_state_idx ON engine_campaigns (state, due);

-- One person's access on one connector (an entitlement) to review, as last read back.
CREATE TABLE engine_campaign_items (
    id             TEXT PRIMARY KEY,
    campaign_id    TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    connector      TEXT NOT NULL,
    -- the entitlement as the engine stores it (JSON)
    entitlement    TEXT NOT NULL,
    -- profile, outside-profile, grant
    source         TEXT NOT NULL,
    privileged     BIGINT NOT NULL,
    -- the matched profiles when the item was opened (JSON list)
    profiles       TEXT NOT NULL,
    -- where the access was seen: verification, drift, applied; when, and what was read
    observed_from  TEXT NOT NULL,
    observed_at    TEXT,
    observed       TEXT,
    -- the reviewer: a user id (manager, delegate) or a userName (owner, security); '' nobody
    reviewer       TEXT NOT NULL,
    -- manager, owner, security, delegate
    reviewer_level TEXT NOT NULL,
    -- NULL while undecided; certify, revoke, expired (nobody decided by the last due)
    decision       TEXT,
    reason         TEXT,
    decided_by     TEXT,
    decided_at     TEXT,
    delegated_to   TEXT,
    -- the drift finding a micro-review is about
    finding_id     BIGINT,
    -- the revocation a revoke made, and the plan that carried it out
    revocation_id  TEXT,
    plan_id        TEXT
);
CREATE INDEX engine_campaign_items_campaign_idx ON engine_campaign_items (campaign_id, decision);
CREATE INDEX engine_campaign_items_user_idx ON engine_campaign_items (user_id);

-- A certification's revoke, which the engine honours: the entitlement is left out of the
-- user's desired state while the user's matched profiles are those it was revoked under; a
-- role change lifts it (lifted_at).
CREATE TABLE engine_revocations (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    connector   TEXT NOT NULL,
    entitlement TEXT NOT NULL,
    profiles    TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    created     TEXT NOT NULL,
    lifted_at   TEXT,
    lifted_why  TEXT
);
CREATE INDEX engine_revocations_user_idx ON engine_revocations (user_id, lifted_at);
