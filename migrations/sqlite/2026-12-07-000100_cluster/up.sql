-- The node registry and once-per-period schedules (see the PostgreSQL migration). A SQLite
-- database has one node; its wake-ups stay in the process, so there are no triggers here.
CREATE TABLE cluster_nodes (
    node_id          TEXT PRIMARY KEY,
    started          TEXT NOT NULL,
    seen             TEXT NOT NULL,
    policy_sha256    TEXT,
    policy_loaded    TEXT
);
CREATE TABLE cluster_schedules (
    name     TEXT PRIMARY KEY,
    next_at  TEXT NOT NULL,
    owner    TEXT
);
