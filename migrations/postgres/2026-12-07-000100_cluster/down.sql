DROP TRIGGER engine_timers_notify_due ON engine_timers;
DROP FUNCTION scimhub_notify_timers();
DROP TRIGGER engine_outbox_notify_release ON engine_outbox;
DROP TRIGGER engine_outbox_notify_insert ON engine_outbox;
DROP FUNCTION scimhub_notify_outbox();
DROP TABLE cluster_schedules;
DROP TABLE cluster_nodes;
