DROP TRIGGER IF EXISTS resources_count_delete ON resources;
DROP TRIGGER IF EXISTS resources_count_insert ON resources;
DROP FUNCTION IF EXISTS resource_type_count_delta();
DROP TABLE IF EXISTS resource_type_count_deltas;
DROP TABLE IF EXISTS resource_type_counts;
