//! `dialect = "strict"` holds clients to RFC 7643/7644: every quirk the default dialect accepts
//! (docs/conformance.md, "What real SCIM clients send") is refused there, with the RFC's
//! scimType, and nothing is written. Each case runs twice against the same request: accepted by
//! a server in the default dialect, refused by one configured strict.

use serde_json::{json, Value};

use crate::harness::*;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const ADSCIM: &str = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";

/// What a quirk's request does to a server, prepared on fixtures that both servers share.
struct Fixture {
    user: String,
    boss: String,
    group: String,
}

fn fixture(app: &TestApp) -> Fixture {
    let boss = app.create_user("quirk.boss")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let user = app
        .post(
            "/Users",
            json!({"schemas":[USER],"userName":"quirk.user","name":{"givenName":"Q"},
                   "emails":[{"type":"home","value":"q@home.example"}]}),
        )
        .send()
        .status(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let group = app
        .post(
            "/Groups",
            json!({"schemas":[GROUP],"displayName":"Quirks","members":[{"value": user}, {"value": boss}]}),
        )
        .send()
        .status(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    Fixture { user, boss, group }
}

fn ops(ops: Value) -> Value {
    json!({"schemas":[PATCH_OP],"Operations": ops})
}

/// One quirk: its name, the request, and the scimType strict answers with (status 400).
type Quirk = (
    &'static str,
    Box<dyn Fn(&TestApp, &Fixture) -> Resp>,
    &'static str,
);

fn quirks() -> Vec<Quirk> {
    vec![
        (
            "PATCH op in another case (Entra ID)",
            Box::new(|app, f| {
                app.patch(
                    &format!("/Users/{}", f.user),
                    ops(json!([{"op":"Replace","path":"title","value":"Engineer"}])),
                )
                .send()
            }),
            "invalidSyntax",
        ),
        (
            "string boolean in a PATCH value (Entra ID)",
            Box::new(|app, f| {
                app.patch(
                    &format!("/Users/{}", f.user),
                    ops(json!([{"op":"replace","path":"active","value":"False"}])),
                )
                .send()
            }),
            "invalidValue",
        ),
        (
            "string boolean in a POST body (Entra ID validator)",
            Box::new(|app, _| {
                app.post(
                    "/Users",
                    json!({"schemas":[USER],"userName":"quirk.post","active":"True"}),
                )
                .send()
            }),
            "invalidValue",
        ),
        (
            "dotted key in a path-less replace (Entra ID)",
            Box::new(|app, f| {
                app.patch(
                    &format!("/Users/{}", f.user),
                    ops(json!([{"op":"replace","value":{"name.givenName":"Dotted"}}])),
                )
                .send()
            }),
            "invalidValue",
        ),
        (
            "URN-prefixed key in a path-less replace (Entra ID)",
            Box::new(|app, f| {
                app.patch(
                    &format!("/Users/{}", f.user),
                    ops(
                        json!([{"op":"replace","value":{format!("{ENTERPRISE}:employeeNumber"): "42"}}]),
                    ),
                )
                .send()
            }),
            "invalidValue",
        ),
        (
            "manager as a bare string (Entra ID)",
            Box::new(|app, f| {
                app.patch(
                    &format!("/Users/{}", f.user),
                    ops(json!([{"op":"add","path":format!("{ENTERPRISE}:manager"),"value": f.boss}])),
                )
                .send()
            }),
            "invalidValue",
        ),
        (
            "add on a value filter that matches nothing creates the element (Entra ID)",
            Box::new(|app, f| {
                app.patch(
                    &format!("/Users/{}", f.user),
                    ops(json!([{"op":"add","path":"emails[type eq \"work\"].value","value":"q@work.example"}])),
                )
                .send()
            }),
            "noTarget",
        ),
        (
            "vendor schema URI without data in a Group POST (Entra ID)",
            Box::new(|app, _| {
                app.post(
                    "/Groups",
                    json!({"schemas":[GROUP, ADSCIM],"displayName":"Quirk ADSCIM"}),
                )
                .send()
            }),
            "invalidValue",
        ),
        (
            "filter with a sub-attribute after a value path (Entra ID)",
            Box::new(|app, _| {
                app.get("/Users?filter=emails%5Btype%20eq%20%22home%22%5D.value%20eq%20%22q%40home.example%22")
                    .send()
            }),
            "invalidFilter",
        ),
    ]
}

/// Member removal by a value list (Entra ID, JumpCloud) is not RFC 7644 §3.5.2.2, which removes
/// every member when `members` has no filter. The default dialect removes exactly the listed
/// members; strict must never read the list as "remove all".
fn member_removal_by_value(app: &TestApp, f: &Fixture) -> Resp {
    app.patch(
        &format!("/Groups/{}", f.group),
        ops(json!([{"op":"Remove","path":"members","value":[{"value": f.user}]}])),
    )
    .send()
}

fn snapshot(app: &TestApp, f: &Fixture) -> (Value, Value, Value) {
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("meta");
        v
    };
    (
        strip(
            app.get(&format!("/Users/{}", f.user))
                .send()
                .status(200)
                .json(),
        ),
        strip(
            app.get(&format!("/Groups/{}", f.group))
                .send()
                .status(200)
                .json(),
        ),
        app.get("/Users?count=0").send().status(200).json()["totalResults"].clone(),
    )
}

#[test]
fn strict_refuses_each_quirk_the_default_accepts() {
    let default = TestApp::start(Backend::Sqlite).expect("sqlite");
    let strict = TestApp::builder(Backend::Sqlite)
        .config("dialect = \"strict\"\n")
        .start()
        .expect("sqlite");
    let (fd, fs) = (fixture(&default), fixture(&strict));
    for (name, send, scim_type) in quirks() {
        let before = snapshot(&strict, &fs);
        let refused = send(&strict, &fs);
        assert_eq!(
            refused.status, 400,
            "strict accepted: {name}: {}",
            refused.text
        );
        assert_eq!(
            refused.json()["scimType"],
            scim_type,
            "{name}: {}",
            refused.text
        );
        refused.scim_error(400, Some(scim_type));
        assert_eq!(
            snapshot(&strict, &fs),
            before,
            "strict wrote something: {name}"
        );
        let accepted = send(&default, &fd);
        assert!(
            (200..300).contains(&accepted.status),
            "default refused: {name}: {} {}",
            accepted.status,
            accepted.text
        );
    }

    // Value-list member removal: the default removes exactly the listed member ...
    member_removal_by_value(&default, &fd).status(204);
    let members: Vec<Value> = default
        .get(&format!("/Groups/{}", fd.group))
        .send()
        .status(200)
        .json()["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].clone())
        .collect();
    assert_eq!(members, vec![json!(fd.boss)]);
    // ... and strict refuses it rather than emptying the group.
    let before = snapshot(&strict, &fs);
    member_removal_by_value(&strict, &fs).scim_error(400, Some("invalidSyntax"));
    assert_eq!(snapshot(&strict, &fs), before);
}
