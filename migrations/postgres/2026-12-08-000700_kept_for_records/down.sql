DO $$
DECLARE
    r RECORD;
BEGIN
    FOR r IN
        SELECT user_id, connector, planned FROM engine_accounts
        WHERE planned LIKE '%kept_for_records%'
    LOOP
        BEGIN
            IF r.planned::jsonb ? 'kept_for_records' THEN
                UPDATE engine_accounts
                SET planned = (r.planned::jsonb - 'kept_for_records')::text
                WHERE user_id = r.user_id AND connector = r.connector;
            END IF;
        EXCEPTION WHEN invalid_text_representation THEN
            NULL;
        END;
    END LOOP;
END
$$;
