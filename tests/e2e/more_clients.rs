//! Replays of the provisioning sequences of clients beyond Okta and Entra ID (`clients.rs`), as
//! their documentation (and, where marked, captured traffic in public issue threads) describes
//! them. None announces itself with a User-Agent scimhub knows, so each runs in the default
//! dialect. The table in `docs/conformance.md` lists the sources.

use serde_json::{json, Value};

use crate::backends;
#[allow(unused_imports)]
use crate::harness::*;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

fn member_ids(g: &Value) -> Vec<String> {
    g["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["value"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

// OneLogin ("SCIM v2 Enterprise" app; captured traffic in goauthentik/authentik#11249): an
// empty User-Agent, form-encoded filters with a trailing `&`, `PUT` with an empty query string
// (`/Users/{id}?`), and JSON bodies sent as `application/json`.
backends!(onelogin_provisioning_sequence, |app| {
    let ua = |r: Req| r.header("user-agent", "");
    let r = ua(app.get("/Users?filter=userName+eq+%22onelogin-test-user01%22&"))
        .send()
        .status(200)
        .json();
    assert_eq!(r["totalResults"], 0);
    let body = json!({"schemas":[USER],"userName":"onelogin-test-user01","externalId":"ol-1001",
        "name":{"givenName":"One","familyName":"Login"},"emails":[{"value":"ol@example.com","primary":true}],
        "active":true});
    let u = ua(app.request(reqwest::Method::POST, "/Users"))
        .raw_body("application/json", body.to_string())
        .send()
        .status(201)
        .json();
    let id = id_of(&u);
    let mut put = body.clone();
    put["name"]["givenName"] = json!("Uno");
    let p = ua(app.request(reqwest::Method::PUT, &format!("/Users/{id}?")))
        .raw_body("application/json", put.to_string())
        .send()
        .status(200)
        .json();
    assert_eq!(p["name"]["givenName"], "Uno");
    // Deprovisioning: active false by PUT.
    put["active"] = json!(false);
    let p = ua(app.request(reqwest::Method::PUT, &format!("/Users/{id}?")))
        .raw_body("application/json", put.to_string())
        .send()
        .status(200)
        .json();
    assert_eq!(p["active"], false);
    let r = ua(app.get("/Users?filter=userName+eq+%22onelogin-test-user01%22&"))
        .send()
        .status(200)
        .json();
    assert_eq!(r["Resources"][0]["active"], false);
});

// JumpCloud ("Identity Management using a Custom SCIM Integration"): activation creates a test
// user and a test group, then deletes both; group members are removed as a value list without
// a filter (the Azure-style form, per a vendor knowledge-base page).
backends!(jumpcloud_activation_and_membership, |app| {
    let u = app
        .post(
            "/Users",
            json!({"schemas":[USER],"userName":"jc-test-user@example.com","active":true,
                "name":{"givenName":"JC","familyName":"Test"},"emails":[{"value":"jc-test-user@example.com","type":"work","primary":true}]}),
        )
        .send()
        .status(201)
        .json();
    let uid = id_of(&u);
    let g = app
        .post(
            "/Groups",
            json!({"schemas":[GROUP],"displayName":"jc-test-group"}),
        )
        .send()
        .status(201)
        .json();
    let gid = id_of(&g);
    app.patch(
        &format!("/Groups/{gid}"),
        json!({"schemas":[PATCH_OP],"Operations":[{"op":"add","path":"members","value":[{"value":uid}]}]}),
    )
    .send()
    .status(204);
    app.patch(
        &format!("/Groups/{gid}"),
        json!({"schemas":[PATCH_OP],"Operations":[{"op":"remove","path":"members","value":[{"value":uid}]}]}),
    )
    .send()
    .status(204);
    let g = app.get(&format!("/Groups/{gid}")).send().status(200).json();
    assert!(member_ids(&g).is_empty(), "{g}");
    app.delete(&format!("/Groups/{gid}")).send().status(204);
    app.delete(&format!("/Users/{uid}")).send().status(204);
    app.get(&format!("/Users/{uid}"))
        .send()
        .scim_error(404, None);
});

// PingFederate SCIM Provisioner ("SCIM Provisioner" features; "User and group management"):
// users are updated with PUT, groups found by listing all groups page by page, then PATCHed.
backends!(pingfederate_provisioning_sequence, |app| {
    let u = app.create_user("ping.user");
    let uid = id_of(&u);
    for i in 0..3 {
        app.create_group(&format!("ping-other-{i}"), &[]);
    }
    let target = app.create_group("ping-target", &[]);
    let mut found = None;
    let mut start = 1;
    loop {
        let page = app
            .get(&format!("/Groups?startIndex={start}&count=2"))
            .send()
            .status(200)
            .json();
        let resources = page["Resources"].as_array().cloned().unwrap_or_default();
        if let Some(g) = resources.iter().find(|g| g["displayName"] == "ping-target") {
            found = Some(id_of(g));
        }
        if resources.is_empty() || found.is_some() {
            break;
        }
        start += resources.len();
    }
    assert_eq!(found.as_deref(), Some(id_of(&target).as_str()));
    let mut put = u.clone();
    put["title"] = json!("Engineer");
    let p = app
        .put(&format!("/Users/{uid}"), put)
        .send()
        .status(200)
        .json();
    assert_eq!(p["title"], "Engineer");
    app.patch(
        &format!("/Groups/{}", id_of(&target)),
        json!({"schemas":[PATCH_OP],"Operations":[{"op":"add","path":"members","value":[{"value":uid}]}]}),
    )
    .send()
    .status(204);
    let g = app
        .get(&format!("/Groups/{}", id_of(&target)))
        .send()
        .status(200)
        .json();
    assert_eq!(member_ids(&g), vec![uid]);
});

// SailPoint Identity Security Cloud, SCIM 2.0 source ("Prerequisites"): the discovery endpoints
// first, then account aggregation by paged listing.
backends!(sailpoint_discovery_and_aggregation, |app| {
    let spc = app.get("/ServiceProviderConfig").send().status(200).json();
    assert_eq!(spc["patch"]["supported"], true);
    let rts = app.get("/ResourceTypes").send().status(200).json();
    assert!(rts["totalResults"].as_u64().unwrap() >= 2, "{rts}");
    for rt in ["User", "Group"] {
        let r = app
            .get(&format!("/ResourceTypes/{rt}"))
            .send()
            .status(200)
            .json();
        assert_eq!(r["name"], rt);
    }
    let schemas = app.get("/Schemas").send().status(200).json();
    assert!(schemas["totalResults"].as_u64().unwrap() >= 3, "{schemas}");
    for i in 0..5 {
        app.create_user(&format!("sp.user{i}"));
    }
    let mut seen = 0;
    let mut start = 1;
    loop {
        let page = app
            .get(&format!("/Users?startIndex={start}&count=2"))
            .send()
            .status(200)
            .json();
        let n = page["Resources"].as_array().map_or(0, Vec::len);
        if n == 0 {
            break;
        }
        seen += n;
        start += n;
    }
    assert_eq!(seen, 5);
});

// Auth0's outbound SCIM action ("Synchronize User Changes with Outbound SCIM Requests using
// Event Streams"): create with `externalId` = the Auth0 user_id; on update, look the user up by
// `externalId` and PUT; on delete, look up and DELETE.
backends!(auth0_outbound_sequence, |app| {
    let body = json!({"schemas":[USER],"userName":"a0.user@example.com","externalId":"auth0|65f1c0ffee",
        "name":{"givenName":"Auth","familyName":"Zero"},"emails":[{"value":"a0.user@example.com","primary":true}],"active":true});
    app.post("/Users", body.clone()).send().status(201);
    let lookup = "/Users?filter=externalId%20eq%20%22auth0%7C65f1c0ffee%22";
    let r = app.get(lookup).send().status(200).json();
    assert_eq!(r["totalResults"], 1);
    let id = id_of(&r["Resources"][0]);
    let mut put = body;
    put["name"]["givenName"] = json!("Authy");
    let p = app
        .put(&format!("/Users/{id}"), put)
        .send()
        .status(200)
        .json();
    assert_eq!(p["name"]["givenName"], "Authy");
    let r = app.get(lookup).send().status(200).json();
    assert_eq!(id_of(&r["Resources"][0]), id);
    app.delete(&format!("/Users/{id}")).send().status(204);
    let r = app.get(lookup).send().status(200).json();
    assert_eq!(r["totalResults"], 0);
});
