//! Source-of-truth attribute ownership (`[[source]]` in the policy) on the real SCIM write path:
//! POST, PUT, PATCH and /Bulk through the actix service, on SQLite and PostgreSQL. `workday`
//! owns `active`, `title` and the department and ignores other clients' changes to them; `vms`
//! owns the cost center and refuses them. Since `workday` owns `active`, only it (or a client
//! granted `scim:delete`) deletes Users, on every path.

use reqwest::Method;
use serde_json::{json, Value};

use super::admin_api::{assert_error, Server};
use super::{Env, POLICY};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn policy() -> String {
    format!(
        "{POLICY}\n[[source]]\nclient = \"workday\"\nowns = [\"active\", \"title\", \
         \"{ENTERPRISE}:department\"]\n\n[[source]]\nclient = \"vms\"\nowns = [\"costCenter\"]\n\
         on_conflict = \"reject\"\n"
    )
}

macro_rules! source_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(false, &super::policy()) { super::$name(e) } } )* }
        mod postgres { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(true, &super::policy()) { super::$name(e) } } )* }
    };
}

source_backends!(
    another_clients_change_to_an_owned_attribute_is_ignored,
    reject_refuses_with_mutability_and_writes_nothing,
    creating_and_filling_empty_owned_attributes_is_allowed,
    deleting_a_user_is_for_the_owner_of_active_or_scim_delete,
);

/// The three clients, each with a `scim:read scim:write` token named after it.
struct Clients {
    workday: String,
    okta: String,
    vms: String,
}

fn clients(srv: &Server) -> Clients {
    let t = |name: &str| srv.token(name, &["scim:read", "scim:write"], None);
    Clients {
        workday: t("workday"),
        okta: t("okta"),
        vms: t("vms"),
    }
}

fn ada() -> Value {
    json!({
        "schemas": [CORE, ENTERPRISE],
        "userName": "ada",
        "displayName": "Ada",
        "active": true,
        "userType": "Employee",
        "title": "Engineer",
        ENTERPRISE: {"department": "Engineering", "costCenter": "42"},
    })
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn get(srv: &Server, id: &str) -> Value {
    let (s, v) = srv.scim(Method::GET, &format!("/Users/{id}"), Value::Null);
    assert_eq!(s, 200, "{v}");
    v
}

fn bulk(srv: &Server, token: &str, ops: Value) -> Value {
    let (s, v) = srv.scim_as(
        token,
        Method::POST,
        "/Bulk",
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops}),
    );
    assert_eq!(s, 200, "{v}");
    v
}

fn another_clients_change_to_an_owned_attribute_is_ignored(env: Env) {
    let srv = Server::start(&env);
    let c = clients(&srv);
    let (s, created) = srv.scim_as(&c.workday, Method::POST, "/Users", ada());
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    env.run();
    assert_eq!(env.events(&id), vec!["joiner"]);

    // Okta moves her to Sales and renames her: the rename applies, the department stays (HR
    // owns it), so nothing in the lifecycle moves.
    let (s, v) = srv.scim_as(
        &c.okta,
        Method::PATCH,
        &format!("/Users/{id}"),
        patch(json!([
            {"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "Sales"},
            {"op": "replace", "path": "displayName", "value": "Ada L."},
            {"op": "replace", "path": "active", "value": false},
        ])),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[ENTERPRISE]["department"], "Engineering");
    assert_eq!(v["active"], true);
    assert_eq!(v["displayName"], "Ada L.");
    // (the rename is an update of the accounts' display name; nobody moved or left)
    assert_eq!(env.events(&id), vec!["joiner", "update"]);

    // A PUT from okta that does not carry the owned attributes keeps them.
    let (s, v) = srv.scim_as(
        &c.okta,
        Method::PUT,
        &format!("/Users/{id}"),
        json!({"schemas": [CORE], "userName": "ada", "displayName": "Ada Lovelace", "userType": "Employee"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["title"].as_str(), v["active"].as_bool()),
        (Some("Engineer"), Some(true))
    );
    assert_eq!(v[ENTERPRISE]["department"], "Engineering");
    assert_eq!(v["displayName"], "Ada Lovelace");

    // The same through /Bulk.
    let out = bulk(
        &srv,
        &c.okta,
        json!([{"method": "PATCH", "path": format!("/Users/{id}"),
                "data": patch(json!([{"op": "replace", "path": "title", "value": "CEO"}]))}]),
    );
    assert_eq!(out["Operations"][0]["status"], "200", "{out}");
    assert_eq!(get(&srv, &id)["title"], "Engineer");

    // The owner changes them.
    let (s, v) = srv.scim_as(
        &c.workday,
        Method::PATCH,
        &format!("/Users/{id}"),
        patch(json!([
            {"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "Sales"},
            {"op": "replace", "path": "title", "value": "Account Executive"},
        ])),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[ENTERPRISE]["department"], "Sales");
    assert_eq!(env.events(&id).last().map(String::as_str), Some("mover"));
}

fn reject_refuses_with_mutability_and_writes_nothing(env: Env) {
    let srv = Server::start(&env);
    let c = clients(&srv);
    let (_, created) = srv.scim_as(&c.workday, Method::POST, "/Users", ada());
    let id = created["id"].as_str().unwrap().to_string();
    let version = get(&srv, &id)["meta"]["version"].clone();

    let expect_refusal = |got: (u16, Value)| {
        let e = assert_error(got, 400);
        assert_eq!(e["scimType"], "mutability", "{e}");
        assert_eq!(
            e["detail"],
            "costCenter is maintained by its source of truth, the client \"vms\"; this client \
             may not change it."
        );
    };
    // PATCH, PUT with another value, and a PATCH removing it: refused, whoever is not vms.
    expect_refusal(srv.scim_as(
        &c.okta,
        Method::PATCH,
        &format!("/Users/{id}"),
        patch(json!([
            {"op": "replace", "path": "displayName", "value": "changed"},
            {"op": "replace", "path": format!("{ENTERPRISE}:costCenter"), "value": "7"},
        ])),
    ));
    let mut put = ada();
    put[ENTERPRISE]["costCenter"] = json!("7");
    expect_refusal(srv.scim_as(&c.workday, Method::PUT, &format!("/Users/{id}"), put));
    expect_refusal(srv.scim_as(
        &c.okta,
        Method::PATCH,
        &format!("/Users/{id}"),
        patch(json!([{"op": "remove", "path": format!("{ENTERPRISE}:costCenter")}])),
    ));
    // In /Bulk the operation fails alone, with the same error.
    let out = bulk(
        &srv,
        &c.okta,
        json!([{"method": "PATCH", "path": format!("/Users/{id}"),
                "data": patch(json!([{"op": "replace", "path": format!("{ENTERPRISE}:costCenter"), "value": "7"}]))}]),
    );
    let op = &out["Operations"][0];
    assert_eq!(op["status"], "400", "{out}");
    assert_eq!(op["response"]["scimType"], "mutability", "{out}");
    let now = get(&srv, &id);
    assert_eq!(now["meta"]["version"], version, "nothing was written");
    assert_eq!(now["displayName"], "Ada");
    assert_eq!(now[ENTERPRISE]["costCenter"], "42");

    // A PUT that leaves it out keeps it; the owner changes it.
    let mut put = ada();
    put[ENTERPRISE] = json!({"department": "Engineering"});
    put["displayName"] = json!("Ada L.");
    let (s, v) = srv.scim_as(&c.workday, Method::PUT, &format!("/Users/{id}"), put);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[ENTERPRISE]["costCenter"], "42");
    let (s, v) = srv.scim_as(
        &c.vms,
        Method::PATCH,
        &format!("/Users/{id}"),
        patch(json!([{"op": "replace", "path": format!("{ENTERPRISE}:costCenter"), "value": "7"}])),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[ENTERPRISE]["costCenter"], "7");
}

fn creating_and_filling_empty_owned_attributes_is_allowed(env: Env) {
    let srv = Server::start(&env);
    let c = clients(&srv);
    // The IdP creates the user before HR knows them: its values stand until the owner writes.
    let mut u = ada();
    u[ENTERPRISE] = json!({"department": "Engineering"});
    u.as_object_mut().unwrap().remove("title");
    let (s, created) = srv.scim_as(&c.okta, Method::POST, "/Users", u);
    assert_eq!(s, 201, "{created}");
    assert_eq!(created[ENTERPRISE]["department"], "Engineering");
    let id = created["id"].as_str().unwrap().to_string();
    // No title yet: okta may fill it (and vms's cost center, still empty, too); once set, the
    // owner's word counts.
    let (s, v) = srv.scim_as(
        &c.okta,
        Method::PATCH,
        &format!("/Users/{id}"),
        patch(json!([
            {"op": "add", "path": "title", "value": "Engineer"},
            {"op": "add", "path": format!("{ENTERPRISE}:costCenter"), "value": "42"},
        ])),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["title"], "Engineer");
    assert_eq!(v[ENTERPRISE]["costCenter"], "42");
    let (_, v) = srv.scim_as(
        &c.okta,
        Method::PATCH,
        &format!("/Users/{id}"),
        patch(json!([{"op": "replace", "path": "title", "value": "Lead"}])),
    );
    assert_eq!(v["title"], "Engineer");
    let (_, v) = srv.scim_as(
        &c.workday,
        Method::PATCH,
        &format!("/Users/{id}"),
        patch(json!([{"op": "replace", "path": "title", "value": "Lead"}])),
    );
    assert_eq!(v["title"], "Lead");
    // A simulation of okta's write plans what the real write would: nothing, the change being
    // dropped.
    let (s, sim) = srv.post(
        "/simulate",
        json!({"user": "ada", "client": "okta", "set": {format!("{ENTERPRISE}:department"): "Sales"}}),
    );
    assert_eq!(s, 200, "{sim}");
    assert_eq!(sim["users"], json!([]), "{sim}");
    let (s, sim) = srv.post(
        "/simulate",
        json!({"user": "ada", "client": "workday", "set": {format!("{ENTERPRISE}:department"): "Sales"}}),
    );
    assert_eq!(s, 200, "{sim}");
    assert_eq!(sim["users"][0]["event"], "mover", "{sim}");
}

fn deleting_a_user_is_for_the_owner_of_active_or_scim_delete(env: Env) {
    let srv = Server::start(&env);
    let c = clients(&srv);
    let janitor = srv.token("janitor", &["scim:read", "scim:write", "scim:delete"], None);
    let mut ids = Vec::new();
    for name in ["ada", "bob", "cyd", "dan"] {
        let mut u = ada();
        u["userName"] = json!(name);
        let (s, created) = srv.scim_as(&c.workday, Method::POST, "/Users", u);
        assert_eq!(s, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    env.run();
    let [ada_id, bob, cyd, dan] = [&ids[0], &ids[1], &ids[2], &ids[3]];
    let version = get(&srv, ada_id)["meta"]["version"].clone();

    // okta and vms own no `active`: their DELETE of a User is refused with 403, naming the
    // rule and the owner, and nothing happens.
    let expected = "Users are deleted by their source of truth for active, the client \
                    \"workday\"; this client may not delete them (it would need the scim:delete \
                    scope).";
    for token in [&c.okta, &c.vms] {
        let e = assert_error(
            srv.scim_as(
                token,
                Method::DELETE,
                &format!("/Users/{ada_id}"),
                Value::Null,
            ),
            403,
        );
        assert_eq!(e["detail"], expected, "{e}");
        assert!(e.get("scimType").is_none(), "{e}");
    }
    // A simulation of okta's DELETE gets the refusal the real request would.
    let e = assert_error(
        srv.post(
            "/simulate",
            json!({"method": "DELETE", "path": format!("/Users/{ada_id}"), "client": "okta"}),
        ),
        403,
    );
    assert_eq!(e["detail"], expected, "{e}");
    // In /Bulk the refused DELETE fails alone; the other operations apply.
    let out = bulk(
        &srv,
        &c.okta,
        json!([
            {"method": "DELETE", "path": format!("/Users/{ada_id}")},
            {"method": "PATCH", "path": format!("/Users/{bob}"),
             "data": patch(json!([{"op": "replace", "path": "displayName", "value": "Bob B."}]))},
            {"method": "POST", "path": "/Users", "bulkId": "eve",
             "data": {"schemas": [CORE], "userName": "eve"}},
            {"method": "POST", "path": "/Groups", "bulkId": "g",
             "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g"}},
        ]),
    );
    let statuses: Vec<&str> = out["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["403", "200", "201", "201"], "{out}");
    assert_eq!(
        out["Operations"][0]["response"]["detail"], expected,
        "{out}"
    );
    assert_eq!(get(&srv, bob)["displayName"], "Bob B.");
    let now = get(&srv, ada_id);
    assert_eq!(now["meta"]["version"], version, "ada was not touched");
    env.run();
    assert!(
        !env.events(ada_id).iter().any(|e| e == "leaver"),
        "{:?}",
        env.events(ada_id)
    );
    // Groups have no source of truth: any writer deletes them.
    let group = out["Operations"][3]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let (s, v) = srv.scim_as(
        &c.okta,
        Method::DELETE,
        &format!("/Groups/{group}"),
        Value::Null,
    );
    assert_eq!(s, 204, "{v}");

    // The owner of active deletes (directly and in /Bulk), and so does a scim:delete client;
    // each deletion is a leaver.
    let (s, v) = srv.scim_as(
        &c.workday,
        Method::DELETE,
        &format!("/Users/{cyd}"),
        Value::Null,
    );
    assert_eq!(s, 204, "{v}");
    let (s, v) = srv.scim_as(
        &janitor,
        Method::DELETE,
        &format!("/Users/{bob}"),
        Value::Null,
    );
    assert_eq!(s, 204, "{v}");
    let out = bulk(
        &srv,
        &c.workday,
        json!([{"method": "DELETE", "path": format!("/Users/{dan}")}]),
    );
    assert_eq!(out["Operations"][0]["status"], "204", "{out}");
    env.run();
    for id in [cyd, bob, dan] {
        let (s, _) = srv.scim(Method::GET, &format!("/Users/{id}"), Value::Null);
        assert_eq!(s, 404);
        assert!(
            env.events(id).iter().any(|e| e == "leaver"),
            "{id}: {:?}",
            env.events(id)
        );
    }
}

/// With one-click links configured, `emails` is where a person's links are mailed: like the
/// manager, an owned address cannot be filled by another client even while it is empty (else
/// a scim:write client could give an approver created without one its own address). Without
/// links it is an ordinary owned attribute, which another client may fill while empty.
fn an_owned_email_is_not_filled_by_another_client_when_links_are_mailed(links: bool, pg: bool) {
    let key = std::env::temp_dir().join(super::unique("scimhub-sources-link-key"));
    std::fs::write(&key, "0123456789abcdef0123456789abcdef").unwrap();
    let mut text = policy();
    if links {
        text = text.replace(
            "[notify]\n",
            &format!(
                "[notify]\nlink_secret = {{ file = {:?} }}\n",
                key.display().to_string()
            ),
        );
    }
    let Some(env) = Env::new(pg, &text) else {
        return;
    };
    let srv = Server::start(&env);
    let c = clients(&srv);
    let (s, created) = srv.scim_as(&c.okta, Method::POST, "/Users", ada());
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (s, v) = srv.scim_as(
        &c.okta,
        Method::PATCH,
        &format!("/Users/{id}"),
        patch(json!([{"op": "add", "path": "emails",
                      "value": [{"value": "okta@evil.example", "primary": true}]}])),
    );
    assert_eq!(s, 200, "{v}");
    let stored = get(&srv, &id);
    assert_eq!(stored.get("emails").is_some(), !links, "{stored}");
    let _ = std::fs::remove_file(key);
}

mod owned_email {
    #[test]
    fn sqlite() {
        for links in [true, false] {
            super::an_owned_email_is_not_filled_by_another_client_when_links_are_mailed(
                links, false,
            );
        }
    }
    #[test]
    fn postgres() {
        for links in [true, false] {
            super::an_owned_email_is_not_filled_by_another_client_when_links_are_mailed(
                links, true,
            );
        }
    }
}
