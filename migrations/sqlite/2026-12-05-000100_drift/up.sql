-- Drift reconciliation: what a connector's account listing showed that the engine's desired and
-- recorded state does not explain. One row per (connector, kind, account, entitlement) while it
-- is open: a later run that sees it again moves last_seen; a run that no longer sees it closes it
-- (closed_at). Rows are never deleted; a finding that comes back is a new row.
CREATE TABLE engine_drift_findings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    connector   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    account     TEXT NOT NULL,
    -- '' when the finding is about the account itself
    entitlement TEXT NOT NULL,
    user_id     TEXT,
    -- what the policy said to do: report, fix, review
    action      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    status      TEXT NOT NULL,
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    closed_at   TEXT,
    run_id      TEXT NOT NULL
);
CREATE UNIQUE INDEX engine_drift_findings_open_idx
    ON engine_drift_findings (connector, kind, account, entitlement) WHERE status = 'open';
CREATE INDEX engine_drift_findings_status_idx ON engine_drift_findings (status, connector, kind);

-- A finding a manager reviewed and kept: later runs neither report nor fix it until it expires.
CREATE TABLE engine_drift_exceptions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    connector   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    account     TEXT NOT NULL,
    entitlement TEXT NOT NULL,
    decided_by  TEXT NOT NULL,
    decided_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX engine_drift_exceptions_key_idx
    ON engine_drift_exceptions (connector, kind, account, entitlement);
