-- resources_user_name_uq (resource_type, user_name_folded) holds the same keys in the same order,
-- and userName is unique per type: a userName-sorted page seeks and orders by the value alone on
-- the unique index (store::search::by_column), and needs no id to break ties. The duplicate cost
-- every create and every userName change a B-tree insert and its WAL pages.
DROP INDEX IF EXISTS resources_user_name_sort_idx;
