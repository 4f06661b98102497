DROP TRIGGER IF EXISTS resources_count_move ON resources;
DROP FUNCTION IF EXISTS resource_type_count_moved();
CREATE OR REPLACE FUNCTION resource_type_count_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO resource_type_count_deltas (resource_type, delta) VALUES (NEW.resource_type, 1);
    ELSE
        INSERT INTO resource_type_count_deltas (resource_type, delta) VALUES (OLD.resource_type, -1);
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS resource_type_counts_folds ON resource_type_counts;
DROP FUNCTION IF EXISTS resource_type_counts_fold();
ALTER TABLE resource_type_count_deltas DROP COLUMN IF EXISTS resource_id;
ALTER TABLE resource_type_counts DROP COLUMN IF EXISTS folds;
