-- One-click links used so far: one row per mover event (every link of one event shares its
-- use). Inserted in the transaction that acts, so the primary key, not a scan of the audit,
-- makes a link act at most once even when two clicks race.
CREATE TABLE engine_used_links (
    event_id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    used_at TEXT NOT NULL,
    used_by TEXT NOT NULL
);
