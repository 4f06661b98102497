//! The schema registry and the resolved per-resource-type view used for lookups.

use std::sync::Arc;

use crate::filter::AttrPath;
use crate::name::eq_ci;

use super::attribute::{AttributeDef, ResourceType, Schema};

/// A resource type with its main schema and extension schemas resolved.
///
/// Cheap to clone (schemas are shared); the server keeps one per resource type.
#[derive(Debug, Clone)]
pub struct ResourceSchema {
    pub resource_type: ResourceType,
    pub main: Arc<Schema>,
    /// Extension schemas with their `required` flag, in resource-type order.
    pub extensions: Vec<(Arc<Schema>, bool)>,
}

impl ResourceSchema {
    /// The extension schema whose id is `urn`, case-insensitively.
    pub fn extension(&self, urn: &str) -> Option<&Schema> {
        self.extensions.iter().map(|(s, _)| s.as_ref()).find(|s| s.id.eq_str(urn))
    }

    /// The schema (main or extension) whose id is `urn`.
    pub fn schema(&self, urn: &str) -> Option<&Schema> {
        if self.main.id.eq_str(urn) {
            Some(&self.main)
        } else {
            self.extension(urn)
        }
    }

    /// Whether `key` (a top-level JSON key of a resource) is the URN of one of this type's
    /// extensions, under which the extension's attributes are nested (RFC 7643 §3.3).
    pub fn is_extension_key(&self, key: &str) -> bool {
        self.extension(key).is_some()
    }

    /// The top-level attribute `name` in the schema `urn` (or, with no URN, in the main schema and
    /// then in the extensions, so that unqualified extension attributes are found as clients expect).
    pub fn top_level(&self, urn: Option<&str>, name: &str) -> Option<(&Schema, &AttributeDef)> {
        match urn {
            Some(urn) => {
                let schema = self.schema(urn)?;
                schema.attribute(name).map(|a| (schema, a))
            }
            None => std::iter::once(self.main.as_ref())
                .chain(self.extensions.iter().map(|(s, _)| s.as_ref()))
                .find_map(|s| s.attribute(name).map(|a| (s, a))),
        }
    }

    /// The definition an attribute path designates: the sub-attribute when the path has one.
    pub fn lookup(&self, path: &AttrPath) -> Option<&AttributeDef> {
        let (_, attr) = self.top_level(path.urn.as_ref().map(|u| u.as_str()), path.name.as_str())?;
        match &path.sub_attr {
            Some(sub) => attr.sub_attribute(sub.as_str()),
            None => Some(attr),
        }
    }

    /// The URNs to list in a resource's `schemas` attribute: the main schema and every extension
    /// that `resource` carries.
    pub fn schema_urns_for(&self, resource: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
        let mut urns = vec![self.main.id.to_string()];
        for (ext, _) in &self.extensions {
            if resource.keys().any(|k| eq_ci(k, ext.id.as_str())) {
                urns.push(ext.id.to_string());
            }
        }
        urns
    }
}

/// All schemas and resource types a service provider knows.
#[derive(Debug, Clone, Default)]
pub struct SchemaRegistry {
    schemas: Vec<Arc<Schema>>,
    resource_types: Vec<ResourceType>,
}

impl SchemaRegistry {
    /// An empty registry (see [`super::core`] for the one with the RFC 7643 core schemas).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Adds or replaces (by id) a schema.
    pub fn add_schema(&mut self, schema: Schema) {
        let schema = Arc::new(schema);
        match self.schemas.iter_mut().find(|s| s.id == schema.id) {
            Some(slot) => *slot = schema,
            None => self.schemas.push(schema),
        }
    }

    /// Adds or replaces (by id) a resource type.
    pub fn add_resource_type(&mut self, rt: ResourceType) {
        match self.resource_types.iter_mut().find(|r| r.id.eq_ignore_ascii_case(&rt.id)) {
            Some(slot) => *slot = rt,
            None => self.resource_types.push(rt),
        }
    }

    pub fn schemas(&self) -> impl Iterator<Item = &Schema> {
        self.schemas.iter().map(|s| s.as_ref())
    }

    pub fn schema(&self, urn: &str) -> Option<&Schema> {
        self.schemas.iter().map(|s| s.as_ref()).find(|s| s.id.eq_str(urn))
    }

    pub fn resource_types(&self) -> &[ResourceType] {
        &self.resource_types
    }

    /// The resolved view of resource type `id` (e.g. "User"), or `None` when the type is unknown or
    /// names a schema the registry does not hold.
    pub fn resource_schema(&self, id: &str) -> Option<ResourceSchema> {
        let rt = self.resource_types.iter().find(|r| r.id.eq_ignore_ascii_case(id))?;
        let main = self.schemas.iter().find(|s| s.id == rt.schema)?.clone();
        let extensions = rt
            .schema_extensions
            .iter()
            .map(|e| self.schemas.iter().find(|s| s.id == e.schema).map(|s| (s.clone(), e.required)))
            .collect::<Option<Vec<_>>>()?;
        Some(ResourceSchema { resource_type: rt.clone(), main, extensions })
    }
}
