DROP TABLE engine_drift_exceptions;
DROP TABLE engine_drift_findings;
