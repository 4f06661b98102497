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
}
