//! Any input: `parse_filter` must not panic; what parses must print to text that parses back
//! to the same AST, and evaluating it must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_schema::filter::{matches, parse_filter, MAX_INPUT_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(filter) = parse_filter(text) else {
        return;
    };
    let printed = filter.to_string();
    // Escaped control characters can make the printed form longer than the input bound; the
    // round trip is checked for printed forms the parser accepts.
    if printed.len() <= MAX_INPUT_LEN {
        match parse_filter(&printed) {
            Ok(again) => assert_eq!(again, filter, "round trip changed the AST: {printed}"),
            Err(e) => panic!("printed filter does not parse: {printed}: {e}"),
        }
    }
    let resource = serde_json::json!({
        "userName": "bjensen", "active": true, "age": 42, "title": "",
        "emails": [{"value": "b@example.com", "type": "work"}, {"value": "x@y.org"}],
        "meta": {"lastModified": "2011-05-13T04:42:34Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "1"}
    });
    if let Some(obj) = resource.as_object() {
        let _ = matches(&filter, obj, None);
    }
});
