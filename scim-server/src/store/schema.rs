//! diesel table definitions, mirroring `migrations/{sqlite,postgres}`.

diesel::table! {
    resources (id) {
        id -> Text,
        resource_type -> Text,
        doc -> Text,
        user_name_folded -> Nullable<Text>,
        display_name -> Nullable<Text>,
        display_name_folded -> Nullable<Text>,
        external_id -> Nullable<Text>,
        external_id_client -> Text,
        active -> Nullable<Bool>,
        employee_number_folded -> Nullable<Text>,
        manager_value_folded -> Nullable<Text>,
        created -> Text,
        last_modified -> Text,
        version -> BigInt,
    }
}

diesel::table! {
    resource_values (resource_id, attr) {
        resource_id -> Text,
        attr -> Text,
        type_folded -> Nullable<Text>,
        value_folded -> Nullable<Text>,
    }
}

diesel::table! {
    group_members (group_id, member_id) {
        group_id -> Text,
        member_id -> Text,
        member_type -> Text,
        display -> Nullable<Text>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        name -> Text,
        token_hash -> Text,
        token_prefix -> Text,
        scopes -> Text,
        created -> Text,
        last_used -> Nullable<Text>,
        revoked -> Nullable<Text>,
        user_id -> Nullable<Text>,
        expires -> Nullable<Text>,
    }
}

diesel::joinable!(resource_values -> resources (resource_id));
diesel::allow_tables_to_appear_in_same_query!(
    resources,
    resource_values,
    group_members,
    api_tokens
);
