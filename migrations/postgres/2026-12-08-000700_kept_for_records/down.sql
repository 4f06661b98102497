UPDATE engine_accounts
SET planned = (planned::jsonb - 'kept_for_records')::text
WHERE planned::jsonb ? 'kept_for_records';
