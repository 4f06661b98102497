//! Any input: `parse_patch_path` must not panic; what parses must print and parse back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_schema::filter::{parse_attr_path, parse_patch_path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_attr_path(text);
    let Ok(path) = parse_patch_path(text) else {
        return;
    };
    let printed = path.to_string();
    match parse_patch_path(&printed) {
        Ok(again) => assert_eq!(again, path, "round trip changed the path: {printed}"),
        Err(e) => panic!("printed path does not parse: {printed}: {e}"),
    }
});
