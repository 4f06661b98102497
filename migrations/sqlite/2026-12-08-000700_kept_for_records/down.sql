UPDATE engine_accounts
SET planned = json_remove(planned, '$.kept_for_records')
WHERE json_valid(planned) AND json_extract(planned, '$.kept_for_records') IS NOT NULL;
