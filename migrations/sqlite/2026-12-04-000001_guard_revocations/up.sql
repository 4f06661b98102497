-- The blast-radius guard counts users who lose access, whatever the event: `revokes` is how many
-- of a plan's operations take access away (disable, delete, revoke an entitlement, sessions or
-- credentials). Existing deprovisions keep counting.
ALTER TABLE engine_events ADD COLUMN revokes INTEGER NOT NULL DEFAULT 0;
UPDATE engine_events SET revokes = ops WHERE event IN ('leaver', 'contractor-expiry') AND ops > 0;
CREATE INDEX engine_events_revokes_idx ON engine_events (at) WHERE revokes > 0;
CREATE INDEX engine_events_hold_idx ON engine_events (hold_id) WHERE hold_id IS NOT NULL;

-- Users a group change re-plans in the background, batch by batch, under the change's staging
-- hold (`engine_holds.status = 'staging'`); a row goes when its user has been planned.
CREATE TABLE engine_replan_users (
    hold_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (hold_id, user_id)
);
