//! A realistic User PATCH (Entra-style: a capitalised replace of the work email and the family
//! name, plus an extension attribute), normalised and applied.
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use scim_schema::dialect::{normalize_patch, Dialect};
use scim_schema::message::PatchOpRequest;
use scim_schema::patch::apply_patch;
use scim_schema::schema::SchemaRegistry;
use serde_json::{json, Value};

fn bench(c: &mut Criterion) {
    let rs = SchemaRegistry::core().resource_schema("User").unwrap();
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "2819c223", "externalId": "bjensen",
        "userName": "bjensen@example.com", "active": true, "displayName": "Babs Jensen",
        "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara"},
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "home"}],
        "phoneNumbers": [{"value": "555-555-5555", "type": "work"}],
        "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood", "primary": true}],
        "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z"}
    });
    let user = user.as_object().unwrap().clone();
    let body: Value = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "babs@example.com"},
        {"op": "Replace", "path": "name.familyName", "value": "Jensen-Smith"},
        {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "701984"}
    ]});
    let req: PatchOpRequest = serde_json::from_value(body).unwrap();
    let ops = normalize_patch(req.clone(), Dialect::EntraId, &rs).unwrap();
    let opts = Dialect::EntraId.patch_options();
    c.bench_function("apply_patch user (3 ops)", |b| {
        b.iter(|| apply_patch(&user, &ops, &rs, &opts).unwrap())
    });
    c.bench_function("normalize_patch + apply_patch user (3 ops)", |b| {
        b.iter(|| {
            let ops = normalize_patch(req.clone(), Dialect::EntraId, &rs).unwrap();
            apply_patch(&user, &ops, &rs, &opts).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
