//! Any input: `parse_patch_path` must not panic; what parses must print and parse back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_schema::filter::{parse_attr_path, parse_patch_path, MAX_INPUT_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_attr_path(text);
    let Ok(path) = parse_patch_path(text) else {
        return;
    };
    let printed = path.to_string();
    // The printer escapes control characters (`\u007f`), so a path near the input bound can print
    // longer than the bound: the round trip is checked for printed forms the parser accepts.
    if printed.len() > MAX_INPUT_LEN {
        return;
    }
    match parse_patch_path(&printed) {
        Ok(again) => assert_eq!(again, path, "round trip changed the path: {printed}"),
        Err(e) => panic!("printed path does not parse: {printed}: {e}"),
    }
});
