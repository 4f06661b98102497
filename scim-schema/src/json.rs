//! Case-insensitive access to JSON objects, and the one rule for a resource's primary email.
//!
//! Clients may spell attribute names in any case (RFC 7643 §2.1); these helpers find a key
//! regardless of case without allocating. [`primary_email`] lives here so the server (engine,
//! notifications) and every connector pick the same address from the same resource.

use serde_json::{Map, Value};

/// The key actually used in `obj` for `name`, compared case-insensitively.
pub fn find_key<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a String> {
    obj.keys().find(|k| k.eq_ignore_ascii_case(name))
}

/// The value under `name`, compared case-insensitively.
pub fn get_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    match obj.get(name) {
        Some(v) => Some(v),
        None => obj
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v),
    }
}

/// The value under `name`, mutably, compared case-insensitively.
pub fn get_ci_mut<'a>(obj: &'a mut Map<String, Value>, name: &str) -> Option<&'a mut Value> {
    let key = find_key(obj, name)?.clone();
    obj.get_mut(&key)
}

/// Removes `name` (case-insensitively) and returns its value.
pub fn remove_ci(obj: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = find_key(obj, name)?.clone();
    obj.shift_remove(&key)
}

/// The address to use for a resource with a multi-valued `emails` attribute (RFC 7643 §4.1.2):
/// the email marked `primary: true`, else the first email that has a `value`. Attribute names
/// are matched case-insensitively; entries without a string `value` are skipped. The `type`
/// (`work`, `home`, …) is not consulted: `primary` is the client's own statement of which
/// address is preferred, and without it the client's order is the only other signal.
pub fn primary_email(resource: &Map<String, Value>) -> Option<&str> {
    let emails = get_ci(resource, "emails")?.as_array()?;
    let primary = emails
        .iter()
        .filter(|e| is_primary(e))
        .find_map(email_value);
    primary.or_else(|| emails.iter().find_map(email_value))
}

fn email_value(email: &Value) -> Option<&str> {
    get_ci(email.as_object()?, "value")?.as_str()
}

fn is_primary(email: &Value) -> bool {
    email
        .as_object()
        .and_then(|o| get_ci(o, "primary"))
        .and_then(Value::as_bool)
        == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_keys_in_any_case() {
        let Value::Object(mut m) = json!({"userName": "bjensen", "Name": {"givenName": "B"}})
        else {
            panic!("object");
        };
        assert_eq!(get_ci(&m, "USERNAME"), Some(&json!("bjensen")));
        assert_eq!(find_key(&m, "name").map(String::as_str), Some("Name"));
        assert!(get_ci_mut(&mut m, "name").is_some());
        assert_eq!(remove_ci(&mut m, "username"), Some(json!("bjensen")));
        assert!(get_ci(&m, "userName").is_none());
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn primary_email_prefers_the_primary_entry() {
        let r = obj(json!({"emails": [
            {"value": "home@example.com", "type": "home"},
            {"value": "work@example.com", "type": "work", "primary": true}
        ]}));
        assert_eq!(primary_email(&r), Some("work@example.com"));
    }

    #[test]
    fn primary_email_falls_back_to_the_first_with_a_value() {
        let r = obj(json!({"Emails": [
            {"type": "other"},
            {"value": "first@example.com", "type": "home"},
            {"value": "second@example.com", "type": "work"}
        ]}));
        assert_eq!(primary_email(&r), Some("first@example.com"));
        // a primary entry without a value does not hide the others
        let r = obj(json!({"emails": [
            {"primary": true},
            {"value": "only@example.com", "primary": false}
        ]}));
        assert_eq!(primary_email(&r), Some("only@example.com"));
    }

    #[test]
    fn primary_email_is_none_without_addresses() {
        assert_eq!(primary_email(&obj(json!({"userName": "x"}))), None);
        assert_eq!(primary_email(&obj(json!({"emails": []}))), None);
        assert_eq!(primary_email(&obj(json!({"emails": "a@b"}))), None);
        assert_eq!(primary_email(&obj(json!({"emails": [{"value": 7}]}))), None);
    }
}
