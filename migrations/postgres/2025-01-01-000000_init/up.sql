-- scimhub storage, PostgreSQL. Text is compared and sorted by bytes (COLLATE "C"), exactly as on
-- SQLite, so push-down and keyset paging agree on both backends. Timestamps are UTC RFC 3339 text with a fixed width
-- (YYYY-MM-DDTHH:MM:SS.ffffffZ) so that text order is time order.
CREATE TABLE resources (
    id                     TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    resource_type          TEXT COLLATE "C" NOT NULL,
    doc                    TEXT COLLATE "C" NOT NULL,
    user_name_folded       TEXT COLLATE "C",
    display_name           TEXT COLLATE "C",
    display_name_folded    TEXT COLLATE "C",
    external_id            TEXT COLLATE "C",
    external_id_client     TEXT COLLATE "C" NOT NULL DEFAULT '',
    active                 BOOLEAN,
    employee_number_folded TEXT COLLATE "C",
    manager_value_folded   TEXT COLLATE "C",
    created                TEXT COLLATE "C" NOT NULL,
    last_modified          TEXT COLLATE "C" NOT NULL,
    version                BIGINT NOT NULL
);
CREATE UNIQUE INDEX resources_user_name_uq ON resources (resource_type, user_name_folded);
-- Sort indexes end in id: ORDER BY col, id and keyset cursors (col, id) > (?, ?) use them.
CREATE INDEX resources_user_name_sort_idx ON resources (resource_type, user_name_folded NULLS FIRST, id);
CREATE UNIQUE INDEX resources_group_display_name_uq ON resources (display_name_folded)
    WHERE resource_type = 'Group';
CREATE INDEX resources_display_name_idx ON resources (resource_type, display_name_folded NULLS FIRST, id);
CREATE UNIQUE INDEX resources_external_id_client_uq
    ON resources (resource_type, external_id_client, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX resources_external_id_idx ON resources (resource_type, external_id NULLS FIRST, id);
CREATE INDEX resources_created_idx ON resources (resource_type, created NULLS FIRST, id);
CREATE INDEX resources_last_modified_idx ON resources (resource_type, last_modified NULLS FIRST, id);
CREATE INDEX resources_employee_number_idx ON resources (resource_type, employee_number_folded);
CREATE INDEX resources_manager_value_idx ON resources (resource_type, manager_value_folded);

-- Values of multi-valued attributes extracted for filter push-down (emails today).
CREATE TABLE resource_values (
    resource_id  TEXT COLLATE "C" NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    attr         TEXT COLLATE "C" NOT NULL,
    type_folded  TEXT COLLATE "C",
    value_folded TEXT COLLATE "C"
);
CREATE INDEX resource_values_value_idx ON resource_values (attr, value_folded);
CREATE INDEX resource_values_resource_idx ON resource_values (resource_id);

CREATE TABLE group_members (
    group_id    TEXT COLLATE "C" NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    member_id   TEXT COLLATE "C" NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    member_type TEXT COLLATE "C" NOT NULL,
    display     TEXT COLLATE "C",
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_member_idx ON group_members (member_id);

CREATE TABLE api_tokens (
    id           TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    token_hash   TEXT COLLATE "C" NOT NULL,
    token_prefix TEXT COLLATE "C" NOT NULL,
    scopes       TEXT COLLATE "C" NOT NULL,
    created      TEXT COLLATE "C" NOT NULL,
    last_used    TEXT COLLATE "C",
    revoked      TEXT COLLATE "C"
);
CREATE UNIQUE INDEX api_tokens_prefix_uq ON api_tokens (token_prefix);
