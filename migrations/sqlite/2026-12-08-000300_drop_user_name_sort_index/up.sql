-- resources_user_name_uq (resource_type, user_name_folded) holds the same keys in the same order:
-- userName is unique per type, so ties in a userName sort are only rows without one, and
-- SQLite orders those by id itself ("TEMP B-TREE FOR RIGHT PART OF ORDER BY"). The duplicate
-- cost every create and every userName change a B-tree insert and its WAL pages.
DROP INDEX IF EXISTS resources_user_name_sort_idx;
