//! Attribute paths in a policy, checked against the User schemas (core, enterprise) and the
//! extensions the policy declares: the settings' attributes, connectors' `account_key` and
//! `attributes`, the attributes `match` filters name, and the attributes a `[[source]]` owns.

use std::ops::Range;

use scim_schema::filter::{fold, parse_filter, AttrPath, CompValue, CompareOp, Filter, FilterFold};

use super::diagnostics::Diags;
use super::raw::S;

/// Checks attribute paths against the User schemas and the declared extensions.
pub(super) struct AttrChecker {
    schema: scim_schema::schema::ResourceSchema,
    enterprise: Option<scim_schema::schema::Schema>,
    extensions: Vec<String>,
}

impl AttrChecker {
    pub(super) fn new(extensions: &[String]) -> Self {
        let registry = scim_schema::schema::SchemaRegistry::core();
        let schema = registry
            .resource_schema("User")
            .expect("the core registry defines User");
        let enterprise = registry
            .schema(scim_schema::schema::core::ENTERPRISE_USER)
            .cloned();
        AttrChecker {
            schema,
            enterprise,
            extensions: extensions.to_vec(),
        }
    }

    /// `None` when `path` names a User attribute (or one under a declared extension).
    pub(super) fn check(&self, path: &AttrPath) -> Option<String> {
        let urn = path.urn.as_ref().map(|u| u.as_str());
        if let Some(urn) = urn {
            if self.extensions.iter().any(|e| e.eq_ignore_ascii_case(urn)) {
                return None;
            }
        }
        let ent = self.enterprise.as_ref();
        let is_ent = |u: &str| ent.is_some_and(|e| e.id.eq_str(u));
        let def = match urn {
            Some(u) if is_ent(u) => ent.and_then(|e| e.attribute(path.name.as_str())),
            Some(u) if self.schema.schema(u).is_none() => {
                return Some(format!(
                    "unknown schema {u:?}: declare custom extensions in [settings] extensions"
                ))
            }
            _ => self
                .schema
                .top_level(urn, path.name.as_str())
                .map(|(_, d)| d)
                .or_else(|| {
                    urn.is_none()
                        .then(|| ent.and_then(|e| e.attribute(path.name.as_str())))
                        .flatten()
                }),
        };
        match def {
            None => Some(format!("unknown user attribute {:?}", path.name.as_str())),
            Some(def) => match &path.sub_attr {
                Some(sub)
                    if !def.sub_attributes.is_empty()
                        && !def
                            .sub_attributes
                            .iter()
                            .any(|s| s.name.eq_str(sub.as_str())) =>
                {
                    Some(format!(
                        "unknown sub-attribute {:?} of {:?}",
                        sub.as_str(),
                        path.name.as_str()
                    ))
                }
                _ => None,
            },
        }
    }

    /// Checks a path written as text (`department`, `urn:…:costCenter`).
    pub(super) fn check_text(&self, text: &str) -> Option<String> {
        match scim_schema::filter::parse_attr_path(text) {
            Ok(p) => self.check(&p),
            Err(e) => Some(e.to_string()),
        }
    }

    /// Checks an attribute a `[[source]]` owns and resolves it to where it lives in a stored
    /// document: core attributes without a URN, extension attributes under their URN (an
    /// enterprise attribute written without its URN gets it, as filters resolve it). Refuses what
    /// no client can own: read-only attributes (`id`, `meta`, `groups`), `externalId` (each client
    /// keeps its own) and a sub-attribute of a multi-valued attribute (ownership is per value
    /// there, which the policy cannot name: own the whole attribute).
    pub(super) fn resolve_owned(&self, text: &str) -> Result<AttrPath, String> {
        if let Some(msg) = self.check_text(text) {
            return Err(msg);
        }
        let mut path = scim_schema::filter::parse_attr_path(text).map_err(|e| e.to_string())?;
        let name = path.name.as_str().to_string();
        let core = scim_schema::schema::core::USER;
        let enterprise = self.enterprise.as_ref();
        let def = match path.urn.as_ref().map(|u| u.as_str().to_string()) {
            Some(u) if u.eq_ignore_ascii_case(core) => {
                path.urn = None;
                self.schema.main_attribute(&name)
            }
            Some(u) if enterprise.is_some_and(|e| e.id.eq_str(&u)) => {
                enterprise.and_then(|e| e.attribute(&name))
            }
            // A declared custom extension: its attributes are not known here.
            Some(_) => None,
            None => match self.schema.main_attribute(&name) {
                Some(def) => Some(def),
                None => {
                    let e = enterprise.ok_or_else(|| format!("unknown user attribute {name:?}"))?;
                    path.urn = Some(scim_schema::name::CiString::new(e.id.as_str()));
                    e.attribute(&name)
                }
            },
        };
        if name.eq_ignore_ascii_case("externalId") && path.urn.is_none() {
            return Err("externalId cannot be owned: each client keeps its own".into());
        }
        if let Some(def) = def {
            if def.mutability == scim_schema::schema::Mutability::ReadOnly {
                return Err(format!(
                    "{name} is read-only (the server sets it), so no client can own it"
                ));
            }
            if def.multi_valued && path.sub_attr.is_some() {
                return Err(format!(
                    "{name} is multi-valued: own the whole attribute ({name}), not one of its \
                     sub-attributes"
                ));
            }
        }
        Ok(path)
    }
}

/// Whether one owned path covers the other (the same attribute, or an attribute and one of its
/// sub-attributes): two sources may not own overlapping paths.
pub(super) fn owned_paths_overlap(a: &AttrPath, b: &AttrPath) -> bool {
    let same_urn = match (&a.urn, &b.urn) {
        (None, None) => true,
        (Some(x), Some(y)) => x.eq_str(y.as_str()),
        _ => false,
    };
    same_urn
        && a.name.eq_str(b.name.as_str())
        && match (&a.sub_attr, &b.sub_attr) {
            (Some(x), Some(y)) => x.eq_str(y.as_str()),
            _ => true,
        }
}

/// Collects attribute paths of a filter.
struct Paths(Vec<AttrPath>);

impl FilterFold for Paths {
    type Output = ();
    fn compare(&mut self, scope: Option<&AttrPath>, path: &AttrPath, _: CompareOp, _: &CompValue) {
        if scope.is_none() {
            self.0.push(path.clone());
        }
    }
    fn present(&mut self, scope: Option<&AttrPath>, path: &AttrPath) {
        if scope.is_none() {
            self.0.push(path.clone());
        }
    }
    fn and(&mut self, _: (), _: ()) {}
    fn or(&mut self, _: (), _: ()) {}
    fn not(&mut self, _: ()) {}
    fn value_path(&mut self, path: &AttrPath, _: ()) {
        self.0.push(path.clone());
    }
}

/// The span of a TOML string's content (after the opening quote(s)).
fn content_start(text: &str, span: &Range<usize>) -> usize {
    let s = &text[span.start.min(text.len())..span.end.min(text.len())];
    let quote = if s.starts_with("'''") || s.starts_with("\"\"\"") {
        3
    } else if s.starts_with('\'') || s.starts_with('"') {
        1
    } else {
        0
    };
    span.start + quote
}

/// Parses a `match` expression and checks every attribute it names; reports a parse error at the
/// byte inside the expression where the parser stopped.
pub(super) fn check_filter(
    d: &mut Diags<'_>,
    attrs: &AttrChecker,
    expr: &S<String>,
    what: &str,
) -> Option<Filter> {
    let text = d.text;
    match parse_filter(expr.get_ref()) {
        Ok(f) => {
            let mut paths = Paths(Vec::new());
            fold(&mut paths, &f);
            let mut ok = true;
            for p in &paths.0 {
                if let Some(msg) = attrs.check(p) {
                    d.at(expr.span(), format!("{what}: {msg}"));
                    ok = false;
                }
            }
            ok.then_some(f)
        }
        Err(e) => {
            let msg = e.to_string();
            // Point at the byte inside the expression where the parser stopped.
            let byte = msg
                .rsplit_once("at byte ")
                .and_then(|(_, r)| {
                    r.split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|n| n.parse::<usize>().ok())
                })
                .unwrap_or(0);
            let start = content_start(text, &expr.span()) + byte;
            d.at(start..start, format!("{what}: {msg}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> AttrPath {
        scim_schema::filter::parse_attr_path(text).expect("a path")
    }

    #[test]
    fn owned_paths_overlap_on_the_attribute_or_one_of_its_sub_attributes() {
        let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        for (a, b, overlap) in [
            ("name", "name", true),
            ("name", "NAME", true),
            ("name", "name.givenName", true),
            ("name.givenName", "name", true),
            ("name.givenName", "name.familyName", false),
            ("title", "name", false),
            (
                &format!("{ent}:department") as &str,
                &format!("{ent}:Department"),
                true,
            ),
            // Resolved paths carry the URN of extension attributes only: a core path and an
            // extension path never meet.
            ("department", &format!("{ent}:department"), false),
        ] {
            assert_eq!(
                owned_paths_overlap(&path(a), &path(b)),
                overlap,
                "{a} / {b}"
            );
        }
    }
}
