-- scimhub storage, SQLite. Timestamps are UTC RFC 3339 text with a fixed width
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ) so that text order is time order.
CREATE TABLE resources (
    id                     TEXT PRIMARY KEY NOT NULL,
    resource_type          TEXT NOT NULL,
    doc                    TEXT NOT NULL,
    user_name_folded       TEXT,
    display_name           TEXT,
    display_name_folded    TEXT,
    external_id            TEXT,
    external_id_client     TEXT NOT NULL DEFAULT '',
    active                 BOOLEAN,
    employee_number_folded TEXT,
    manager_value_folded   TEXT,
    created                TEXT NOT NULL,
    last_modified          TEXT NOT NULL,
    version                BIGINT NOT NULL
);
CREATE UNIQUE INDEX resources_user_name_uq ON resources (resource_type, user_name_folded);
-- Sort indexes end in id: ORDER BY col, id and keyset cursors (col, id) > (?, ?) use them.
CREATE INDEX resources_user_name_sort_idx ON resources (resource_type, user_name_folded, id);
CREATE UNIQUE INDEX resources_group_display_name_uq ON resources (display_name_folded)
    WHERE resource_type = 'Group';
CREATE INDEX resources_display_name_idx ON resources (resource_type, display_name_folded, id);
CREATE UNIQUE INDEX resources_external_id_client_uq
    ON resources (resource_type, external_id_client, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX resources_external_id_idx ON resources (resource_type, external_id, id);
CREATE INDEX resources_created_idx ON resources (resource_type, created, id);
CREATE INDEX resources_last_modified_idx ON resources (resource_type, last_modified, id);
CREATE INDEX resources_employee_number_idx ON resources (resource_type, employee_number_folded);
CREATE INDEX resources_manager_value_idx ON resources (resource_type, manager_value_folded);

-- Values of multi-valued attributes extracted for filter push-down (emails today).
CREATE TABLE resource_values (
    resource_id  TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    attr         TEXT NOT NULL,
    type_folded  TEXT,
    value_folded TEXT
);
CREATE INDEX resource_values_value_idx ON resource_values (attr, value_folded);
CREATE INDEX resource_values_resource_idx ON resource_values (resource_id);

CREATE TABLE group_members (
    group_id    TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    member_id   TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    member_type TEXT NOT NULL,
    display     TEXT,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_member_idx ON group_members (member_id);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL,
    token_prefix TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created      TEXT NOT NULL,
    last_used    TEXT,
    revoked      TEXT
);
CREATE UNIQUE INDEX api_tokens_prefix_uq ON api_tokens (token_prefix);
