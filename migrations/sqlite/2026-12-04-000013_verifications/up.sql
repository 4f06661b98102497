-- Post-change verification: what each connector read back after a plan, per system
-- (verified / mismatch / unreadable / not_verifiable, with when), for reports and review.
CREATE TABLE engine_verifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    plan_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    connector  TEXT NOT NULL,
    event      TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    attempts   BIGINT NOT NULL,
    checked_at TEXT NOT NULL
);
CREATE INDEX engine_verifications_plan_idx ON engine_verifications (plan_id, connector);
CREATE INDEX engine_verifications_user_idx ON engine_verifications (user_id, id);
