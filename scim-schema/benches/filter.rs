//! Parsing and evaluating a realistic 5-clause filter against a realistic User.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use scim_schema::filter::{matches, parse_filter};
use scim_schema::schema::SchemaRegistry;
use serde_json::json;

const FILTER: &str = r#"userName sw "j" and active eq true and (emails[type eq "work" and value co "@example.com"] or title pr) and meta.lastModified gt "2024-01-01T00:00:00Z""#;

fn bench(c: &mut Criterion) {
    let rs = SchemaRegistry::core().resource_schema("User").unwrap();
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646", "externalId": "jdoe",
        "userName": "jdoe@example.com", "active": true, "displayName": "Jane Doe", "title": "Engineer",
        "name": {"formatted": "Ms. Jane Doe", "familyName": "Doe", "givenName": "Jane"},
        "emails": [
            {"value": "jane.home@example.org", "type": "home"},
            {"value": "jdoe@example.com", "type": "work", "primary": true}
        ],
        "phoneNumbers": [{"value": "555-555-5555", "type": "work"}],
        "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood", "primary": true}],
        "groups": [{"value": "e9e30dba-f08f-4109-8486-d5c6a331660a", "display": "Tour Guides"}],
        "meta": {"resourceType": "User", "created": "2023-01-23T04:56:22Z", "lastModified": "2024-05-13T04:42:34Z",
                 "version": "W/\"a330bc54f0671c9\"", "location": "https://example.com/v2/Users/2819c223"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "department": "Tour Operations"}
    });
    let user = user.as_object().unwrap().clone();
    let filter = parse_filter(FILTER).unwrap();
    assert!(matches(&filter, &user, Some(&rs)));
    assert!(matches(&filter, &user, None));

    c.bench_function("parse_filter (5 clauses)", |b| {
        b.iter(|| parse_filter(black_box(FILTER)).unwrap())
    });
    c.bench_function("matches (5 clauses, with schema)", |b| {
        b.iter(|| matches(black_box(&filter), black_box(&user), Some(&rs)))
    });
    c.bench_function("matches (5 clauses, no schema)", |b| {
        b.iter(|| matches(black_box(&filter), black_box(&user), None))
    });
    c.bench_function("print filter", |b| {
        b.iter(|| black_box(&filter).to_string())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
