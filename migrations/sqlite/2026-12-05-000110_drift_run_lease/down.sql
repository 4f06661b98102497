DROP TABLE engine_drift_runs;
