//! The schema registry and the resolved per-resource-type view used for lookups.

use std::sync::Arc;

use crate::error::Error;
use crate::filter::AttrPath;
use crate::name::{eq_ci, CiString};

use super::attribute::{AttributeDef, ResourceType, Schema, SchemaExtension};
use super::core::common_attributes;

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
        self.extensions
            .iter()
            .map(|(s, _)| s.as_ref())
            .find(|s| s.id.eq_str(urn))
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
    ///
    /// The common attributes `id`, `externalId` and `meta` (RFC 7643 §3.1) are found with no URN or
    /// with the main schema's URN, and are reported as belonging to the main schema.
    pub fn top_level(&self, urn: Option<&str>, name: &str) -> Option<(&Schema, &AttributeDef)> {
        match urn {
            Some(urn) => {
                let schema = self.schema(urn)?;
                schema.attribute(name).map(|a| (schema, a)).or_else(|| {
                    let main = std::ptr::eq(schema, self.main.as_ref());
                    main.then(|| common_attribute(name).map(|a| (schema, a)))
                        .flatten()
                })
            }
            None => self
                .main_attribute(name)
                .map(|a| (self.main.as_ref(), a))
                .or_else(|| {
                    self.extensions
                        .iter()
                        .map(|(s, _)| s.as_ref())
                        .find_map(|s| s.attribute(name).map(|a| (s, a)))
                }),
        }
    }

    /// A top-level attribute of the main schema or a common attribute (`id`, `externalId`, `meta`):
    /// what may appear as an unqualified top-level key of a resource.
    pub fn main_attribute(&self, name: &str) -> Option<&AttributeDef> {
        self.main.attribute(name).or_else(|| common_attribute(name))
    }

    /// The index in [`Self::extensions`] of the extension whose id is `urn`.
    pub fn extension_index(&self, urn: &str) -> Option<usize> {
        self.extensions.iter().position(|(s, _)| s.id.eq_str(urn))
    }

    /// The index in [`Self::extensions`] of the extension a path names as a whole
    /// (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`; see
    /// [`AttrPath::names_schema`]).
    pub fn extension_index_named_by(&self, path: &AttrPath) -> Option<usize> {
        self.extensions
            .iter()
            .position(|(s, _)| path.names_schema(s.id.as_str()))
    }

    /// The definition an attribute path designates: the sub-attribute when the path has one.
    pub fn lookup(&self, path: &AttrPath) -> Option<&AttributeDef> {
        let (_, attr) =
            self.top_level(path.urn.as_ref().map(|u| u.as_str()), path.name.as_str())?;
        match &path.sub_attr {
            Some(sub) => attr.sub_attribute(sub.as_str()),
            None => Some(attr),
        }
    }

    /// The URNs to list in a resource's `schemas` attribute: the main schema and every extension
    /// that `resource` carries.
    pub fn schema_urns_for(
        &self,
        resource: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<String> {
        let mut urns = vec![self.main.id.to_string()];
        for (ext, _) in &self.extensions {
            if resource.keys().any(|k| eq_ci(k, ext.id.as_str())) {
                urns.push(ext.id.to_string());
            }
        }
        urns
    }
}

fn common_attribute(name: &str) -> Option<&'static AttributeDef> {
    common_attributes().iter().find(|a| a.name.eq_str(name))
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
        match self
            .resource_types
            .iter_mut()
            .find(|r| r.id.eq_ignore_ascii_case(&rt.id))
        {
            Some(slot) => *slot = rt,
            None => self.resource_types.push(rt),
        }
    }

    pub fn schemas(&self) -> impl Iterator<Item = &Schema> {
        self.schemas.iter().map(|s| s.as_ref())
    }

    pub fn schema(&self, urn: &str) -> Option<&Schema> {
        self.schemas
            .iter()
            .map(|s| s.as_ref())
            .find(|s| s.id.eq_str(urn))
    }

    pub fn resource_types(&self) -> &[ResourceType] {
        &self.resource_types
    }

    /// The resolved view of resource type `id` (e.g. "User"), or `None` when the type is unknown or
    /// names a schema the registry does not hold.
    pub fn resource_schema(&self, id: &str) -> Option<ResourceSchema> {
        let rt = self
            .resource_types
            .iter()
            .find(|r| r.id.eq_ignore_ascii_case(id))?;
        let main = self.schemas.iter().find(|s| s.id == rt.schema)?.clone();
        let extensions = rt
            .schema_extensions
            .iter()
            .map(|e| {
                self.schemas
                    .iter()
                    .find(|s| s.id == e.schema)
                    .map(|s| (s.clone(), e.required))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ResourceSchema {
            resource_type: rt.clone(),
            main,
            extensions,
        })
    }

    /// Loads custom schemas from their RFC 7643 §7 JSON representation: one schema object or an
    /// array of them (a `schemas`/`meta` envelope is accepted and ignored). Every schema is checked
    /// with [`Schema::check_definition`] (no complex attribute inside a complex one) before any is
    /// added, so a bad document changes nothing. A schema with the id of a known one replaces it.
    ///
    /// Errors: malformed JSON is [`Error::InvalidSyntax`]; a well-formed document that is not a
    /// valid schema (missing fields, unknown `type`/`mutability`/`returned`/`uniqueness`
    /// keywords, duplicate names, ...) is [`Error::InvalidValue`].
    pub fn load_schema_json(&mut self, json: &str) -> Result<(), Error> {
        let doc: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::InvalidSyntax(format!("schema document is not JSON: {e}")))?;
        let items = match doc {
            serde_json::Value::Array(items) => items,
            obj @ serde_json::Value::Object(_) => vec![obj],
            _ => {
                return Err(Error::InvalidValue(
                    "a schema document must be an object or an array of objects".into(),
                ))
            }
        };
        let mut parsed = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let schema: Schema = serde_json::from_value(item).map_err(|e| {
                Error::InvalidValue(format!(
                    "schema #{i} is not a valid RFC 7643 §7 schema: {e}"
                ))
            })?;
            schema.check_definition(false)?;
            if parsed.iter().any(|s: &Schema| s.id == schema.id) {
                return Err(Error::InvalidValue(format!(
                    "schema '{}' is given twice",
                    schema.id
                )));
            }
            parsed.push(schema);
        }
        for schema in parsed {
            self.add_schema(schema);
        }
        Ok(())
    }

    /// Declares the schema `urn` (already in the registry) an extension of resource type
    /// `resource_type_id`, replacing an existing declaration for the same URN.
    /// Unknown resource type or schema, or the type's own main schema: [`Error::InvalidValue`].
    pub fn add_extension(
        &mut self,
        resource_type_id: &str,
        urn: &str,
        required: bool,
    ) -> Result<(), Error> {
        let Some(schema) = self.schema(urn) else {
            return Err(Error::InvalidValue(format!("unknown schema '{urn}'")));
        };
        let id = schema.id.clone();
        let Some(rt) = self
            .resource_types
            .iter_mut()
            .find(|r| r.id.eq_ignore_ascii_case(resource_type_id))
        else {
            return Err(Error::InvalidValue(format!(
                "unknown resource type '{resource_type_id}'"
            )));
        };
        if rt.schema == id {
            return Err(Error::InvalidValue(format!(
                "'{urn}' is the main schema of '{}'",
                rt.id
            )));
        }
        match rt.schema_extensions.iter_mut().find(|e| e.schema == id) {
            Some(ext) => ext.required = required,
            None => rt.schema_extensions.push(SchemaExtension {
                schema: CiString::from(id.as_str()),
                required,
            }),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::attribute::{AttrType, Mutability};

    const CONTRACTOR: &str = "urn:example:params:scim:schemas:extension:contractor:2.0:User";

    fn contractor_json() -> String {
        serde_json::json!({
            "id": CONTRACTOR,
            "name": "Contractor",
            "attributes": [
                {"name": "contractEndDate", "type": "dateTime", "multiValued": false, "required": false},
                {"name": "sponsor", "type": "complex", "multiValued": false, "subAttributes": [
                    {"name": "value", "type": "string", "multiValued": false},
                    {"name": "displayName", "type": "string", "multiValued": false, "mutability": "readOnly"}
                ]}
            ]
        })
        .to_string()
    }

    #[test]
    fn load_and_attach_custom_extension() {
        let mut reg = SchemaRegistry::core();
        reg.load_schema_json(&contractor_json())
            .unwrap_or_else(|e| panic!("{e}"));
        reg.add_extension("User", CONTRACTOR, false)
            .unwrap_or_else(|e| panic!("{e}"));
        let user = reg
            .resource_schema("User")
            .unwrap_or_else(|| panic!("User"));
        assert_eq!(user.extensions.len(), 2);
        let path = AttrPath {
            urn: Some(CONTRACTOR.into()),
            name: "sponsor".into(),
            sub_attr: Some("DISPLAYNAME".into()),
        };
        assert_eq!(
            user.lookup(&path).map(|a| a.mutability),
            Some(Mutability::ReadOnly)
        );
        let end = user
            .top_level(None, "contractenddate")
            .map(|(_, a)| a.attr_type);
        assert_eq!(end, Some(AttrType::DateTime));
    }

    #[test]
    fn common_attributes_are_found() {
        let reg = SchemaRegistry::core();
        let user = reg
            .resource_schema("User")
            .unwrap_or_else(|| panic!("User"));
        assert!(user
            .lookup(&AttrPath::with_sub("meta", "lastModified"))
            .is_some());
        let qualified = AttrPath {
            urn: Some("urn:ietf:params:scim:schemas:core:2.0:User".into()),
            name: "id".into(),
            sub_attr: None,
        };
        assert!(user.lookup(&qualified).is_some());
        let wrong = AttrPath {
            urn: Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".into()),
            name: "id".into(),
            sub_attr: None,
        };
        assert!(user.lookup(&wrong).is_none());
    }

    #[test]
    fn rejects_invalid_schema_documents() {
        let mut reg = SchemaRegistry::core();
        let cases = [
            // duplicate names, case-insensitively
            r#"{"id":"urn:x:1","attributes":[{"name":"a","type":"string"},{"name":"A","type":"string"}]}"#,
            // complex without subAttributes
            r#"{"id":"urn:x:2","attributes":[{"name":"c","type":"complex"}]}"#,
            // simple with subAttributes
            r#"{"id":"urn:x:3","attributes":[{"name":"s","type":"string","subAttributes":[{"name":"v","type":"string"}]}]}"#,
            // unknown type / mutability / returned / uniqueness keyword
            r#"{"id":"urn:x:4","attributes":[{"name":"s","type":"text"}]}"#,
            r#"{"id":"urn:x:5","attributes":[{"name":"s","type":"string","mutability":"sometimes"}]}"#,
            r#"{"id":"urn:x:6","attributes":[{"name":"s","type":"string","returned":"maybe"}]}"#,
            r#"{"id":"urn:x:7","attributes":[{"name":"s","type":"string","uniqueness":"planet"}]}"#,
            // complex inside complex (RFC 7643 §2.3.8)
            r#"{"id":"urn:x:8","attributes":[{"name":"c","type":"complex","subAttributes":[
                {"name":"d","type":"complex","subAttributes":[{"name":"v","type":"string"}]}]}]}"#,
            // bad attribute name
            r#"{"id":"urn:x:9","attributes":[{"name":"1abc","type":"string"}]}"#,
            // not a URI
            r#"{"id":"contractor","attributes":[{"name":"a","type":"string"}]}"#,
        ];
        for case in cases {
            let err = reg
                .load_schema_json(case)
                .err()
                .unwrap_or_else(|| panic!("accepted: {case}"));
            assert!(matches!(err, Error::InvalidValue(_)), "{case}: {err:?}");
        }
        assert!(matches!(
            reg.load_schema_json("{not json"),
            Err(Error::InvalidSyntax(_))
        ));
        // Nothing of the failed documents was added.
        assert_eq!(reg.schemas().count(), 6);
    }

    #[test]
    fn loads_an_array_and_is_all_or_nothing() {
        let mut reg = SchemaRegistry::core();
        let ok = r#"[{"id":"urn:x:a","attributes":[{"name":"a","type":"string"}]},
                     {"id":"urn:x:b","attributes":[{"name":"b","type":"integer","multiValued":true}]}]"#;
        reg.load_schema_json(ok).unwrap_or_else(|e| panic!("{e}"));
        assert!(reg.schema("URN:X:B").is_some());
        let bad = r#"[{"id":"urn:x:c","attributes":[{"name":"a","type":"string"}]},
                      {"id":"urn:x:d","attributes":[]}]"#;
        assert!(reg.load_schema_json(bad).is_err());
        assert!(reg.schema("urn:x:c").is_none());
    }

    #[test]
    fn add_extension_errors() {
        let mut reg = SchemaRegistry::core();
        assert!(matches!(
            reg.add_extension("User", "urn:x:none", false),
            Err(Error::InvalidValue(_))
        ));
        assert!(matches!(
            reg.add_extension("Device", super::super::core::ENTERPRISE_USER, false),
            Err(Error::InvalidValue(_))
        ));
        assert!(matches!(
            reg.add_extension("User", super::super::core::USER, false),
            Err(Error::InvalidValue(_))
        ));
        reg.add_extension("user", super::super::core::ENTERPRISE_USER, true)
            .unwrap_or_else(|e| panic!("{e}"));
        let user = reg
            .resource_schema("User")
            .unwrap_or_else(|| panic!("User"));
        assert_eq!(user.extensions.len(), 1);
        assert!(user.extensions[0].1);
    }
}
