-- Accounts kept disabled for their records now say so in their planned record
-- (`kept_for_records`), so a later plan of a rehire whose new role has no account there hands
-- the records over instead of deleting them. Accounts kept before this release are the
-- disabled ones with an open `records_kept` incident.
--
-- Row by row, each cast in its own block: a planned record that is not JSON (written by hand)
-- is left as it is instead of failing the upgrade. The engine marks such accounts again at each
-- plan (`engine::load`), so this only spares the first plan the work.
DO $$
DECLARE
    r RECORD;
BEGIN
    FOR r IN
        SELECT a.user_id, a.connector, a.planned
        FROM engine_accounts a
        WHERE EXISTS (
            SELECT 1 FROM engine_incidents i
            WHERE i.kind = 'records_kept' AND i.status = 'open'
              AND i.user_id = a.user_id AND i.connector = a.connector
        )
    LOOP
        BEGIN
            IF (r.planned::jsonb ->> 'exists') = 'true'
               AND (r.planned::jsonb ->> 'enabled') = 'false' THEN
                UPDATE engine_accounts
                SET planned = (r.planned::jsonb || '{"kept_for_records": true}'::jsonb)::text
                WHERE user_id = r.user_id AND connector = r.connector;
            END IF;
        EXCEPTION WHEN invalid_text_representation THEN
            NULL;
        END;
    END LOOP;
END
$$;
