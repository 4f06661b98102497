//! Uniqueness, `/.search` across resource types, strict mode and atomic writes.

use serde_json::{json, Value};

use crate::backends;
use crate::harness::*;

fn ids(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn issue(app: &TestApp, name: &str) -> String {
    let out = app.cli(&[
        "token",
        "issue",
        "--name",
        name,
        "--scope",
        "scim:read",
        "--scope",
        "scim:write",
    ]);
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

backends!(rfc7644_3_3_uniqueness, |app| {
    // userName, case-insensitively.
    app.post("/Users", json!({"userName":"Case.Folded@Example.com"}))
        .send()
        .status(201);
    let e = app
        .post("/Users", json!({"userName":"case.folded@example.COM"}))
        .send()
        .scim_error(409, Some("uniqueness"));
    assert!(e["detail"].as_str().unwrap().contains("userName"), "{e}");
    // ... also on PUT and PATCH of another user.
    let other = app.create_user("other.user");
    let other_id = other["id"].as_str().unwrap();
    app.patch(
        &format!("/Users/{other_id}"),
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"userName","value":"CASE.FOLDED@example.com"}]}),
    )
    .send()
    .scim_error(409, Some("uniqueness"));
    app.put(
        &format!("/Users/{other_id}"),
        json!({"userName":"case.folded@example.com"}),
    )
    .send()
    .scim_error(409, Some("uniqueness"));
    // externalId is unique per client: the same client cannot reuse it, another client can.
    app.post("/Users", json!({"userName":"ext1","externalId":"EXT-1"}))
        .send()
        .status(201);
    app.post("/Users", json!({"userName":"ext2","externalId":"EXT-1"}))
        .send()
        .scim_error(409, Some("uniqueness"));
    let okta = issue(&app, "okta");
    app.post("/Users", json!({"userName":"ext3","externalId":"EXT-1"}))
        .token(&okta)
        .send()
        .status(201);
    // Group displayName.
    app.create_group("Engineering", &[]);
    app.post("/Groups", json!({"displayName":"engineering"}))
        .send()
        .scim_error(409, Some("uniqueness"));
    // A rejected write changed nothing.
    let list = app.get("/Users?count=0").send().status(200).json();
    assert_eq!(list["totalResults"], 4);
    let g = app
        .get("/Groups?filter=displayName%20eq%20%22engineering%22")
        .send()
        .status(200)
        .json();
    assert_eq!(g["totalResults"], 1);
});

backends!(rfc7644_3_4_3_search_across_types_pages, |app| {
    let mut users = Vec::new();
    for i in 0..5 {
        users.push(
            app.create_user(&format!("pager{i}"))["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut groups = Vec::new();
    for i in 0..3 {
        groups.push(
            app.create_group(&format!("pager group {i}"), &[])["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let search = |body: Value| {
        let mut body = body;
        body["schemas"] = json!(["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]);
        app.post("/.search", body).send().status(200).json()
    };
    let all = search(json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}));
    assert_eq!(all["totalResults"], 8);
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), 8);
    // Users then Groups; each page is the matching slice, across the boundary too.
    let mut paged = Vec::new();
    for start in [1, 4, 7] {
        let page = search(json!({"startIndex": start, "count": 3}));
        assert_eq!(page["totalResults"], 8);
        assert_eq!(page["startIndex"], start);
        assert_eq!(page["itemsPerPage"], ids(&page).len());
        paged.extend(ids(&page));
    }
    assert_eq!(paged, all_ids);
    let boundary = search(json!({"startIndex": 5, "count": 2}));
    assert_eq!(ids(&boundary), vec![users[4].clone(), groups[0].clone()]);
    // count=0: only the total.
    let none = search(json!({"count": 0}));
    assert_eq!(none["totalResults"], 8);
    assert_eq!(none["Resources"], json!([]));
    // Past the end: empty page, same total.
    let past = search(json!({"startIndex": 50, "count": 5}));
    assert_eq!(past["totalResults"], 8);
    assert_eq!(ids(&past).len(), 0);
    // Sorted across types by a shared attribute, then paged.
    let sorted = search(json!({"sortBy":"meta.created","sortOrder":"descending","count":8}));
    let mut expected = all_ids.clone();
    expected.reverse();
    assert_eq!(ids(&sorted), expected);
    let second =
        search(json!({"sortBy":"meta.created","sortOrder":"descending","startIndex":3,"count":2}));
    assert_eq!(ids(&second), expected[2..4].to_vec());
    // A filter narrows both types; projection applies to both.
    let f = search(json!({"filter":"meta.created pr","attributes":["id"],"count":8}));
    assert_eq!(f["totalResults"], 8);
    for r in f["Resources"].as_array().unwrap() {
        assert!(
            r.get("userName").is_none() && r.get("displayName").is_none(),
            "{r}"
        );
    }
    // Cursor paging across types is refused with a SCIM error, not ignored.
    app.post(
        "/.search",
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "cursor": ""}),
    )
    .send()
    .scim_error(400, Some("invalidValue"));
});

backends!(patch_is_atomic_and_paths_are_checked, |app| {
    let u = app.create_user("atomic");
    let id = u["id"].as_str().unwrap().to_string();
    let version = u["meta"]["version"].clone();
    // The second operation fails: the first is not applied either.
    app.patch(
        &format!("/Users/{id}"),
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
            {"op":"replace","path":"displayName","value":"changed"},
            {"op":"replace","path":"emails[type eq \"home\"].value","value":"x@example.com"}]}),
    )
    .send()
    .scim_error(400, Some("noTarget"));
    app.patch(
        &format!("/Users/{id}"),
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"changed"},
            {"op":"replace","path":"name[givenName","value":"x"}]}),
    )
    .send()
    .scim_error(400, Some("invalidPath"));
    app.patch(
        &format!("/Users/{id}"),
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"id","value":"other"}]}),
    )
    .send()
    .scim_error(400, Some("mutability"));
    app.patch(
        &format!("/Users/{id}"),
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove"}]}),
    )
    .send()
    .scim_error(400, Some("noTarget"));
    let after = app.get(&format!("/Users/{id}")).send().status(200).json();
    assert_eq!(after["meta"]["version"], version);
    assert!(after.get("displayName").is_none());
    // Bad attribute paths in attributes/excludedAttributes and sortBy.
    app.get("/Users?attributes=name..givenName")
        .send()
        .scim_error(400, Some("invalidPath"));
    app.get("/Users?sortBy=emails[type")
        .send()
        .scim_error(400, Some("invalidPath"));
    // Unknown attribute paths are ignored, as RFC 7644 3.4.2.5 allows.
    app.get(&format!("/Users/{id}?attributes=nickName,doesNotExist"))
        .send()
        .status(200);
});

fn strict_rejects_unknown_attributes(app: TestApp) {
    app.post(
        "/Users",
        json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"strict","favouriteColour":"blue"}),
    )
        .send()
        .scim_error(400, Some("invalidSyntax"));
    app.post("/Users", json!({"userName":"strict"}))
        .send()
        .scim_error(400, Some("invalidValue"));
    let u = app
        .post(
            "/Users",
            json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"strict"}),
        )
        .send()
        .status(201)
        .json();
    let id = u["id"].as_str().unwrap();
    app.patch(
        &format!("/Users/{id}"),
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations":[{"op":"add","path":"favouriteColour","value":"blue"}]}),
    )
    .send()
    .scim_error(400, Some("invalidPath"));
    let list = app.get("/Users").send().status(200).json();
    assert_eq!(list["totalResults"], 1);
}

#[test]
fn strict_mode_sqlite() {
    strict_rejects_unknown_attributes(
        TestApp::builder(Backend::Sqlite)
            .config("strict = true\n")
            .start()
            .expect("sqlite"),
    );
}

#[test]
fn strict_mode_postgres() {
    if let Some(app) = TestApp::builder(Backend::Postgres)
        .env("SCIMHUB_STRICT", "true")
        .start()
    {
        strict_rejects_unknown_attributes(app);
    }
}

// RFC 7644 §3.4.2.2: "gt", "ge", "lt" and "le" on a Boolean (or Binary) attribute "SHALL cause a
// failed response (HTTP status code 400) with a scimType of invalidFilter".
backends!(
    rfc7644_3_4_2_2_ordering_on_boolean_is_invalid_filter,
    |app| {
        app.create_user("bool.order");
        for f in [
            "active%20gt%20true",
            "active%20le%20false",
            "emails%5Bprimary%20ge%20true%5D",
        ] {
            app.get(&format!("/Users?filter={f}"))
                .send()
                .scim_error(400, Some("invalidFilter"));
        }
        app.post(
        "/Users/.search",
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],"filter":"active lt true"}),
    )
    .send()
    .scim_error(400, Some("invalidFilter"));
        let r = app
            .get("/Users?filter=active%20eq%20true")
            .send()
            .status(200)
            .json();
        assert_eq!(r["totalResults"], 1);
    }
);

// RFC 9865 §2.2: a cursor the server does not recognise (or that expired) is `400` with
// `scimType: invalidCursor`; a cursor it issued pages on.
backends!(rfc9865_2_2_unknown_cursor_is_invalid_cursor, |app| {
    app.create_user("cursor.a");
    app.create_user("cursor.b");
    let first = app.get("/Users?cursor=&count=1").send().status(200).json();
    let next = first["nextCursor"]
        .as_str()
        .expect("a next cursor")
        .to_string();
    let second = app
        .get(&format!("/Users?cursor={next}&count=1"))
        .send()
        .status(200)
        .json();
    assert_ne!(first["Resources"][0]["id"], second["Resources"][0]["id"]);
    for bad in ["not-a-cursor", "eyJvIjoxfQ", "%24%24%24"] {
        app.get(&format!("/Users?cursor={bad}&count=1"))
            .send()
            .scim_error(400, Some("invalidCursor"));
    }
});

// `meta.location` and `$ref` are written from the request's address, never stored: a filter on
// them is refused with the attribute to use instead, rather than matching nothing.
backends!(filters_on_built_attributes_are_invalid_filter, |app| {
    let u = app.create_user("located");
    let location = u["meta"]["location"].as_str().unwrap().to_string();
    for filter in [
        format!("meta.location eq \"{location}\""),
        "meta.location pr".to_string(),
        "groups.$ref pr".to_string(),
    ] {
        let path = format!("/Users?{}", query(&[("filter", &filter)]));
        let e = app.get(&path).send().scim_error(400, Some("invalidFilter"));
        assert!(e["detail"].as_str().unwrap().contains("filter on"), "{e}");
    }
    app.get("/Groups?filter=members%5B%24ref%20pr%5D")
        .send()
        .scim_error(400, Some("invalidFilter"));
    let by_id = app
        .get(&format!(
            "/Users?filter=id%20eq%20%22{}%22",
            u["id"].as_str().unwrap()
        ))
        .send()
        .status(200)
        .json();
    assert_eq!(by_id["totalResults"], 1);
});

/// A query string (`application/x-www-form-urlencoded`, as actix reads it).
fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

// `password` is never returned (RFC 7643 §4.1.1): a filter or a sort on it would tell the
// stored hash, a character at a time, and who has one. Both are refused, on GET and .search.
backends!(password_is_neither_filtered_nor_sorted, |app| {
    app.post(
        "/Users",
        json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
               "userName":"has.password","password":"t1meMach1ne"}),
    )
    .send()
    .status(201);
    for filter in [
        r#"password sw "$argon2""#,
        r#"password pr"#,
        r#"password eq "t1meMach1ne""#,
        r#"userName pr and password gt "$""#,
    ] {
        let e = app
            .get(&format!("/Users?{}", query(&[("filter", filter)])))
            .send()
            .scim_error(400, Some("invalidFilter"));
        assert!(
            e["detail"].as_str().unwrap().contains("never returned"),
            "{e}"
        );
    }
    app.post(
        "/.search",
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
               "filter":"password pr"}),
    )
    .send()
    .scim_error(400, Some("invalidFilter"));
    app.get("/Users?sortBy=password")
        .send()
        .scim_error(400, Some("invalidValue"));
    app.post(
        "/Users/.search",
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
               "sortBy":"meta.location"}),
    )
    .send()
    .scim_error(400, Some("invalidValue"));
    // What may be filtered still is.
    let found = app
        .get("/Users?filter=userName%20eq%20%22has.password%22&sortBy=userName")
        .send()
        .status(200)
        .json();
    assert_eq!(found["totalResults"], 1);
});
