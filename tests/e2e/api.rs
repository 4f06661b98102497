//! Every endpoint, ETags, groups and bulk.

use serde_json::{json, Value};

use crate::backends;
use crate::harness::*;

backends!(health_and_discovery, |app| {
    app.get("/healthz").send().status(200);
    app.get("/readyz").send().status(200);
    let spc = app.get("/ServiceProviderConfig").send().status(200);
    assert!(spc.header("content-type").unwrap().starts_with(SCIM_JSON));
    let mut spc = spc.json();
    spc["meta"]["location"] = json!("[location]");
    insta::assert_json_snapshot!("service_provider_config", spc);
    app.get("/ResourceTypes").send().status(200);
    let schemas = app.get("/Schemas").send().status(200).json();
    insta::assert_json_snapshot!("schemas", schemas, {".Resources[].meta.location" => "[location]"});
    app.get("/Schemas?filter=id%20eq%20%22x%22")
        .send()
        .scim_error(403, None);
    let e = app.get("/Schemas/urn:nope").send().scim_error(404, None);
    assert_eq!(e["detail"], r#"Schema "urn:nope" not found."#);
    let e = app.get("/ResourceTypes/Nope").send().scim_error(404, None);
    assert_eq!(e["detail"], r#"Resource type "Nope" not found."#);
});

backends!(user_crud_and_etags, |app| {
    let created = app
        .post("/Users", json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen","password":"t1meMach1ne","active":true}))
        .send()
        .status(201);
    let etag = created.header("etag").unwrap();
    let loc = created.header("location").unwrap();
    let user = created.json();
    let id = user["id"].as_str().unwrap().to_string();
    assert!(loc.ends_with(&format!("/scim/v2/Users/{id}")));
    assert!(user.get("password").is_none(), "password is never returned");
    assert_eq!(user["meta"]["version"].as_str().unwrap(), etag);

    // If-None-Match
    app.get(&format!("/Users/{id}"))
        .header("if-none-match", &etag)
        .send()
        .status(304);
    let got = app
        .get(&format!("/Users/{id}?attributes=userName"))
        .send()
        .status(200)
        .json();
    assert_eq!(got["userName"], "bjensen");
    assert!(got.get("active").is_none());

    // PUT with a stale If-Match is 412; with the right one 200
    app.put(
        &format!("/Users/{id}"),
        json!({"userName":"bjensen","active":false}),
    )
    .header("if-match", "W/\"999\"")
    .send()
    .scim_error(412, None);
    let put = app
        .put(
            &format!("/Users/{id}"),
            json!({"userName":"bjensen","active":false}),
        )
        .header("if-match", &etag)
        .send()
        .status(200);
    assert_ne!(put.header("etag").unwrap(), etag);
    assert_eq!(put.json()["active"], false);

    // Deactivated users stay readable; PATCH; Prefer: return=minimal is 204
    let patched = app
        .patch(&format!("/Users/{id}"), json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"Babs"}]}))
        .send()
        .status(200)
        .json();
    assert_eq!(patched["displayName"], "Babs");
    app.patch(
        &format!("/Users/{id}"),
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"title","value":"Boss"}]}),
    )
    .header("prefer", "return=minimal")
    .send()
    .status(204);

    // Uniqueness
    app.post("/Users", json!({"userName":"BJENSEN"}))
        .send()
        .scim_error(409, Some("uniqueness"));

    // List and filter
    let list = app
        .get("/Users?filter=userName%20eq%20%22bjensen%22")
        .send()
        .status(200)
        .json();
    assert_eq!(list["totalResults"], 1);
    let search = app
        .post(
            "/Users/.search",
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter":"userName eq \"bjensen\"","attributes":["userName"]}),
        )
        .send()
        .status(200)
        .json();
    assert_eq!(search["Resources"][0]["userName"], "bjensen");
    let all = app
        .post(
            "/.search",
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}),
        )
        .send()
        .status(200)
        .json();
    assert_eq!(all["totalResults"], 1);
    let zero = app.get("/Users?count=0").send().status(200).json();
    assert_eq!(
        (
            zero["totalResults"].as_u64(),
            zero["Resources"].as_array().map(Vec::len)
        ),
        (Some(1), Some(0))
    );

    // DELETE twice
    app.delete(&format!("/Users/{id}")).send().status(204);
    app.delete(&format!("/Users/{id}"))
        .send()
        .scim_error(404, None);
    app.get(&format!("/Users/{id}"))
        .send()
        .scim_error(404, None);
});

backends!(groups_members_and_user_groups, |app| {
    let a = app.create_user("alice");
    let b = app.create_user("bob");
    let (a, b) = (
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    );
    let inner = app.create_group("inner", &[&a]);
    let inner_id = inner["id"].as_str().unwrap().to_string();
    let outer = app.create_group("outer", &[&inner_id]);
    let outer_id = outer["id"].as_str().unwrap().to_string();

    // Add bob and an unknown member: the valid one is applied, the unknown one reported.
    // A membership PATCH answers 204 unless the client asks for a representation.
    let resp = app
        .patch(&format!("/Groups/{inner_id}"), json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":b},{"value":"does-not-exist"}]}]}))
        .send()
        .status(204);
    assert_eq!(
        resp.header("x-scimhub-unknown-members").as_deref(),
        Some("does-not-exist")
    );
    assert_eq!(
        resp.header("x-scimhub-unknown-members-count").as_deref(),
        Some("1")
    );
    assert!(resp.header("etag").is_some());
    let g = app
        .get(&format!("/Groups/{inner_id}"))
        .send()
        .status(200)
        .json();
    assert_eq!(g["members"].as_array().unwrap().len(), 2);
    // Asking for attributes makes it 200 with exactly that projection (RFC 7644 §3.5.2 MUST).
    let g = app
        .patch(
            &format!("/Groups/{inner_id}?attributes=members"),
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":b}]}]}),
        )
        .send()
        .status(200)
        .json();
    assert_eq!(g["members"].as_array().unwrap().len(), 2, "{g}");
    assert!(g.get("displayName").is_none(), "{g}");
    let g = app
        .patch(
            &format!("/Groups/{inner_id}?excludedAttributes=members"),
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":b}]}]}),
        )
        .send()
        .status(200)
        .json();
    assert!(g.get("members").is_none(), "{g}");
    assert_eq!(g["displayName"], "inner");
    let g = app
        .patch(
            &format!("/Groups/{inner_id}"),
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":b}]}]}),
        )
        .header("Prefer", "return=representation")
        .send()
        .status(200)
        .json();
    assert_eq!(g["members"].as_array().unwrap().len(), 2, "{g}");
    // A PATCH that leaves members alone answers 200 with the whole group.
    let g = app
        .patch(
            &format!("/Groups/{inner_id}"),
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"externalId","value":"inner-ext"}]}),
        )
        .send()
        .status(200)
        .json();
    assert_eq!(g["members"].as_array().unwrap().len(), 2, "{g}");

    // excludedAttributes=members
    let g = app
        .get(&format!("/Groups/{inner_id}?excludedAttributes=members"))
        .send()
        .status(200)
        .json();
    assert!(g.get("members").is_none());

    // User.groups includes the nested group
    let user = app.get(&format!("/Users/{a}")).send().status(200).json();
    let groups: Vec<&str> = user["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["value"].as_str().unwrap())
        .collect();
    assert!(
        groups.contains(&inner_id.as_str()) && groups.contains(&outer_id.as_str()),
        "{user}"
    );

    // Remove with a value filter
    let g = app
        .patch(
            &format!("/Groups/{inner_id}?attributes=members"),
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":format!("members[value eq \"{a}\"]")}]}),
        )
        .send()
        .status(200)
        .json();
    assert_eq!(g["members"].as_array().unwrap().len(), 1);
    app.delete(&format!("/Groups/{outer_id}"))
        .send()
        .status(204);
});

backends!(bulk_with_bulk_ids, |app| {
    let resp = app
        .post(
            "/Bulk",
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"failOnErrors":1,"Operations":[
                {"method":"POST","path":"/Users","bulkId":"qwerty","data":{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"Alice"}},
                {"method":"POST","path":"/Groups","bulkId":"ytrewq","data":{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Tour Guides","members":[{"type":"User","value":"bulkId:qwerty"}]}},
                {"method":"PATCH","path":"/Users/bulkId:qwerty","data":{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}}
            ]}),
        )
        .send()
        .status(200)
        .json();
    let ops = resp["Operations"].as_array().unwrap();
    assert_eq!(
        ops.iter()
            .map(|o| o["status"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["201", "201", "200"],
        "{resp}"
    );
    let group_loc = ops[1]["location"].as_str().unwrap();
    let gid = group_loc.rsplit('/').next().unwrap();
    let g = app.get(&format!("/Groups/{gid}")).send().status(200).json();
    assert_eq!(g["members"].as_array().unwrap().len(), 1);

    // failOnErrors stops after the first error
    let resp = app
        .post(
            "/Bulk",
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"failOnErrors":1,"Operations":[
            {"method":"POST","path":"/Users","bulkId":"a","data":{"userName":"Alice"}},
            {"method":"POST","path":"/Users","bulkId":"b","data":{"userName":"Carol"}}]}),
        )
        .send()
        .status(200)
        .json();
    assert_eq!(resp["Operations"].as_array().unwrap().len(), 1);
    assert_eq!(resp["Operations"][0]["status"], "409");
    app.get("/Users?filter=userName%20eq%20%22Carol%22")
        .send()
        .status(200);
});

// One bad reference fails only its own operation (RFC 7644 §3.7.2): an undeclared bulkId beside
// a valid forward reference, then a circular reference (§3.7.1, 409) beside one.
backends!(bulk_bad_references_fail_alone, |app| {
    let group = |bulk_id: &str, members: &[&str]| {
        let members: Vec<Value> = members
            .iter()
            .map(|m| json!({"value": format!("bulkId:{m}")}))
            .collect();
        json!({"method": "POST", "path": "/Groups", "bulkId": bulk_id, "data": {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": format!("group {bulk_id}"), "members": members}})
    };
    let user = |bulk_id: &str| {
        json!({"method": "POST", "path": "/Users", "bulkId": bulk_id, "data": {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("user-{bulk_id}")}})
    };
    let statuses = |resp: &Value| -> Vec<String> {
        resp["Operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["status"].as_str().unwrap().to_owned())
            .collect()
    };
    let id_of = |op: &Value| {
        op["location"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned()
    };

    // The group refers forward to the user; another group to a bulkId no operation declares.
    let resp = app
        .post(
            "/Bulk",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
                group("g", &["u"]), user("u"), group("bad", &["nope"])]}),
        )
        .send()
        .status(200)
        .json();
    assert_eq!(statuses(&resp), vec!["201", "201", "400"], "{resp}");
    let ops = resp["Operations"].as_array().unwrap();
    let g = app
        .get(&format!("/Groups/{}", id_of(&ops[0])))
        .send()
        .status(200)
        .json();
    assert_eq!(g["members"][0]["value"], id_of(&ops[1]).as_str(), "{g}");
    let bad = &ops[2]["response"];
    assert_eq!(bad["scimType"], "invalidValue", "{bad}");
    assert!(
        bad["detail"]
            .as_str()
            .unwrap()
            .contains("bulkId nope is not declared"),
        "{bad}"
    );

    // Two groups refer to each other: both 409, naming the cycle; the rest runs.
    let resp = app
        .post(
            "/Bulk",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
                group("a", &["b"]), group("g2", &["u2"]), group("b", &["a"]), user("u2")]}),
        )
        .send()
        .status(200)
        .json();
    assert_eq!(statuses(&resp), vec!["409", "201", "409", "201"], "{resp}");
    let ops = resp["Operations"].as_array().unwrap();
    for i in [0, 2] {
        let e = &ops[i]["response"];
        assert_eq!(e["status"], "409", "{e}");
        assert!(e.get("scimType").is_none(), "{e}");
        assert!(
            e["detail"].as_str().unwrap().contains("bulkId a, b "),
            "{e}"
        );
    }
    let g = app
        .get(&format!("/Groups/{}", id_of(&ops[1])))
        .send()
        .status(200)
        .json();
    assert_eq!(g["members"][0]["value"], id_of(&ops[3]).as_str(), "{g}");
    // Nothing of the cycle was written.
    let found = app
        .get("/Groups?filter=displayName%20sw%20%22group%20a%22")
        .send()
        .status(200)
        .json();
    assert_eq!(found["totalResults"], 0, "{found}");
});

backends!(me_is_not_implemented, |app| {
    app.get("/Me").send().scim_error(501, None);
});

backends!(tokens_and_scopes, |app| {
    app.get("/Users")
        .token("wrong")
        .send()
        .scim_error(401, None);
    let r = app.request(reqwest::Method::GET, "/Users").token("").send();
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
});

backends!(graceful_shutdown, |app| {
    let mut app = app;
    app.get("/healthz").send().status(200);
    assert!(app.terminate(), "scimhub exits 0 on SIGTERM");
    assert!(
        !app.log().contains(TOKEN),
        "the log never contains the token"
    );
});

// If-None-Match on a write (RFC 9110 §13.1.2): a condition that is false (`*` on an existing
// resource, or the current ETag) answers 412 and changes nothing; a true one lets the write go
// ahead; together with If-Match both must hold; a missing resource is still 404.
backends!(if_none_match_guards_writes, |app| {
    let created = app
        .post("/Users", json!({"userName":"inm","title":"t0"}))
        .send()
        .status(201);
    let etag = created.header("etag").unwrap();
    let id = created.json()["id"].as_str().unwrap().to_string();
    let patch = |title: &str| {
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations":[{"op":"replace","path":"title","value":title}]})
    };
    let path = format!("/Users/{id}");
    for refused in ["*", etag.as_str(), &format!("W/\"0\", {etag}")] {
        let e = app
            .patch(&path, patch("never"))
            .header("if-none-match", refused)
            .send()
            .scim_error(412, None);
        // The detail names the header that failed.
        assert!(
            e["detail"].as_str().unwrap().contains("If-None-Match"),
            "{e}"
        );
        app.put(&path, json!({"userName":"inm","title":"never"}))
            .header("if-none-match", refused)
            .send()
            .scim_error(412, None);
        app.delete(&path)
            .header("if-none-match", refused)
            .send()
            .scim_error(412, None);
    }
    let now = app.get(&path).send().status(200);
    assert_eq!(
        now.header("etag").unwrap(),
        etag,
        "a refused write changed nothing"
    );
    assert_eq!(now.json()["title"], "t0");
    // Another ETag: the condition holds, the write goes ahead.
    let patched = app
        .patch(&path, patch("t1"))
        .header("if-none-match", "W/\"999\"")
        .send()
        .status(200);
    let etag1 = patched.header("etag").unwrap();
    assert_eq!(patched.json()["title"], "t1");
    // With If-Match as well: both must hold.
    app.patch(&path, patch("never"))
        .header("if-none-match", "W/\"999\"")
        .header("if-match", &etag)
        .send()
        .scim_error(412, None);
    app.patch(&path, patch("t2"))
        .header("if-none-match", &etag)
        .header("if-match", &etag1)
        .send()
        .status(200);
    app.delete("/Users/no-such-user")
        .header("if-none-match", "*")
        .send()
        .scim_error(404, None);
    app.delete(&path)
        .header("if-none-match", "W/\"999\"")
        .send()
        .status(204);
});

// A User's version counts changes to the User; its groups change through Groups. The ETag
// carries a digest of the groups returned, so revalidation sees a membership change or a
// group's rename, while preconditions on writes still compare the version (groups are
// read-only: a write cannot undo a membership change).
backends!(user_etag_follows_its_groups, |app| {
    let user = app.create_user("etag.member");
    let id = user["id"].as_str().unwrap().to_string();
    let alone = app.get(&format!("/Users/{id}")).send().status(200);
    let alone_tag = alone.header("etag").unwrap();
    assert_eq!(alone.json()["meta"]["version"], alone_tag.as_str());

    let group = app.create_group("ETag Readers", &[&id]);
    let gid = group["id"].as_str().unwrap().to_string();
    let member = app
        .get(&format!("/Users/{id}"))
        .header("if-none-match", &alone_tag)
        .send()
        .status(200);
    let member_tag = member.header("etag").unwrap();
    assert_ne!(member_tag, alone_tag);
    assert_eq!(member.json()["meta"]["version"], member_tag.as_str());
    assert_eq!(member.json()["groups"][0]["value"], gid.as_str());
    // Unchanged: 304 with the same tag; the same tag in a list and from HEAD.
    let head = app
        .request(reqwest::Method::HEAD, &format!("/Users/{id}"))
        .send()
        .status(200);
    assert_eq!(head.header("etag").as_deref(), Some(member_tag.as_str()));
    app.get(&format!("/Users/{id}"))
        .header("if-none-match", &member_tag)
        .send()
        .status(304);
    let listed = app
        .get("/Users?filter=userName%20eq%20%22etag.member%22")
        .send()
        .status(200)
        .json();
    assert_eq!(
        listed["Resources"][0]["meta"]["version"],
        member_tag.as_str()
    );

    // The group's rename changes the user's representation, so its tag.
    app.patch(
        &format!("/Groups/{gid}"),
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations":[{"op":"replace","path":"displayName","value":"ETag Writers"}]}),
    )
    .send()
    .status(200);
    let renamed = app
        .get(&format!("/Users/{id}"))
        .header("if-none-match", &member_tag)
        .send()
        .status(200);
    let renamed_tag = renamed.header("etag").unwrap();
    assert_ne!(renamed_tag, member_tag);
    assert_eq!(renamed.json()["groups"][0]["display"], "ETag Writers");

    // Writes compare the version: the tag from before the membership is still current for them.
    let patched = app
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations":[{"op":"replace","path":"title","value":"Reader"}]}),
        )
        .header("if-match", &alone_tag)
        .send()
        .status(200);
    let after = patched.header("etag").unwrap();
    assert_eq!(patched.json()["meta"]["version"], after.as_str());
    app.patch(
        &format!("/Users/{id}"),
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations":[{"op":"replace","path":"title","value":"Late"}]}),
    )
    .header("if-match", &renamed_tag)
    .send()
    .scim_error(412, None);

    // Leaving the group: back to a tag without a digest, different from every earlier one.
    app.patch(
        &format!("/Groups/{gid}"),
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations":[{"op":"remove","path":format!("members[value eq \"{id}\"]")}]}),
    )
    .send()
    .status(204);
    let gone = app.get(&format!("/Users/{id}")).send().status(200);
    let gone_tag = gone.header("etag").unwrap();
    assert!(gone.json().get("groups").is_none());
    assert!(![alone_tag, member_tag, renamed_tag].contains(&gone_tag));
    assert_eq!(gone.json()["meta"]["version"], gone_tag.as_str());
});

// A member's `display` is its own name, kept current: a rename shows in every group it is in,
// and each such group gets a new version (its representation changed). The client's `display`
// names only a member without a name of its own.
backends!(member_display_follows_the_members_name, |app| {
    let named = app
        .post(
            "/Users",
            json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
                   "userName":"named.member","displayName":"Named Member"}),
        )
        .send()
        .status(201)
        .json();
    let nameless = app.create_user("nameless.member");
    let (nid, lid) = (
        named["id"].as_str().unwrap().to_string(),
        nameless["id"].as_str().unwrap().to_string(),
    );
    let group = app
        .post(
            "/Groups",
            json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],
                   "displayName":"Display Followers",
                   "members":[{"value": nid, "display": "what the client called her"},
                              {"value": lid, "display": "nameless.member@example.com"}]}),
        )
        .send()
        .status(201)
        .json();
    let gid = group["id"].as_str().unwrap().to_string();
    let display_of = |g: &serde_json::Value, id: &str| {
        g["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["value"] == id)
            .map(|m| m["display"].clone())
            .unwrap()
    };
    assert_eq!(display_of(&group, &nid), "Named Member");
    assert_eq!(display_of(&group, &lid), "nameless.member@example.com");
    let before = app.get(&format!("/Groups/{gid}")).send().status(200);
    let tag = before.header("etag").unwrap();

    app.patch(
        &format!("/Users/{nid}"),
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations":[{"op":"replace","path":"displayName","value":"Renamed Member"}]}),
    )
    .send()
    .status(200);
    let after = app
        .get(&format!("/Groups/{gid}"))
        .header("if-none-match", &tag)
        .send()
        .status(200);
    assert_ne!(after.header("etag").unwrap(), tag);
    let after = after.json();
    assert_eq!(display_of(&after, &nid), "Renamed Member");
    assert_eq!(display_of(&after, &lid), "nameless.member@example.com");
    // A PATCH that leaves the name alone changes no group.
    app.patch(
        &format!("/Users/{nid}"),
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations":[{"op":"replace","path":"title","value":"Unrelated"}]}),
    )
    .send()
    .status(200);
    let same = app.get(&format!("/Groups/{gid}")).send().status(200);
    assert_eq!(same.json()["meta"]["version"], after["meta"]["version"]);
    // The name removed: the member shows none rather than the old one.
    app.patch(
        &format!("/Users/{nid}"),
        json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations":[{"op":"remove","path":"displayName"}]}),
    )
    .send()
    .status(200);
    let gone = app.get(&format!("/Groups/{gid}")).send().status(200).json();
    let member = gone["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["value"] == nid.as_str())
        .cloned()
        .unwrap();
    assert!(member.get("display").is_none(), "{member}");
});
