-- What a node needs to trust the id ranks it keeps in memory for deep index pages
-- (`store::pg_ranks`): a marker of a type's population that any create or delete moves, read
-- in the same statement as the page.
--
-- `folds` counts the folds of a type's deltas into its base (every UPDATE of the row is one; a
-- trigger bumps it, so the fold statement of an older node counts too). Between two snapshots
-- with the same counts row version, deltas were only appended: the same number of deltas means
-- the same population. Each delta now names its resource, so a node can bring its ranks up to
-- date from the deltas alone instead of reading every id again, and a tool that changes a
-- resource's id or type appends deltas too. Expand only: older nodes neither read nor write the
-- new column, and their inserts of deltas go through the triggers below.
ALTER TABLE resource_type_counts ADD COLUMN folds BIGINT NOT NULL DEFAULT 0;
ALTER TABLE resource_type_count_deltas ADD COLUMN resource_id TEXT COLLATE "C";

CREATE FUNCTION resource_type_counts_fold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.folds := OLD.folds + 1;
    RETURN NEW;
END
$$;

CREATE TRIGGER resource_type_counts_folds BEFORE UPDATE ON resource_type_counts
    FOR EACH ROW EXECUTE FUNCTION resource_type_counts_fold();

CREATE OR REPLACE FUNCTION resource_type_count_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO resource_type_count_deltas (resource_type, delta, resource_id)
        VALUES (NEW.resource_type, 1, NEW.id);
    ELSE
        INSERT INTO resource_type_count_deltas (resource_type, delta, resource_id)
        VALUES (OLD.resource_type, -1, OLD.id);
    END IF;
    RETURN NULL;
END
$$;

-- A tool (or an older version) that moves a resource to another id or type: the count and the
-- ranks see a delete and a create. Scimhub's own updates never set either column, so this fires
-- for none of them (`UPDATE OF` looks at the SET list).
CREATE FUNCTION resource_type_count_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.resource_type IS DISTINCT FROM OLD.resource_type THEN
        INSERT INTO resource_type_count_deltas (resource_type, delta, resource_id)
        VALUES (OLD.resource_type, -1, OLD.id), (NEW.resource_type, 1, NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER resources_count_move AFTER UPDATE OF id, resource_type ON resources
    FOR EACH ROW EXECUTE FUNCTION resource_type_count_moved();
