//! RFC 7644 §3.4.2.3: "if there is no data for the specified sortBy value, they are sorted via
//! the sortOrder parameter, i.e., they are ordered last if ascending and first if descending" —
//! for top-level attributes sorted in SQL (`displayName`, `externalId`) and sub-attributes
//! sorted in memory (`name.familyName`, `emails.value`), through whole lists, `startIndex` pages
//! and RFC 9865 cursor pages that cross the boundary between present and absent values.

use serde_json::{json, Value};

use crate::backends;
use crate::harness::*;

/// Users with and without the sorted attributes; returns (id, sort value) for each.
fn population(app: &TestApp) -> Vec<(String, Option<&'static str>)> {
    let people: [(&str, Option<&'static str>); 7] = [
        ("u.cole", Some("Cole")),
        ("u.none1", None),
        ("u.adams", Some("adams")),
        ("u.none2", None),
        ("u.baker", Some("Baker")),
        ("u.none3", None),
        ("u.dunn", Some("dunn")),
    ];
    people
        .iter()
        .map(|(user_name, value)| {
            let mut user = json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name,
            });
            if let Some(v) = value {
                user["displayName"] = json!(v);
                // externalId is caseExact: the same order only with one case.
                user["externalId"] = json!(v.to_lowercase());
                user["name"] = json!({"familyName": v, "givenName": "G"});
                user["emails"] = json!([{"value": format!("{}@example.com", v.to_lowercase())}]);
            } else {
                // A complex attribute without the sorted sub-attribute is absent too.
                user["name"] = json!({"givenName": "G"});
            }
            let created = app.post("/Users", user).send().status(201).json();
            (created["id"].as_str().unwrap().to_string(), *value)
        })
        .collect()
}

/// The order RFC 7644 §3.4.2.3 asks for: present values case-insensitively (ties and absent
/// ones by id, as the server breaks ties), absent ones last ascending and first descending.
fn expected(people: &[(String, Option<&str>)], descending: bool) -> Vec<String> {
    let mut present: Vec<(String, String)> = people
        .iter()
        .filter_map(|(id, v)| v.map(|v| (v.to_lowercase(), id.clone())))
        .collect();
    present.sort();
    let mut absent: Vec<String> = people
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(id, _)| id.clone())
        .collect();
    absent.sort();
    let mut out: Vec<String> = present.into_iter().map(|(_, id)| id).collect();
    out.extend(absent);
    if descending {
        out.reverse();
    }
    out
}

fn ids(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Checks one sortBy/sortOrder whole, in `startIndex` pages and in cursor pages.
fn check(app: &TestApp, people: &[(String, Option<&str>)], sort_by: &str, descending: bool) {
    let order = if descending {
        "descending"
    } else {
        "ascending"
    };
    let want = expected(people, descending);
    let q = format!("sortBy={sort_by}&sortOrder={order}");
    let whole = app.get(&format!("/Users?{q}")).send().status(200).json();
    assert_eq!(ids(&whole), want, "{q}: whole list");
    for count in [2, 3] {
        let mut paged = Vec::new();
        let mut start = 1;
        while start <= want.len() {
            let page = app
                .get(&format!("/Users?{q}&startIndex={start}&count={count}"))
                .send()
                .status(200)
                .json();
            assert_eq!(page["totalResults"], want.len(), "{q}");
            paged.extend(ids(&page));
            start += count;
        }
        assert_eq!(paged, want, "{q}: startIndex pages of {count}");
        let mut cursored = Vec::new();
        let mut cursor = String::new();
        for _ in 0..want.len() + 1 {
            let page = app
                .get(&format!("/Users?{q}&cursor={cursor}&count={count}"))
                .send()
                .status(200)
                .json();
            cursored.extend(ids(&page));
            match page["nextCursor"].as_str() {
                Some(next) => cursor = next.to_string(),
                None => break,
            }
        }
        assert_eq!(cursored, want, "{q}: cursor pages of {count}");
    }
    // The same order through POST /Users/.search.
    let searched = app
        .post(
            "/Users/.search",
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                   "sortBy": sort_by, "sortOrder": order}),
        )
        .send()
        .status(200)
        .json();
    assert_eq!(ids(&searched), want, "{q}: .search");
}

backends!(rfc7644_3_4_2_3_absent_sorts_last_ascending, |app| {
    let people = population(&app);
    for sort_by in [
        "displayName",
        "externalId",
        "name.familyName",
        "emails.value",
    ] {
        check(&app, &people, sort_by, false);
    }
});

backends!(rfc7644_3_4_2_3_absent_sorts_first_descending, |app| {
    let people = population(&app);
    for sort_by in [
        "displayName",
        "externalId",
        "name.familyName",
        "emails.value",
    ] {
        check(&app, &people, sort_by, true);
    }
});

// userName is unique per type, so its pages seek by the value alone (no id tie-break): the
// order, `startIndex` pages and cursor pages must still match, in both directions.
backends!(
    rfc7644_3_4_2_3_user_name_sorts_case_insensitively_in_pages,
    |app| {
        let people: Vec<(String, Option<&str>)> =
            ["Mia", "adam", "Zed", "bob", "Carl", "ümit", "dora"]
                .into_iter()
                .map(|user_name| {
                    let user = json!({
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": user_name,
                    });
                    let created = app.post("/Users", user).send().status(201).json();
                    (created["id"].as_str().unwrap().to_string(), Some(user_name))
                })
                .collect();
        check(&app, &people, "userName", false);
        check(&app, &people, "userName", true);
    }
);
