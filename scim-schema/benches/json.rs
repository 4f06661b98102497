//! Request body parsing: `json::from_str_unique` (refuses a member named twice) against
//! `serde_json::from_str` on a realistic create body (Entra-sized User with the enterprise
//! extension) and a 100-operation Bulk body.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use scim_schema::json::from_str_unique;
use serde_json::{json, Value};

fn user(i: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": format!("ext-{i}"), "userName": format!("user{i}@example.com"), "active": true,
        "displayName": "Babs Jensen", "title": "Tour Guide", "preferredLanguage": "en-US",
        "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara"},
        "emails": [{"value": format!("user{i}@example.com"), "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "home"}],
        "phoneNumbers": [{"value": "555-555-5555", "type": "work"}],
        "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood", "postalCode": "91608", "country": "US", "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984", "costCenter": "4130", "organization": "Universal Studios",
            "division": "Theme Park", "department": "Tour Operations", "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
        }
    })
}

fn bench(c: &mut Criterion) {
    let create = user(1).to_string();
    let ops: Vec<Value> = (0..100)
        .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": i.to_string(), "data": user(i)}))
        .collect();
    let bulk = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops}).to_string();
    for (name, text) in [("create body", &create), ("bulk body (100 users)", &bulk)] {
        c.bench_function(&format!("serde_json::from_str {name}"), |b| {
            b.iter(|| serde_json::from_str::<Value>(black_box(text)).unwrap())
        });
        c.bench_function(&format!("from_str_unique {name}"), |b| {
            b.iter(|| from_str_unique(black_box(text)).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
