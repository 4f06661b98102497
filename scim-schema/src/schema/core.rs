//! The RFC 7643 core schemas and resource types, as data.
//!
//! The schemas are stored in the RFC's own JSON representation (RFC 7643 §7, derived from the
//! §8.7.1 and §8.7.2 text) under `scim-schema/schemas/` and parsed when a registry is built, so
//! the `/Schemas` endpoint serves exactly what validation uses.
//!
//! Deviations from the letter of §8.7.1, each backed by the prose of the RFC:
//! * `addresses.primary` is defined (§4.1.2 lists it; the §8.7.1 JSON omits it, yet §8.2 uses it).
//! * `members.display` is defined, immutable like the other member sub-attributes (§4.2, §8.4).
//! * Group `displayName` is `required: true`. §4.2 says "displayName ... REQUIRED" while the
//!   §8.7.1 JSON says `false`; we follow the prose because the clients and servers that matter do:
//!   Entra ID and Okta always send it, AWS IAM Identity Center and Microsoft's reference SCIM
//!   service reject a group without it, and a group without a name cannot be found or kept
//!   unique (scimhub's store enforces case-insensitive uniqueness on it). The description stays
//!   the RFC's, so `/Schemas` differs from §8.7.1 only in that flag.
//!
//! The common attributes `id`, `externalId` and `meta` (§3.1) belong to no schema; they are
//! defined once in [`common_attributes`] and found by [`super::ResourceSchema::top_level`].

use std::sync::OnceLock;

use super::attribute::{AttributeDef, ResourceType, Schema, SchemaExtension};
use super::registry::SchemaRegistry;
use crate::name::CiString;

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const SERVICE_PROVIDER_CONFIG: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

const USER_JSON: &str = include_str!("../../schemas/user.json");
const GROUP_JSON: &str = include_str!("../../schemas/group.json");
const ENTERPRISE_USER_JSON: &str = include_str!("../../schemas/enterprise_user.json");
const SERVICE_PROVIDER_CONFIG_JSON: &str =
    include_str!("../../schemas/service_provider_config.json");
const RESOURCE_TYPE_JSON: &str = include_str!("../../schemas/resource_type.json");
const SCHEMA_JSON: &str = include_str!("../../schemas/schema.json");
const COMMON_JSON: &str = include_str!("../../schemas/common.json");

fn parse_builtin(json: &str) -> Schema {
    // The embedded files are part of the crate; the unit tests below parse every one of them.
    serde_json::from_str(json).expect("embedded RFC 7643 schema JSON is valid")
}

/// The common attributes of RFC 7643 §3.1 (`id`, `externalId`, `meta`), shared by every
/// resource type.
pub fn common_attributes() -> &'static [AttributeDef] {
    static COMMON: OnceLock<Vec<AttributeDef>> = OnceLock::new();
    COMMON.get_or_init(|| {
        serde_json::from_str(COMMON_JSON).expect("embedded common attributes JSON is valid")
    })
}

/// The core schemas in the order `/Schemas` lists them: User, Group, EnterpriseUser, then the
/// service provider schemas of §8.7.2 (ServiceProviderConfig, ResourceType, Schema).
pub fn core_schemas() -> Vec<Schema> {
    [
        USER_JSON,
        GROUP_JSON,
        ENTERPRISE_USER_JSON,
        SERVICE_PROVIDER_CONFIG_JSON,
        RESOURCE_TYPE_JSON,
        SCHEMA_JSON,
    ]
    .into_iter()
    .map(parse_builtin)
    .collect()
}

/// The `User` resource type (RFC 7643 §8.6): endpoint `/Users`, enterprise extension optional.
pub fn user_resource_type() -> ResourceType {
    ResourceType {
        id: "User".into(),
        name: "User".into(),
        endpoint: "/Users".into(),
        description: Some("User Account".into()),
        schema: CiString::from(USER),
        schema_extensions: vec![SchemaExtension {
            schema: CiString::from(ENTERPRISE_USER),
            required: false,
        }],
    }
}

/// The `Group` resource type (RFC 7643 §8.6): endpoint `/Groups`.
pub fn group_resource_type() -> ResourceType {
    ResourceType {
        id: "Group".into(),
        name: "Group".into(),
        endpoint: "/Groups".into(),
        description: Some("Group".into()),
        schema: CiString::from(GROUP),
        schema_extensions: Vec::new(),
    }
}

impl SchemaRegistry {
    /// A registry holding the RFC 7643 core schemas (User, Group, EnterpriseUser,
    /// ServiceProviderConfig, ResourceType, Schema) and the User and Group resource types.
    pub fn core() -> Self {
        let mut registry = SchemaRegistry::empty();
        for schema in core_schemas() {
            registry.add_schema(schema);
        }
        registry.add_resource_type(user_resource_type());
        registry.add_resource_type(group_resource_type());
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::attribute::{AttrType, Mutability, Returned, Uniqueness};

    #[test]
    fn every_builtin_schema_parses_and_is_well_formed() {
        let schemas = core_schemas();
        assert_eq!(schemas.len(), 6);
        for s in &schemas {
            // The §8.7.2 Schema schema nests `subAttributes` inside `attributes`; nothing else nests.
            let nested_ok = s.id.eq_str(SCHEMA);
            s.check_definition(nested_ok)
                .unwrap_or_else(|e| panic!("{}: {e}", s.id));
        }
        assert_eq!(common_attributes().len(), 3);
    }

    #[test]
    fn rfc7643_8_7_1_user_characteristics() {
        let reg = SchemaRegistry::core();
        let user = reg.schema(USER).unwrap_or_else(|| panic!("user schema"));
        let user_name = user
            .attribute("USERNAME")
            .unwrap_or_else(|| panic!("userName"));
        assert!(user_name.required);
        assert!(!user_name.case_exact);
        assert_eq!(user_name.uniqueness, Uniqueness::Server);
        let password = user
            .attribute("password")
            .unwrap_or_else(|| panic!("password"));
        assert_eq!(password.mutability, Mutability::WriteOnly);
        assert_eq!(password.returned, Returned::Never);
        let groups = user.attribute("groups").unwrap_or_else(|| panic!("groups"));
        assert_eq!(groups.mutability, Mutability::ReadOnly);
        assert!(groups.multi_valued);
        let x509 = user
            .attribute("x509Certificates")
            .and_then(|a| a.sub_attribute("value"));
        assert_eq!(x509.map(|a| a.attr_type), Some(AttrType::Binary));
    }

    #[test]
    fn rfc7643_3_1_common_attributes() {
        let id = &common_attributes()[0];
        assert!(id.name.eq_str("id"));
        assert!(id.case_exact);
        assert_eq!(id.mutability, Mutability::ReadOnly);
        assert_eq!(id.returned, Returned::Always);
        assert_eq!(id.uniqueness, Uniqueness::Server);
        let meta = &common_attributes()[2];
        assert_eq!(meta.mutability, Mutability::ReadOnly);
        assert_eq!(
            meta.sub_attribute("lastModified").map(|a| a.attr_type),
            Some(AttrType::DateTime)
        );
    }

    #[test]
    fn rfc7643_4_2_group_members() {
        let reg = SchemaRegistry::core();
        let members = reg
            .schema(GROUP)
            .and_then(|g| g.attribute("members"))
            .unwrap_or_else(|| panic!("members"));
        let value = members
            .sub_attribute("value")
            .unwrap_or_else(|| panic!("value"));
        assert_eq!(value.mutability, Mutability::Immutable);
        let ty = members
            .sub_attribute("type")
            .unwrap_or_else(|| panic!("type"));
        assert_eq!(ty.canonical_values, ["User", "Group"]);
        assert!(members.sub_attribute("display").is_some());
        assert!(members.sub_attribute("$ref").is_some());
    }

    #[test]
    fn core_resource_types() {
        let reg = SchemaRegistry::core();
        let user = reg
            .resource_schema("user")
            .unwrap_or_else(|| panic!("User resource type"));
        assert_eq!(user.resource_type.endpoint, "/Users");
        assert_eq!(user.extensions.len(), 1);
        assert!(!user.extensions[0].1);
        assert!(user.is_extension_key("urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"));
        let group = reg
            .resource_schema("Group")
            .unwrap_or_else(|| panic!("Group resource type"));
        assert_eq!(group.resource_type.endpoint, "/Groups");
        assert!(group.extensions.is_empty());
    }
}
