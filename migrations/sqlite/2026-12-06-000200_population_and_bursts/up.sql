-- Creates and deletes per writing process (SQLite): a server on the file compares the sum of the
-- other processes' rows with what it saw last, so an import run beside it refreshes its cached
-- resource counts and id ranks (store/type_counts.rs).
CREATE TABLE store_population (
    writer TEXT PRIMARY KEY NOT NULL,
    generation BIGINT NOT NULL
);

-- Onboarding bursts (engine/onboarding.rs): the joiner plans of one /Bulk request, one roster
-- import run, or one client's joiners close together; one confirmation mail per burst once
-- every plan reached a final state.
CREATE TABLE engine_bursts (
    id TEXT PRIMARY KEY NOT NULL,
    source TEXT NOT NULL,
    scope_key TEXT,
    client TEXT NOT NULL,
    started TEXT NOT NULL,
    last_at TEXT NOT NULL,
    reported TEXT,
    -- 1 when the run that scoped it ended (a window burst ends by time)
    sealed INTEGER NOT NULL DEFAULT 0,
    mailed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX engine_bursts_open ON engine_bursts (reported, client);
CREATE UNIQUE INDEX engine_bursts_scope ON engine_bursts (scope_key);
CREATE TABLE engine_burst_plans (
    burst_id TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (burst_id, plan_id)
);
