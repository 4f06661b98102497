//! Case-insensitive access to JSON objects.
//!
//! Clients may spell attribute names in any case (RFC 7643 §2.1); these helpers find a key
//! regardless of case without allocating.

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
}
