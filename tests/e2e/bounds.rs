//! Bounded work per request (issue #13 item 6): paging parameters that would overflow or read
//! the whole directory, and Group reads whose members exceed the configured bound.

use serde_json::{json, Value};

use crate::backends;
use crate::harness::*;

const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

fn search(body: Value) -> Value {
    let mut b = json!({"schemas": [SEARCH]});
    for (k, v) in body.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn user_names(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["userName"]
                .as_str()
                .or(r["displayName"].as_str())
                .unwrap()
                .to_string()
        })
        .collect()
}

backends!(huge_start_index_and_count_are_bounded, |app| {
    for n in ["carol", "alice", "bob"] {
        app.create_user(n);
    }
    let alice = app
        .get("/Users?filter=userName%20eq%20%22alice%22")
        .send()
        .status(200)
        .json()["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.create_group("admins", &[&alice]);
    let max = i64::MAX.to_string();
    // startIndex past the cap: 400 invalidValue on every list and search path, with and
    // without sortBy (before: a negative LIMIT, all rows on SQLite and a 500 on PostgreSQL).
    for path in [
        format!("/Users?startIndex={max}"),
        format!("/Users?startIndex={max}&sortBy=userName"),
        format!("/Groups?startIndex={max}&count={max}&sortBy=displayName"),
        "/Users?startIndex=1000001".to_string(),
    ] {
        let e = app.get(&path).send().scim_error(400, Some("invalidValue"));
        assert!(
            e["detail"].as_str().unwrap().contains("cursor"),
            "{path}: {e}"
        );
    }
    for (path, body) in [
        (
            "/.search",
            json!({"sortBy": "userName", "startIndex": i64::MAX}),
        ),
        ("/.search", json!({"startIndex": i64::MAX})),
        (
            "/Users/.search",
            json!({"sortBy": "userName", "startIndex": i64::MAX, "count": i64::MAX}),
        ),
        ("/Users/.search", json!({"startIndex": i64::MAX})),
    ] {
        app.post(path, search(body.clone()))
            .send()
            .scim_error(400, Some("invalidValue"));
    }
    // At the cap, a page past the end is empty, and a huge count is the advertised maximum.
    let page = app
        .get("/Users?startIndex=1000000&sortBy=userName")
        .send()
        .status(200)
        .json();
    assert_eq!(
        (
            page["totalResults"].as_u64(),
            page["Resources"].as_array().map(Vec::len)
        ),
        (Some(3), Some(0)),
        "{page}"
    );
    let page = app
        .get(&format!("/Users?count={max}&sortBy=userName"))
        .send()
        .status(200)
        .json();
    assert_eq!(user_names(&page), vec!["alice", "bob", "carol"]);
    let page = app
        .post(
            "/Users/.search",
            search(json!({"count": i64::MAX, "sortBy": "userName", "sortOrder": "descending"})),
        )
        .send()
        .status(200)
        .json();
    assert_eq!(user_names(&page), vec!["carol", "bob", "alice"]);
    // Across types, sorted: the merge window is bounded (startIndex + count - 1 <= 10,000).
    let e = app
        .post(
            "/.search",
            search(json!({"sortBy": "displayName", "startIndex": 9_999, "count": 5})),
        )
        .send()
        .scim_error(400, Some("invalidValue"));
    assert!(e["detail"].as_str().unwrap().contains("10000"), "{e}");
    let page = app
        .post(
            "/.search",
            search(json!({"sortBy": "userName", "startIndex": 2, "count": i64::MAX})),
        )
        .send()
        .status(200)
        .json();
    assert_eq!(page["totalResults"], 4, "{page}");
    assert_eq!(page["Resources"].as_array().unwrap().len(), 3, "{page}");
    // The merged page still carries Group members, read for the page alone.
    let page = app
        .post("/.search", search(json!({"sortBy": "id", "count": 10})))
        .send()
        .status(200)
        .json();
    let group = page["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["displayName"] == "admins")
        .cloned()
        .unwrap();
    assert_eq!(group["members"][0]["value"], alice.as_str(), "{group}");
});

fn member_bound(backend: Backend) {
    let Some(app) = TestApp::builder(backend)
        .env("SCIMHUB_MAX_GROUP_MEMBERS", "2")
        .start()
    else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: PostgreSQL variant not run");
        return;
    };
    let ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| app.create_user(n)["id"].as_str().unwrap().to_string())
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let big = app.create_group("big", &refs)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let small = app.create_group("small", &refs[..2])["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Over the bound: refused with tooMany, pointing at excludedAttributes=members.
    let e = app
        .get(&format!("/Groups/{big}"))
        .send()
        .scim_error(400, Some("tooMany"));
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("excludedAttributes=members"),
        "{e}"
    );
    app.get("/Groups?filter=displayName%20eq%20%22big%22")
        .send()
        .scim_error(400, Some("tooMany"));
    // A page of groups is bounded as a whole (2 + 3 members).
    app.get("/Groups").send().scim_error(400, Some("tooMany"));
    app.post("/.search", search(json!({"sortBy": "displayName"})))
        .send()
        .scim_error(400, Some("tooMany"));
    // A PATCH asking for the members back is refused before it writes.
    let patch = json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations":[{"op":"replace","path":"displayName","value":"bigger"}]});
    app.patch(&format!("/Groups/{big}?attributes=members"), patch.clone())
        .send()
        .scim_error(400, Some("tooMany"));
    let g = app
        .get(&format!("/Groups/{big}?excludedAttributes=members"))
        .send()
        .status(200)
        .json();
    assert_eq!(g["displayName"], "big", "nothing was written: {g}");
    assert!(g.get("members").is_none(), "{g}");
    // Within the bound, and without members, reads answer as before.
    let g = app
        .get(&format!("/Groups/{small}"))
        .send()
        .status(200)
        .json();
    assert_eq!(g["members"].as_array().map(Vec::len), Some(2), "{g}");
    let list = app
        .get("/Groups?excludedAttributes=members&sortBy=displayName")
        .send()
        .status(200)
        .json();
    assert_eq!(user_names(&list), vec!["big", "small"]);
    app.patch(&format!("/Groups/{big}"), patch)
        .send()
        .status(200);
}

#[test]
fn group_member_bound_sqlite() {
    member_bound(Backend::Sqlite);
}

#[test]
fn group_member_bound_postgres() {
    member_bound(Backend::Postgres);
}
