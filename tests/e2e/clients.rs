//! Replays of what Okta and Microsoft Entra ID send, request by request as their SCIM 2.0
//! guides describe them (Okta: "SCIM 2.0 protocol reference" and its Runscope test suite;
//! Microsoft: "Tutorial: Develop and plan provisioning for a SCIM endpoint", request/response
//! examples), running on the real dialect code: provision, update, disable, re-enable, group
//! create, member add and remove, delete.
//!
//! Each replay runs three times: with the client's real `User-Agent`, with none, and with an
//! unrelated one (`curl/8.5.0`). Real deployments do not announce themselves reliably (agents
//! change, gateways rewrite them, validators send their own), so every step must pass in the
//! default dialect too.

use serde_json::{json, Value};

use crate::backends;
#[allow(unused_imports)]
use crate::harness::*;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const OKTA: &str = "Okta SCIM Client 1.0.0";
const ENTRA: &str = "Azure AD SCIM Client";
const CURL: &str = "curl/8.5.0";

/// A request with `agent` as its `User-Agent`, or with none.
fn with_agent(r: Req, agent: Option<&str>) -> Req {
    match agent {
        Some(a) => r.header("user-agent", a),
        None => r,
    }
}

/// One test per backend and `User-Agent` (the client's own, none, curl's) for a replay.
macro_rules! each_agent {
    ($name:ident, $agent:expr, $replay:ident) => {
        mod $name {
            use super::*;
            backends!(real_agent, |app| { $replay(&app, Some($agent)) });
            backends!(no_agent, |app| { $replay(&app, None) });
            backends!(unrelated_agent, |app| { $replay(&app, Some(CURL)) });
        }
    };
}

each_agent!(okta_provisioning_sequence, OKTA, okta_replay);
each_agent!(entra_provisioning_sequence, ENTRA, entra_replay);

fn patch_ops(ops: Value) -> Value {
    json!({"schemas":[PATCH_OP],"Operations": ops})
}

fn member_ids(g: &Value) -> Vec<String> {
    g.get("members")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .map(|m| m["value"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn okta_replay(app: &TestApp, agent: Option<&str>) {
    let ua = |r: Req| with_agent(r, agent);
    // 1. Does the user exist?
    let r = ua(app
        .get("/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100"))
    .send()
    .status(200)
    .json();
    assert_eq!(r["totalResults"], 0);
    assert_eq!(r["Resources"], json!([]));
    // 2. Create the user.
    let u = ua(app.post("/Users", json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"test.user@okta.local",
            "name":{"givenName":"Test","familyName":"User"},"emails":[{"primary":true,"value":"test.user@okta.local","type":"work"}],
            "displayName":"Test User","locale":"en-US","externalId":"00ujl29u0le5T6Aj10h7","groups":[],"password":"1mz050nq","active":true})))
        .send()
        .status(201)
        .json();
    let id = u["id"].as_str().unwrap().to_string();
    assert!(u.get("password").is_none(), "password is never returned");
    // 3. Read it back.
    ua(app.get(&format!("/Users/{id}"))).send().status(200);
    // 4. Profile update: Okta sends the whole user with PUT.
    let put = ua(app.put(&format!("/Users/{id}"), json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":id,
            "userName":"test.user@okta.local","name":{"givenName":"Another","familyName":"User"},
            "emails":[{"primary":true,"value":"test.user@okta.local","type":"work"}],"displayName":"Another User",
            "locale":"en-US","externalId":"00ujl29u0le5T6Aj10h7","groups":[],"active":true})))
        .send()
        .status(200)
        .json();
    assert_eq!(put["name"]["givenName"], "Another");
    // 5. Deactivate and 6. reactivate (Okta never deletes users).
    let p = ua(app.patch(
        &format!("/Users/{id}"),
        patch_ops(json!([{"op":"replace","value":{"active":false}}])),
    ))
    .send()
    .status(200)
    .json();
    assert_eq!(p["active"], false);
    let found = ua(app.get("/Users?filter=userName%20eq%20%22test.user%40okta.local%22"))
        .send()
        .status(200)
        .json();
    assert_eq!(
        found["Resources"][0]["active"], false,
        "deactivated users stay readable"
    );
    let p = ua(app.patch(
        &format!("/Users/{id}"),
        patch_ops(json!([{"op":"replace","value":{"active":true}}])),
    ))
    .send()
    .status(200)
    .json();
    assert_eq!(p["active"], true);
    // 7. Password change.
    ua(app.patch(
        &format!("/Users/{id}"),
        patch_ops(json!([{"op":"replace","value":{"password":"n3wPassw0rd"}}])),
    ))
    .send()
    .status(200);
    // Group push: create, find, rename (Okta echoes the id), add member, remove member, delete.
    let g = ua(app.post(
        "/Groups",
        json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Test SCIMv2","members":[]}),
    ))
    .send()
    .status(201)
    .json();
    let gid = g["id"].as_str().unwrap().to_string();
    let r =
        ua(app.get("/Groups?filter=displayName%20eq%20%22Test%20SCIMv2%22&startIndex=1&count=100"))
            .send()
            .status(200)
            .json();
    assert_eq!(r["totalResults"], 1);
    let r = ua(app.patch(
        &format!("/Groups/{gid}"),
        patch_ops(json!([{"op":"replace","value":{"id":gid,"displayName":"Test SCIMv2 renamed"}}])),
    ))
    .send()
    .status(200)
    .json();
    assert_eq!(r["displayName"], "Test SCIMv2 renamed");
    // Membership PATCHes answer 204 (Okta documents both 200 and 204).
    ua(app.patch(
        &format!("/Groups/{gid}"),
        patch_ops(
            json!([{"op":"add","path":"members","value":[{"value":id,"display":"test.user@okta.local"}]}]),
        ),
    ))
    .send()
    .status(204);
    let r = ua(app.get(&format!("/Groups/{gid}")))
        .send()
        .status(200)
        .json();
    assert_eq!(member_ids(&r), vec![id.clone()]);
    let user = ua(app.get(&format!("/Users/{id}")))
        .send()
        .status(200)
        .json();
    assert_eq!(user["groups"][0]["value"], gid);
    let remove = patch_ops(json!([{"op":"remove","path":format!("members[value eq \"{id}\"]")}]));
    ua(app.patch(&format!("/Groups/{gid}"), remove.clone()))
        .send()
        .status(204);
    let r = ua(app.get(&format!("/Groups/{gid}")))
        .send()
        .status(200)
        .json();
    assert!(member_ids(&r).is_empty());
    // Okta retries: removing a member that is already gone succeeds.
    ua(app.patch(&format!("/Groups/{gid}"), remove))
        .send()
        .status(204);
    // Older Okta Group Push replaces the group with PUT.
    let r = ua(app.put(
        &format!("/Groups/{gid}"),
        json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"id":gid,"displayName":"Test SCIMv2 renamed",
               "members":[{"value":id,"display":"test.user@okta.local"}]}),
    ))
    .send()
    .status(200)
    .json();
    assert_eq!(member_ids(&r), vec![id.clone()]);
    ua(app.delete(&format!("/Groups/{gid}"))).send().status(204);
    ua(app.get(&format!("/Groups/{gid}")))
        .send()
        .scim_error(404, None);
}

fn entra_replay(app: &TestApp, agent: Option<&str>) {
    let ua = |r: Req| with_agent(r, agent);
    // Test Connection: a random GUID userName answers 200 with an empty list.
    let r = ua(app.get("/Users?filter=userName+eq+%22a1b2c3d4-e5f6-4711-8899-aabbccddeeff%22"))
        .send()
        .status(200)
        .json();
    assert_eq!(r["totalResults"], 0);
    assert_eq!(r["Resources"], json!([]));
    // Create (the enterprise schema listed without enterprise attributes, meta sent back, roles []).
    let u = ua(app.post("/Users", json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId":"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef","userName":"Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
            "active":true,"emails":[{"primary":true,"type":"work","value":"Test_User_fd0ea19b@testuser.com"}],
            "meta":{"resourceType":"User"},"name":{"formatted":"givenName familyName","familyName":"familyName","givenName":"givenName"},
            "roles":[]})))
        .send()
        .status(201)
        .json();
    let id = u["id"].as_str().unwrap().to_string();
    // A second user to act as manager.
    let boss = ua(app.post(
        "/Users",
        json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"Test_Boss_1","active":true}),
    ))
    .send()
    .status(201)
    .json();
    let boss_id = boss["id"].as_str().unwrap().to_string();
    // Query by filter, then by id.
    let r =
        ua(app
            .get("/Users?filter=userName+eq+%22Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1%22"))
        .send()
        .status(200)
        .json();
    assert_eq!(r["totalResults"], 1);
    ua(app.get(&format!("/Users/{id}"))).send().status(200);
    // Update: capitalised ops, email by value filter, manager as a plain string, path-less
    // replace with URN-qualified keys.
    let p = ua(app.patch(&format!("/Users/{id}"), patch_ops(json!([
            {"op":"Replace","path":"emails[type eq \"work\"].value","value":"updatedEmail@microsoft.com"},
            {"op":"Replace","path":"name.familyName","value":"updatedFamilyName"},
            {"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":boss_id},
            {"op":"replace","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"E123","displayName":"Entra Name"}}]))))
        .send()
        .status(200)
        .json();
    assert_eq!(p["emails"][0]["value"], "updatedEmail@microsoft.com");
    assert_eq!(p["name"]["familyName"], "updatedFamilyName");
    assert_eq!(p["displayName"], "Entra Name");
    let ent = &p["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
    assert_eq!(ent["employeeNumber"], "E123");
    assert_eq!(ent["manager"]["value"], boss_id);
    // The SCIM Validator finds users by a value path's sub-attribute (not RFC filter grammar).
    let r = ua(app.get(
        "/Users?filter=emails%5Btype+eq+%22work%22%5D.value+eq+%22updatedEmail%40microsoft.com%22",
    ))
    .send()
    .status(200)
    .json();
    assert_eq!(r["totalResults"], 1);
    assert_eq!(r["Resources"][0]["id"], id);
    // A user without a work email gets one (Entra sends the filter path regardless).
    ua(app.patch(
        &format!("/Users/{boss_id}"),
        patch_ops(
            json!([{"op":"Add","path":"emails[type eq \"work\"].value","value":"boss@contoso.com"}]),
        ),
    ))
    .send()
    .status(200);
    // Disable, then re-enable, with string booleans.
    let p = ua(app.patch(
        &format!("/Users/{id}"),
        patch_ops(json!([{"op":"Replace","path":"active","value":"False"}])),
    ))
    .send()
    .status(200)
    .json();
    assert_eq!(p["active"], false);
    let p = ua(app.patch(
        &format!("/Users/{id}"),
        patch_ops(json!([{"op":"Replace","path":"active","value":"True"}])),
    ))
    .send()
    .status(200)
    .json();
    assert_eq!(p["active"], true);
    // Groups: create, find without members, rename, add member, check membership, remove.
    let g = ua(app.post(
        "/Groups",
        json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group","http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
            "externalId":"8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159","displayName":"Group1DisplayName","meta":{"resourceType":"Group"}}),
    ))
    .send()
    .status(201)
    .json();
    let gid = g["id"].as_str().unwrap().to_string();
    // The vendor schema URI is ignored, not stored as a schema of the group.
    assert_eq!(
        g["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:Group"])
    );
    let r = ua(
        app.get("/Groups?excludedAttributes=members&filter=displayName+eq+%22Group1DisplayName%22")
    )
    .send()
    .status(200)
    .json();
    assert_eq!(r["totalResults"], 1);
    assert!(r["Resources"][0].get("members").is_none());
    ua(app.patch(
        &format!("/Groups/{gid}"),
        patch_ops(
            json!([{"op":"Replace","path":"displayName","value":"1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}]),
        ),
    ))
    .send()
    .status(200);
    // Entra documents 204 for membership PATCHes.
    ua(app.patch(
        &format!("/Groups/{gid}"),
        patch_ops(json!([{"op":"Add","path":"members","value":[{"$ref":null,"value":id}]}])),
    ))
    .send()
    .status(204);
    let check = format!(
        "/Groups?excludedAttributes=members&filter=id+eq+%22{gid}%22+and+members.value+eq+%22{id}%22"
    );
    let r = ua(app.get(&check)).send().status(200).json();
    assert_eq!(r["totalResults"], 1);
    ua(app.patch(
        &format!("/Groups/{gid}"),
        patch_ops(json!([{"op":"Remove","path":"members","value":[{"$ref":null,"value":id}]}])),
    ))
    .send()
    .status(204);
    let r = ua(app.get(&check)).send().status(200).json();
    assert_eq!(r["totalResults"], 0);
    let g = ua(app.get(&format!("/Groups/{gid}?excludedAttributes=members")))
        .send()
        .status(200)
        .json();
    assert_eq!(
        g["displayName"],
        "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
    );
    // Delete the group and the users.
    ua(app.delete(&format!("/Groups/{gid}"))).send().status(204);
    ua(app.delete(&format!("/Users/{id}"))).send().status(204);
    ua(app.delete(&format!("/Users/{id}")))
        .send()
        .scim_error(404, None);
    ua(app.delete(&format!("/Users/{boss_id}")))
        .send()
        .status(204);
}

backends!(unknown_members_are_skipped_and_reported, |app| {
    let u = app.create_user("known.member");
    let id = u["id"].as_str().unwrap().to_string();
    let g = app.create_group("partial", &[]);
    let gid = g["id"].as_str().unwrap().to_string();
    let resp = app
        .patch(
            &format!("/Groups/{gid}"),
            patch_ops(
                json!([{"op":"add","path":"members","value":[{"value":id},{"value":"no-such-id"}]}]),
            ),
        )
        .send()
        .status(204);
    assert_eq!(
        resp.header("x-scimhub-unknown-members").as_deref(),
        Some("no-such-id")
    );
    let g = app.get(&format!("/Groups/{gid}")).send().status(200).json();
    assert_eq!(member_ids(&g), vec![id]);
});
