DROP INDEX resources_type_id_idx;
