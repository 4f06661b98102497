-- One reconcile run per connector at a time (schedule, CLI and admin API alike): a run that
-- closed the findings another run had just seen would make them flap. The lease expires so a
-- crashed run never blocks the next one for long.
CREATE TABLE engine_drift_runs (
    connector   TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL,
    lease_until TEXT NOT NULL
);
