//! The schemas scimhub serves and validates against, resolved once at start.
//!
//! [`registry`] is the RFC 7643 core registry from `scim-schema` (where Group `displayName` is
//! required, per the RFC 7643 §4.2 prose) with one server decision advertised: the store keeps
//! group display names unique (case-insensitively), so `/Schemas` says `uniqueness: server` for
//! it and clients know before they hit a 409.
//!
//! [`Schemas`] holds the resolved [`ResourceSchema`] of each resource type, so no request
//! resolves or parses a schema.

use std::sync::Arc;

use scim_schema::schema::core::GROUP;
use scim_schema::schema::{ResourceSchema, SchemaRegistry, Uniqueness, ValidationOptions};

use crate::store::ResourceKind;

/// The registry scimhub serves: the core schemas, Group `displayName` unique server-wide.
pub fn registry() -> SchemaRegistry {
    let mut reg = SchemaRegistry::core();
    if let Some(group) = reg.schema(GROUP) {
        let mut group = group.clone();
        for a in group.attributes.iter_mut() {
            if a.name.eq_str("displayName") {
                a.uniqueness = Uniqueness::Server;
            }
        }
        reg.add_schema(group);
    }
    reg
}

/// [`registry`] plus the operator's custom extension schemas from `[[schema_extensions]]`.
pub fn configured_registry(
    extensions: &[crate::config::SchemaExtensionConfig],
) -> Result<SchemaRegistry, String> {
    let mut reg = registry();
    for ext in extensions {
        let text = std::fs::read_to_string(&ext.file)
            .map_err(|e| format!("cannot read schema file {}: {e}", ext.file.display()))?;
        add_extension_json(&mut reg, &text, &ext.resource_type, ext.required)
            .map_err(|e| format!("schema file {}: {e}", ext.file.display()))?;
    }
    Ok(reg)
}

/// Loads the schemas in `json` (one object or an array, RFC 7643 §7) and adds each as an
/// extension of `resource_type`.
pub fn add_extension_json(
    reg: &mut SchemaRegistry,
    json: &str,
    resource_type: &str,
    required: bool,
) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let ids: Vec<String> = match &value {
        serde_json::Value::Array(items) => items.iter().filter_map(schema_id).collect(),
        one => schema_id(one).into_iter().collect(),
    };
    reg.load_schema_json(json).map_err(|e| e.to_string())?;
    for id in ids {
        reg.add_extension(resource_type, &id, required)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn schema_id(schema: &serde_json::Value) -> Option<String> {
    schema
        .get("id")
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// The registry and the resolved schema of each resource type, built once.
#[derive(Debug)]
pub struct Schemas {
    pub registry: Arc<SchemaRegistry>,
    user: ResourceSchema,
    group: ResourceSchema,
    /// Validation options in force (`strict`: unknown attributes are rejected).
    pub validation: ValidationOptions,
}

impl Schemas {
    /// Resolves User and Group in `registry`; `strict` rejects attributes no schema defines.
    pub fn new(registry: SchemaRegistry, strict: bool) -> Result<Schemas, String> {
        let resolve = |kind: ResourceKind| {
            registry
                .resource_schema(kind.as_str())
                .ok_or_else(|| format!("the schema registry has no {kind} resource type"))
        };
        Ok(Schemas {
            user: resolve(ResourceKind::User)?,
            group: resolve(ResourceKind::Group)?,
            validation: ValidationOptions {
                reject_unknown_attributes: strict,
                ..ValidationOptions::default()
            },
            registry: Arc::new(registry),
        })
    }

    /// The resolved schema of `kind`.
    pub fn of(&self, kind: ResourceKind) -> &ResourceSchema {
        match kind {
            ResourceKind::User => &self.user,
            ResourceKind::Group => &self.group,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7643_4_2_group_display_name_is_required() {
        let s = Schemas::new(registry(), false).expect("schemas");
        let dn = s
            .of(ResourceKind::Group)
            .main_attribute("displayName")
            .expect("displayName");
        assert!(dn.required);
        assert_eq!(dn.uniqueness, Uniqueness::Server);
        assert!(s
            .of(ResourceKind::User)
            .main_attribute("userName")
            .is_some());
        assert!(!s.validation.reject_unknown_attributes);
    }

    #[test]
    fn rfc7643_3_3_operator_extension_from_a_file() {
        let dir = std::env::temp_dir().join(format!("scimhub-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("contractor.schema.json");
        std::fs::write(
            &file,
            r#"{"id": "urn:example:params:scim:schemas:extension:contractor:2.0:User",
                "name": "Contractor",
                "attributes": [{"name": "contractEndDate", "type": "dateTime"}]}"#,
        )
        .expect("write");
        let ext = crate::config::SchemaExtensionConfig {
            file: file.clone(),
            resource_type: "User".into(),
            required: false,
        };
        let reg = configured_registry(std::slice::from_ref(&ext)).expect("registry");
        let s = Schemas::new(reg, true).expect("schemas");
        assert!(s
            .of(ResourceKind::User)
            .extension("urn:example:params:scim:schemas:extension:contractor:2.0:User")
            .is_some());
        std::fs::write(&file, "{not json").expect("write");
        let err = configured_registry(&[ext]).expect_err("bad file");
        assert!(err.contains("contractor.schema.json"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
