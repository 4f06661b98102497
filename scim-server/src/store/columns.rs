//! The indexed columns of a resource: what [`extract`] reads from a document for uniqueness and
//! filters (`user_name_folded`, `display_name(_folded)`, `external_id`, `active`, enterprise
//! `employeeNumber` and `manager.value`, and one `resource_values` row per email), and the case
//! folding applied to them and to the filter values compared with them ([`case_fold`]).

use diesel::RunQueryDsl;
use scim_schema::json::get_ci;
use serde_json::Value;

use super::sql::{Bind, Sql};
use super::{DbConnection, Doc, ResourceKind};
use crate::error::HubResult;

/// The enterprise extension URN, whose `employeeNumber` and `manager.value` have columns.
pub(crate) const ENTERPRISE_URN: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Case folding for case-insensitive columns (the same folding the search applies to filter
/// values): lower case.
pub(crate) fn case_fold(s: &str) -> String {
    s.to_lowercase()
}

/// The indexed columns extracted from a document (`resources` columns and `resource_values`
/// rows).
#[derive(Debug, Default, PartialEq)]
pub(super) struct Extracted {
    pub(super) user_name_folded: Option<String>,
    pub(super) display_name: Option<String>,
    pub(super) display_name_folded: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) active: Option<bool>,
    pub(super) employee_number_folded: Option<String>,
    pub(super) manager_value_folded: Option<String>,
    /// `(type_folded, value_folded)` of each email.
    pub(super) emails: Vec<(Option<String>, Option<String>)>,
}

pub(super) fn str_of<'a>(doc: &'a Doc, name: &str) -> Option<&'a str> {
    get_ci(doc, name).and_then(Value::as_str)
}

pub(super) fn extract(kind: ResourceKind, doc: &Doc) -> Extracted {
    let mut x = Extracted {
        display_name: str_of(doc, "displayName").map(str::to_string),
        display_name_folded: str_of(doc, "displayName").map(case_fold),
        external_id: str_of(doc, "externalId").map(str::to_string),
        ..Extracted::default()
    };
    if kind == ResourceKind::User {
        x.user_name_folded = str_of(doc, "userName").map(case_fold);
        x.active = get_ci(doc, "active").and_then(Value::as_bool);
        if let Some(Value::Array(emails)) = get_ci(doc, "emails") {
            for e in emails.iter().filter_map(Value::as_object) {
                // One row per element, so value paths see elements without type or value too.
                x.emails.push((
                    str_of(e, "type").map(case_fold),
                    str_of(e, "value").map(case_fold),
                ));
            }
        }
        if let Some(Value::Object(ent)) = get_ci(doc, ENTERPRISE_URN) {
            x.employee_number_folded = str_of(ent, "employeeNumber").map(case_fold);
            x.manager_value_folded = match get_ci(ent, "manager") {
                Some(Value::Object(m)) => str_of(m, "value").map(case_fold),
                _ => None,
            };
        }
    }
    x
}

/// Inserts the `resource_values` rows of a resource (its emails).
pub(super) fn insert_values(c: &mut DbConnection, id: &str, x: &Extracted) -> HubResult<()> {
    if let Some(q) = values_insert_sql(id, x) {
        q.execute(c)?;
    }
    Ok(())
}

/// The `INSERT` of [`insert_values`], `None` when there is nothing to insert.
pub(super) fn values_insert_sql(id: &str, x: &Extracted) -> Option<Sql<()>> {
    let rows = values_rows(id, x)?;
    let mut q = Sql::<()>::new(VALUES_INSERT);
    q.append(&rows);
    Some(q)
}

/// The head of an `INSERT` of `resource_values` rows, which [`values_rows`] follow.
pub(super) const VALUES_INSERT: &str =
    "INSERT INTO resource_values (resource_id, attr, type_folded, value_folded) VALUES ";

/// A resource's `resource_values` rows as `(…), (…)`, `None` when it has none.
pub(super) fn values_rows(id: &str, x: &Extracted) -> Option<Sql<()>> {
    if x.emails.is_empty() {
        return None;
    }
    let mut q = Sql::<()>::default();
    for (i, (t, v)) in x.emails.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push("(").text(id).push(", 'emails', ");
        q.bind(Bind::OptText(t.clone())).push(", ");
        q.bind(Bind::OptText(v.clone())).push(")");
    }
    Some(q)
}
