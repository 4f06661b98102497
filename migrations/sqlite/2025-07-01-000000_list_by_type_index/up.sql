-- Unfiltered and id-ordered lists (GET /Users?startIndex=...) walk this index instead of sorting
-- every resource of the type for each page.
CREATE INDEX resources_type_id_idx ON resources (resource_type, id);
