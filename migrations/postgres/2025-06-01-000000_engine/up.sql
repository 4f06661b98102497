-- Lifecycle engine: per-user state, planned/actual accounts, the outbox, timers, approvals,
-- overrides, holds, events, audit, incidents, notifications. Timestamps as in the initial
-- migration (fixed-width UTC RFC 3339 text, so text order is time order).

-- What the engine last decided about each user (survives DELETE of the resource).
CREATE TABLE engine_users (
    user_id  TEXT PRIMARY KEY NOT NULL,
    state    TEXT NOT NULL,
    profiles TEXT NOT NULL,
    facts    TEXT NOT NULL,
    updated  TEXT NOT NULL
);

-- Per user and connector: `planned` is the state once every queued operation is done (plans are
-- diffed against it), `actual` what operations confirmed.
CREATE TABLE engine_accounts (
    user_id   TEXT NOT NULL,
    connector TEXT NOT NULL,
    planned   TEXT NOT NULL,
    actual    TEXT,
    updated   TEXT NOT NULL,
    PRIMARY KEY (user_id, connector)
);

CREATE TABLE engine_outbox (
    id          BIGSERIAL PRIMARY KEY,
    plan_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    connector   TEXT NOT NULL,
    event       TEXT NOT NULL,
    priority    BIGINT NOT NULL,
    op          TEXT NOT NULL,
    status      TEXT NOT NULL,
    hold_id     TEXT,
    attempts    BIGINT NOT NULL DEFAULT 0,
    not_before  TEXT NOT NULL,
    lease_until TEXT,
    lease_owner TEXT,
    last_error  TEXT,
    created     TEXT NOT NULL,
    finished    TEXT
);
CREATE INDEX engine_outbox_claim_idx ON engine_outbox (status, priority, id);
CREATE INDEX engine_outbox_pair_idx ON engine_outbox (user_id, connector, id);
CREATE INDEX engine_outbox_hold_idx ON engine_outbox (hold_id);

CREATE TABLE engine_timers (
    id          BIGSERIAL PRIMARY KEY,
    timer_key   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    due         TEXT NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL,
    lease_until TEXT,
    created     TEXT NOT NULL,
    fired       TEXT
);
CREATE UNIQUE INDEX engine_timers_key_uq ON engine_timers (timer_key);
CREATE INDEX engine_timers_due_idx ON engine_timers (status, due);
CREATE INDEX engine_timers_user_idx ON engine_timers (user_id, kind);

CREATE TABLE engine_approvals (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    connector   TEXT,
    entitlement TEXT,
    level       TEXT NOT NULL,
    detail      TEXT NOT NULL,
    status      TEXT NOT NULL,
    requested   TEXT NOT NULL,
    decided     TEXT,
    decided_by  TEXT,
    reason      TEXT
);
CREATE INDEX engine_approvals_user_idx ON engine_approvals (user_id, status);
CREATE INDEX engine_approvals_status_idx ON engine_approvals (status, requested);

CREATE TABLE engine_overrides (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL,
    connector   TEXT NOT NULL,
    entitlement TEXT NOT NULL,
    until       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created     TEXT NOT NULL
);
CREATE INDEX engine_overrides_user_idx ON engine_overrides (user_id);

CREATE TABLE engine_holds (
    id         TEXT PRIMARY KEY NOT NULL,
    created    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    status     TEXT NOT NULL,
    decided    TEXT,
    decided_by TEXT
);

CREATE TABLE engine_events (
    id      BIGSERIAL PRIMARY KEY,
    at      TEXT NOT NULL,
    user_id TEXT NOT NULL,
    event   TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    ops     BIGINT NOT NULL,
    hold_id TEXT
);
CREATE INDEX engine_events_at_idx ON engine_events (event, at);

-- Append-only. prev_hash/hash are the seam for the tamper-evident chain (a later issue).
CREATE TABLE engine_audit (
    id        BIGSERIAL PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    connector TEXT,
    action    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT,
    hash      TEXT
);
CREATE INDEX engine_audit_user_idx ON engine_audit (user_id, id);

CREATE TABLE engine_incidents (
    id        BIGSERIAL PRIMARY KEY,
    created   TEXT NOT NULL,
    kind      TEXT NOT NULL,
    user_id   TEXT,
    connector TEXT,
    outbox_id BIGINT,
    reason    TEXT NOT NULL,
    status    TEXT NOT NULL
);

CREATE TABLE engine_notifications (
    id          BIGSERIAL PRIMARY KEY,
    created     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    user_id     TEXT,
    recipients  TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    not_before  TEXT NOT NULL,
    lease_until TEXT,
    sent        TEXT,
    last_error  TEXT
);
CREATE INDEX engine_notifications_claim_idx ON engine_notifications (status, not_before);
