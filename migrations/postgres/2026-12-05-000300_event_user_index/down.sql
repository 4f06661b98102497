DROP INDEX engine_events_user_idx;
