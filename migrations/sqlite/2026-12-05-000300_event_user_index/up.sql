-- The admin API lists a user's events newest first (GET /admin/v1/events?user=).
CREATE INDEX engine_events_user_idx ON engine_events (user_id, id);
