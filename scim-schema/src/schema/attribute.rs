//! Attribute characteristics (RFC 7643 §2.2, §7) in the RFC's JSON representation.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::name::{eq_ci, CiString};

/// RFC 7643 §2.3 data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Binary,
    Complex,
}

/// RFC 7643 §7 `mutability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mutability {
    ReadOnly,
    #[default]
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// RFC 7643 §7 `returned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Returned {
    Always,
    Never,
    #[default]
    Default,
    Request,
}

/// RFC 7643 §7 `uniqueness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Uniqueness {
    #[default]
    None,
    Server,
    Global,
}

/// One attribute definition (RFC 7643 §7 "attributes"), recursively for sub-attributes.
/// Defaults follow RFC 7643 §2.2 when a characteristic is omitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributeDef {
    pub name: CiString,
    #[serde(rename = "type")]
    pub attr_type: AttrType,
    #[serde(default)]
    pub multi_valued: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canonical_values: Vec<String>,
    #[serde(default)]
    pub case_exact: bool,
    #[serde(default)]
    pub mutability: Mutability,
    #[serde(default)]
    pub returned: Returned,
    #[serde(default)]
    pub uniqueness: Uniqueness,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_attributes: Vec<AttributeDef>,
}

impl AttributeDef {
    /// Finds a sub-attribute by name, case-insensitively.
    pub fn sub_attribute(&self, name: &str) -> Option<&AttributeDef> {
        self.sub_attributes.iter().find(|a| a.name.eq_str(name))
    }

    /// Whether this is a multi-valued complex attribute (`emails`, `members`, ...), whose values may
    /// carry a `primary` flag and a `value` sub-attribute (RFC 7643 §2.4).
    pub fn is_multi_valued_complex(&self) -> bool {
        self.multi_valued && self.attr_type == AttrType::Complex
    }

    /// Checks this definition against RFC 7643 §2 and §7: the name is an ATTRNAME (or `$ref`),
    /// a complex attribute has sub-attributes and a simple one has none, sub-attribute names are
    /// unique case-insensitively, and (unless `allow_nested_complex`) a sub-attribute is not
    /// itself complex (§2.3.8). `path` names the parent for error messages.
    fn check(&self, path: &str, depth: usize, allow_nested_complex: bool) -> Result<(), Error> {
        let here = if path.is_empty() {
            self.name.to_string()
        } else {
            format!("{path}.{}", self.name)
        };
        if !is_attr_name(self.name.as_str()) {
            return Err(Error::InvalidValue(format!(
                "'{here}' is not a valid attribute name (RFC 7643 §2.1)"
            )));
        }
        match self.attr_type {
            AttrType::Complex => {
                if depth > 0 && !allow_nested_complex {
                    return Err(Error::InvalidValue(format!(
                        "'{here}': a complex attribute must not contain a complex sub-attribute (RFC 7643 §2.3.8)"
                    )));
                }
                if self.sub_attributes.is_empty() {
                    return Err(Error::InvalidValue(format!(
                        "complex attribute '{here}' has no subAttributes"
                    )));
                }
                check_unique_names(&self.sub_attributes, &here)?;
                for sub in &self.sub_attributes {
                    sub.check(&here, depth + 1, allow_nested_complex)?;
                }
            }
            _ if !self.sub_attributes.is_empty() => {
                return Err(Error::InvalidValue(format!(
                    "attribute '{here}' is not complex and must not have subAttributes"
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

/// RFC 7643 §2.1 ATTRNAME = ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA; `$ref` is
/// the one reserved exception (§2.3.7).
fn is_attr_name(name: &str) -> bool {
    let mut chars = name.chars();
    name == "$ref"
        || (chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
}

fn check_unique_names(attrs: &[AttributeDef], parent: &str) -> Result<(), Error> {
    for (i, a) in attrs.iter().enumerate() {
        if attrs[..i]
            .iter()
            .any(|b| eq_ci(a.name.as_str(), b.name.as_str()))
        {
            let at = if parent.is_empty() {
                String::new()
            } else {
                format!(" in '{parent}'")
            };
            return Err(Error::InvalidValue(format!(
                "attribute '{}' is defined twice{at} (names are case-insensitive)",
                a.name
            )));
        }
    }
    Ok(())
}

/// A schema resource (RFC 7643 §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    pub id: CiString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub attributes: Vec<AttributeDef>,
}

impl Schema {
    /// Finds a top-level attribute by name, case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&AttributeDef> {
        self.attributes.iter().find(|a| a.name.eq_str(name))
    }

    /// Checks the definition (RFC 7643 §7): a non-empty URI id without spaces, well-formed and
    /// case-insensitively unique attributes, no complex attribute inside a complex one unless
    /// `allow_nested_complex` (only the §8.7.2 "Schema" schema itself needs that). Errors are
    /// [`Error::InvalidValue`] naming the offending attribute.
    pub fn check_definition(&self, allow_nested_complex: bool) -> Result<(), Error> {
        let id = self.id.as_str();
        if id.is_empty() || !id.contains(':') || id.chars().any(char::is_whitespace) {
            return Err(Error::InvalidValue(format!(
                "schema id '{id}' is not a URI"
            )));
        }
        if self.attributes.is_empty() {
            return Err(Error::InvalidValue(format!(
                "schema '{id}' defines no attributes"
            )));
        }
        check_unique_names(&self.attributes, "")?;
        for a in &self.attributes {
            a.check("", 0, allow_nested_complex)?;
        }
        Ok(())
    }
}

/// `schemaExtensions` entry of a resource type (RFC 7643 §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaExtension {
    pub schema: CiString,
    pub required: bool,
}

/// A resource type (RFC 7643 §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceType {
    pub id: String,
    pub name: String,
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub schema: CiString,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema_extensions: Vec<SchemaExtension>,
}
