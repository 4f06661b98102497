-- Connector health (issue #14, outages): one circuit breaker per connector, durable so a restart
-- keeps an open circuit open. `state` is closed (operations run), open (operations wait, not
-- claimed, until `next_probe_at`) or half_open (one operation, the probe, is running;
-- `probe_until` is when its claim is given up if its worker died). `consecutive_failures`
-- counts retryable failures since the last answer; `opened_at` is when the current outage began
-- (kept while it re-opens after a failed probe; it names the outage's incident).
CREATE TABLE connector_health (
    connector            TEXT PRIMARY KEY,
    state                TEXT NOT NULL,
    consecutive_failures BIGINT NOT NULL,
    opened_at            TEXT,
    last_error           TEXT,
    next_probe_at        TEXT,
    probe_until          TEXT,
    updated              TEXT NOT NULL
);
