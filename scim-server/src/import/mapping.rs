//! The mapping from roster columns to SCIM attributes, and the User document one row makes.
//!
//! A column's target is a SCIM attribute path: `userName`, `name.givenName`,
//! `emails[type eq "work"].value`, `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:
//! department`, or an attribute of a custom extension by its URN. The target `manager` names the
//! user's manager by employee number or email (`manager_by`); the import resolves it to the
//! manager's id. Without a mapping file every column's header is its target.

use std::collections::BTreeMap;
use std::path::Path;

use scim_schema::schema::core::{ENTERPRISE_USER, USER};
use scim_schema::schema::{AttrType, ResourceSchema};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::ImportError;

/// How the `manager` column names the manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum ManagerBy {
    /// The manager's enterprise `employeeNumber`.
    #[default]
    #[serde(rename = "employeeNumber")]
    EmployeeNumber,
    /// One of the manager's `emails` (case-insensitive).
    #[serde(rename = "email")]
    Email,
}

/// What a column feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Attr(String),
    Manager,
    Ignore,
}

/// The mapping file (TOML).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    #[serde(default)]
    pub manager_by: ManagerBy,
    /// Column header → attribute path (`""` ignores the column).
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

/// The mapping as applied to one file's header.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    pub file: Option<MappingFile>,
}

impl Mapping {
    pub fn load(path: &Path) -> Result<Mapping, ImportError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ImportError::Input(format!("cannot read {}: {e}", path.display())))?;
        let file: MappingFile = toml::from_str(&text)
            .map_err(|e| ImportError::Input(format!("{}: {e}", path.display())))?;
        Ok(Mapping { file: Some(file) })
    }

    pub fn manager_by(&self) -> ManagerBy {
        self.file.as_ref().map(|f| f.manager_by).unwrap_or_default()
    }

    /// The target of each column of `header`. With a mapping file, unlisted columns are ignored.
    pub fn targets(&self, header: &[String]) -> Result<Vec<Target>, ImportError> {
        let target = |path: &str| {
            let p = path.trim();
            if p.is_empty() {
                Target::Ignore
            } else if p.eq_ignore_ascii_case("manager") {
                Target::Manager
            } else {
                Target::Attr(p.to_string())
            }
        };
        let targets: Vec<Target> = header
            .iter()
            .map(|h| match &self.file {
                None => target(h),
                Some(f) => f
                    .columns
                    .iter()
                    .find(|(k, _)| k.trim() == h.trim())
                    .map(|(_, v)| target(v))
                    .unwrap_or(Target::Ignore),
            })
            .collect();
        if let Some(f) = &self.file {
            for k in f.columns.keys() {
                if !header.iter().any(|h| h.trim() == k.trim()) {
                    return Err(ImportError::Input(format!(
                        "the mapping names column {k:?}, which the file's header does not have"
                    )));
                }
            }
        }
        for t in &targets {
            if let Target::Attr(p) = t {
                split_path(p)?;
            }
        }
        Ok(targets)
    }
}

/// A parsed attribute path: the extension URN (None for core), the attribute, the value filter
/// (`type eq "work"`) and the sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path3 {
    pub urn: Option<String>,
    pub attr: String,
    pub filter: Option<(String, String)>,
    pub sub: Option<String>,
}

/// Splits `path` (see the module docs).
pub fn split_path(path: &str) -> Result<Path3, ImportError> {
    let bad = || {
        ImportError::Input(format!(
            "{path:?} is not an attribute path this import maps"
        ))
    };
    let (urn, rest) = if path.to_ascii_lowercase().starts_with("urn:") {
        // The attribute follows the URN's last colon (outside any filter).
        let cut = path.split('[').next().unwrap_or(path);
        let i = cut.rfind(':').ok_or_else(bad)?;
        let (u, r) = (&path[..i], &path[i + 1..]);
        let u = if u.eq_ignore_ascii_case(USER) {
            None
        } else {
            Some(u.to_string())
        };
        (u, r)
    } else {
        (None, path)
    };
    let (head, sub) = match rest.find(']') {
        Some(close) => {
            let (a, b) = rest.split_at(close + 1);
            match b.strip_prefix('.') {
                Some(s) => (a, Some(s.to_string())),
                None if b.is_empty() => (a, None),
                None => return Err(bad()),
            }
        }
        None => match rest.split_once('.') {
            Some((a, s)) => (a, Some(s.to_string())),
            None => (rest, None),
        },
    };
    let (attr, filter) = match head.split_once('[') {
        Some((a, f)) => {
            let f = f.strip_suffix(']').ok_or_else(bad)?;
            let mut parts = f.splitn(3, ' ');
            let (k, op, v) = (parts.next(), parts.next(), parts.next());
            match (k, op, v) {
                (Some(k), Some(op), Some(v)) if op.eq_ignore_ascii_case("eq") => {
                    let v = v.trim().trim_matches('"').to_string();
                    (a.to_string(), Some((k.to_string(), v)))
                }
                _ => return Err(bad()),
            }
        }
        None => (head.to_string(), None),
    };
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
    };
    if !ident(&attr) || sub.as_deref().is_some_and(|s| !ident(s)) {
        return Err(bad());
    }
    if filter.is_some() && sub.is_none() {
        return Err(bad());
    }
    Ok(Path3 {
        urn,
        attr,
        filter,
        sub,
    })
}

/// A cell's JSON value: `active` is a boolean, everything else a string.
fn cell_value(p: &Path3, ty: AttrType, name: &str, cell: &str) -> Result<Value, String> {
    if p.urn.is_none() && p.attr.eq_ignore_ascii_case("emails") && p.sub.as_deref() == Some("value")
    {
        let ok = cell.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        }) && !cell.contains(char::is_whitespace)
            && cell.matches('@').count() == 1;
        if !ok {
            return Err(format!("invalid email address {cell:?}"));
        }
    }
    typed(ty, name, cell)
}

/// The cell as a value of the attribute's schema type: `boolean` (`true`/`yes`/`1`,
/// `false`/`no`/`0`), `integer`, `decimal`; every other type stays text (the service validates
/// it as for any SCIM write).
fn typed(ty: AttrType, name: &str, cell: &str) -> Result<Value, String> {
    match ty {
        AttrType::Boolean => match cell.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("{name} must be true or false, not {cell:?}")),
        },
        AttrType::Integer => cell
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{name} must be an integer, not {cell:?}")),
        AttrType::Decimal => cell
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{name} must be a decimal number, not {cell:?}")),
        _ => Ok(Value::String(cell.to_string())),
    }
}

/// Sets `p` to `v` in `doc`.
pub fn set(doc: &mut Map<String, Value>, p: &Path3, v: Value) {
    let target = match &p.urn {
        Some(u) => {
            let e = doc
                .entry(u.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            match e {
                Value::Object(m) => m,
                _ => return,
            }
        }
        None => doc,
    };
    match (&p.filter, &p.sub) {
        (Some((k, fv)), Some(sub)) => {
            let arr = target
                .entry(p.attr.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !arr.is_array() {
                *arr = Value::Array(Vec::new());
            }
            let Value::Array(items) = arr else { return };
            let pos = items.iter().position(|i| {
                i.get(k.as_str())
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.eq_ignore_ascii_case(fv))
            });
            let item = match pos {
                Some(i) => &mut items[i],
                None => {
                    let mut m = Map::new();
                    m.insert(k.clone(), Value::String(fv.clone()));
                    items.push(Value::Object(m));
                    let last = items.len() - 1;
                    &mut items[last]
                }
            };
            if let Value::Object(m) = item {
                m.insert(sub.clone(), v);
            }
        }
        (_, Some(sub)) => {
            let e = target
                .entry(p.attr.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            if let Value::Object(m) = e {
                m.insert(sub.clone(), v);
            }
        }
        (_, None) => {
            target.insert(p.attr.clone(), v);
        }
    }
}

/// A column resolved once per file: its target, its parsed path and its schema type.
#[derive(Debug, Clone)]
pub struct Column {
    pub target: Target,
    path: Option<Path3>,
    ty: AttrType,
}

/// Resolves `targets` against the User schema (core, enterprise and the configured extensions):
/// each attribute column gets its parsed path and the type its cells are converted to. A path no
/// schema defines stays text (validation refuses it in strict mode).
pub fn columns(targets: &[Target], schema: &ResourceSchema) -> Result<Vec<Column>, ImportError> {
    targets
        .iter()
        .map(|t| {
            let Target::Attr(path) = t else {
                return Ok(Column {
                    target: t.clone(),
                    path: None,
                    ty: AttrType::String,
                });
            };
            let p = split_path(path)?;
            let ty = schema
                .top_level(p.urn.as_deref(), &p.attr)
                .and_then(|(_, a)| match &p.sub {
                    Some(sub) => a.sub_attribute(sub),
                    None => Some(a),
                })
                .map_or(AttrType::String, |a| a.attr_type);
            Ok(Column {
                target: t.clone(),
                path: Some(p),
                ty,
            })
        })
        .collect()
}

/// The attributes one row sets (no `schemas`), with the manager cell apart; empty cells set
/// nothing. An invalid cell (a bad email, a cell that does not parse as its attribute's type)
/// refuses the whole row.
pub fn row_doc(
    columns: &[Column],
    record: &csv::StringRecord,
) -> Result<(Map<String, Value>, Option<String>), String> {
    let mut doc = Map::new();
    let mut manager = None;
    for (col, cell) in columns.iter().zip(record.iter()) {
        let cell = cell.trim();
        if cell.is_empty() {
            continue;
        }
        match (&col.target, &col.path) {
            (Target::Manager, _) => manager = Some(cell.to_string()),
            (Target::Attr(name), Some(p)) => {
                set(&mut doc, p, cell_value(p, col.ty, name, cell)?);
            }
            _ => {}
        }
    }
    Ok((doc, manager))
}

/// Sets the enterprise `manager.value`.
pub fn set_manager(doc: &mut Map<String, Value>, id: &str) {
    let p = Path3 {
        urn: Some(ENTERPRISE_USER.to_string()),
        attr: "manager".into(),
        filter: None,
        sub: Some("value".into()),
    };
    set(doc, &p, Value::String(id.to_string()));
}

/// `existing` with `row` laid over it: objects merge, a multi-valued item with the same `type`
/// is merged, other values replace. Keys match case-insensitively.
pub fn overlay(existing: &Map<String, Value>, row: &Map<String, Value>) -> Map<String, Value> {
    let mut out = existing.clone();
    for (k, v) in row {
        let key = out
            .keys()
            .find(|e| e.eq_ignore_ascii_case(k))
            .cloned()
            .unwrap_or_else(|| k.clone());
        let merged = match (out.get(&key), v) {
            (Some(Value::Object(a)), Value::Object(b)) => Value::Object(overlay(a, b)),
            (Some(Value::Array(a)), Value::Array(b)) => {
                let mut items = a.clone();
                for item in b {
                    let ty = |i: &Value| {
                        i.get("type")
                            .and_then(Value::as_str)
                            .map(str::to_ascii_lowercase)
                    };
                    match items
                        .iter()
                        .position(|i| ty(i).is_some() && ty(i) == ty(item))
                    {
                        Some(pos) => {
                            if let (Value::Object(x), Value::Object(y)) = (&items[pos], item) {
                                items[pos] = Value::Object(overlay(x, y));
                            }
                        }
                        None => items.push(item.clone()),
                    }
                }
                Value::Array(items)
            }
            _ => v.clone(),
        };
        out.insert(key, merged);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_split_core_filtered_and_extension() {
        let p = split_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.attr, "emails");
        assert_eq!(p.filter, Some(("type".into(), "work".into())));
        assert_eq!(p.sub.as_deref(), Some("value"));
        let p = split_path(&format!("{ENTERPRISE_USER}:department")).unwrap();
        assert_eq!(p.urn.as_deref(), Some(ENTERPRISE_USER));
        assert_eq!(p.attr, "department");
        let p = split_path(&format!("{USER}:name.givenName")).unwrap();
        assert_eq!(
            (p.urn, p.attr, p.sub),
            (None, "name".into(), Some("givenName".into()))
        );
        assert!(split_path("emails[type eq \"work\"]").is_err());
        assert!(split_path("a b").is_err());
    }

    #[test]
    fn row_builds_a_document_and_refuses_a_bad_email() {
        let targets = Mapping::default()
            .targets(&[
                "userName".into(),
                r#"emails[type eq "work"].value"#.into(),
                "manager".into(),
                "active".into(),
            ])
            .unwrap();
        let targets = columns(&targets, &user_schema(false)).unwrap();
        let rec = csv::StringRecord::from(vec!["ada", "ada@example.com", "E1", "false"]);
        let (doc, mgr) = row_doc(&targets, &rec).unwrap();
        assert_eq!(
            Value::Object(doc),
            json!({"userName": "ada", "emails": [{"type": "work", "value": "ada@example.com"}],
                   "active": false})
        );
        assert_eq!(mgr.as_deref(), Some("E1"));
        let rec = csv::StringRecord::from(vec!["ada", "not-an-email", "", "true"]);
        assert!(row_doc(&targets, &rec)
            .unwrap_err()
            .contains("invalid email"));
    }

    const EXT: &str = "urn:example:acme:2.0:User";

    /// The User schema, with a custom extension of typed attributes when `ext`.
    fn user_schema(ext: bool) -> ResourceSchema {
        let mut registry = crate::service::schemas::registry();
        if ext {
            crate::service::schemas::add_extension_json(
                &mut registry,
                &json!({
                    "id": EXT,
                    "name": "Acme",
                    "attributes": [
                        {"name": "level", "type": "integer"},
                        {"name": "remote", "type": "boolean"},
                        {"name": "fte", "type": "decimal"},
                        {"name": "costCenter", "type": "string"}
                    ]
                })
                .to_string(),
                "User",
                false,
            )
            .unwrap();
        }
        crate::service::Schemas::new(registry, false)
            .unwrap()
            .of(crate::store::ResourceKind::User)
            .clone()
    }

    #[test]
    fn extension_cells_take_their_schema_type_or_refuse_the_row() {
        let header: Vec<String> = ["userName", "level", "remote", "fte", "costCenter"]
            .iter()
            .enumerate()
            .map(|(i, h)| {
                if i == 0 {
                    h.to_string()
                } else {
                    format!("{EXT}:{h}")
                }
            })
            .collect();
        let cols = columns(
            &Mapping::default().targets(&header).unwrap(),
            &user_schema(true),
        )
        .unwrap();
        let rec = csv::StringRecord::from(vec!["ada", "7", "yes", "0.5", "42"]);
        let (doc, _) = row_doc(&cols, &rec).unwrap();
        assert_eq!(
            Value::Object(doc),
            json!({"userName": "ada",
                   EXT: {"level": 7, "remote": true, "fte": 0.5, "costCenter": "42"}})
        );
        for (cells, why) in [
            (
                vec!["ada", "seven", "", "", ""],
                "level must be an integer, not \"seven\"",
            ),
            (vec!["ada", "1.5", "", "", ""], "level must be an integer"),
            (
                vec!["ada", "", "maybe", "", ""],
                "remote must be true or false, not \"maybe\"",
            ),
            (
                vec!["ada", "", "", "half", ""],
                "fte must be a decimal number, not \"half\"",
            ),
        ] {
            let err = row_doc(&cols, &csv::StringRecord::from(cells)).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn overlay_keeps_other_values_and_merges_typed_items() {
        let existing = json!({"userName": "ada", "emails": [{"type": "home", "value": "h@x.io"},
            {"type": "work", "value": "old@x.io", "primary": true}], "title": "Eng"});
        let row = json!({"emails": [{"type": "work", "value": "new@x.io"}]});
        let out = overlay(existing.as_object().unwrap(), row.as_object().unwrap());
        assert_eq!(
            Value::Object(out),
            json!({"userName": "ada", "emails": [{"type": "home", "value": "h@x.io"},
                {"type": "work", "value": "new@x.io", "primary": true}], "title": "Eng"})
        );
    }
}
