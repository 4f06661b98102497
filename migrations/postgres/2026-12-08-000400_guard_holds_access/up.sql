-- The blast-radius guard's population is the users who hold access (store::events::
-- guard_population): whether a user has an enabled account planned on some connector, kept
-- beside their state so the count stays one scan of engine_users. Written with the user's
-- row on every plan (engine_state::put_user) and by drift fixes (engine_state::put_planned).
-- Expand only: an older node leaves the column as it was (a new user stays FALSE, which
-- makes the guard stricter, not looser, until a newer node plans them).
ALTER TABLE engine_users ADD COLUMN holds_access BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE engine_users SET holds_access = EXISTS (
    SELECT 1 FROM engine_accounts a
    WHERE a.user_id = engine_users.user_id AND a.planned LIKE '%"enabled":true%'
);
