CREATE INDEX resources_user_name_sort_idx ON resources (resource_type, user_name_folded, id);
