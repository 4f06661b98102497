//! Replays of what Okta and Microsoft Entra ID send (their published SCIM 2.0 guides).

use serde_json::json;

use crate::backends;
#[allow(unused_imports)]
use crate::harness::*;

backends!(okta_user_lifecycle, |app| {
    // Okta: "Check if the user exists" -> GET filter userName eq, startIndex=1&count=100
    let r = app
        .get("/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100")
        .header("user-agent", "Okta SCIM Client 1.0.0")
        .send()
        .status(200)
        .json();
    assert_eq!(r["totalResults"], 0);
    assert_eq!(
        r["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );
    // Create the user
    let u = app
        .post("/Users", json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"test.user@okta.local",
            "name":{"givenName":"Test","familyName":"User"},"emails":[{"primary":true,"value":"test.user@okta.local","type":"work"}],
            "displayName":"Test User","locale":"en-US","externalId":"00ujl29u0le5T6Aj10h7","groups":[],"password":"1mz050nq","active":true}))
        .header("user-agent", "Okta SCIM Client 1.0.0")
        .send()
        .status(201)
        .json();
    let id = u["id"].as_str().unwrap();
    // Deactivate: PATCH replace active false
    let p = app
        .patch(&format!("/Users/{id}"), json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}))
        .send()
        .status(200)
        .json();
    assert_eq!(p["active"], false);
    let found = app
        .get("/Users?filter=userName%20eq%20%22test.user%40okta.local%22")
        .send()
        .status(200)
        .json();
    assert_eq!(found["Resources"][0]["active"], false);
});

backends!(entra_test_connection_and_provisioning, |app| {
    let ua = "Azure AD SCIM Client";
    // Test Connection: a random GUID userName filter answers 200 with an empty list
    let r = app
        .get("/Users?filter=userName+eq+%22a1b2c3d4-e5f6-4711-8899-aabbccddeeff%22")
        .header("user-agent", ua)
        .send()
        .status(200)
        .json();
    assert_eq!(r["totalResults"], 0);
    // Create
    let u = app
        .post("/Users", json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId":"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef","userName":"Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
            "active":true,"emails":[{"primary":true,"type":"work","value":"Test_User_fd0ea19b@testuser.com"}],
            "meta":{"resourceType":"User"},"name":{"formatted":"givenName familyName","familyName":"familyName","givenName":"givenName"},
            "roles":[]}))
        .header("user-agent", ua)
        .send()
        .status(201)
        .json();
    let id = u["id"].as_str().unwrap().to_string();
    // PATCH with capitalised ops, "False" strings and path-less replace with URN keys
    let p = app
        .patch(&format!("/Users/{id}"), json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
            {"op":"Replace","path":"active","value":"False"},
            {"op":"Add","path":"displayName","value":"Entra Name"},
            {"op":"replace","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"E123"}}]}))
        .header("user-agent", ua)
        .send()
        .status(200)
        .json();
    assert_eq!(p["active"], false);
    assert_eq!(p["displayName"], "Entra Name");
    // Groups: create, add member, remove member (Entra's remove with a value list)
    let g = app.post("/Groups", json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"externalId":"8aa1a0c0","displayName":"Group1DisplayName","members":[]})).header("user-agent", ua).send().status(201).json();
    let gid = g["id"].as_str().unwrap().to_string();
    let r = app
        .get("/Groups?excludedAttributes=members&filter=displayName+eq+%22Group1DisplayName%22")
        .header("user-agent", ua)
        .send()
        .status(200)
        .json();
    assert_eq!(r["totalResults"], 1);
    app.patch(&format!("/Groups/{gid}"), json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"members","value":[{"value":id}]}]}))
        .header("user-agent", ua).send().status(200);
    let g = app
        .patch(&format!("/Groups/{gid}"), json!({"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Remove","path":"members","value":[{"value":id}]}]}))
        .header("user-agent", ua)
        .send()
        .status(200)
        .json();
    assert!(
        g.get("members")
            .map(|m| m.as_array().unwrap().is_empty())
            .unwrap_or(true),
        "{g}"
    );
    app.delete(&format!("/Users/{id}"))
        .header("user-agent", ua)
        .send()
        .status(204);
});
