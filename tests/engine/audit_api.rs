//! `GET /admin/v1/audit`: the chain through the admin API (paging by seq cursor, filters by
//! user, actor, event and connector, the `admin` scope), with the engine's plan and operation
//! entries and the SCIM writes in one chain that verifies.

use scim_server::store::audit_chain::VerifyOptions;
use serde_json::{json, Value};

use super::admin_api::{policy, Server};
use super::{user, Env};

macro_rules! audit_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(false, &super::policy()) { super::$name(e) } } )* }
        mod postgres { $( #[test] fn $name() { if let Some(e) = super::super::Env::new(true, &super::policy()) { super::$name(e) } } )* }
    };
}

audit_backends!(audit_api_pages_and_filters_one_chain);

fn audit_api_pages_and_filters_one_chain(env: Env) {
    let srv = Server::start(&env);
    let mut ada = user("ada", "Employee", "Engineering", "Engineer");
    ada["schemas"] = json!([
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    ]);
    let (s, v) = srv.scim_as(&srv.scim_token, reqwest::Method::POST, "/Users", ada);
    assert_eq!(s, 201, "{v}");
    let ada = v["id"].as_str().unwrap().to_string();
    env.run();

    // Everything in one chain: the SCIM write, the plan, each operation's outcome.
    let (s, all) = srv.get("/audit?limit=1000");
    assert_eq!(s, 200, "{all}");
    let entries = all["Resources"].as_array().unwrap().clone();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"scim.user.create"), "{actions:?}");
    assert!(actions.contains(&"plan"), "{actions:?}");
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert_eq!(all["head"]["seq"], json!(seqs.len()));
    assert_eq!(all["nextCursor"], Value::Null);
    let r = scim_server::admin::audit::verify(&env.store, &VerifyOptions::default()).unwrap();
    assert!(r.ok, "{:?}", r.finding);

    // Paging by cursor walks the same entries.
    let mut paged = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let path = match cursor {
            Some(c) => format!("/audit?limit=2&after={c}"),
            None => "/audit?limit=2".into(),
        };
        let (s, page) = srv.get(&path);
        assert_eq!(s, 200, "{page}");
        paged.extend(page["Resources"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(paged, entries);

    // Filters.
    let (_, mine) = srv.get(&format!("/audit?user={ada}&event=scim.user.create"));
    let mine = mine["Resources"].as_array().unwrap().clone();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["actor"], "hris");
    let (_, by_hris) = srv.get("/audit?actor=hris");
    assert!(by_hris["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "hris"));
    let connector = entries
        .iter()
        .find_map(|e| e["connector"].as_str())
        .expect("an operation on a connector");
    let (_, on) = srv.get(&format!("/audit?connector={connector}&event=*"));
    let on = on["Resources"].as_array().unwrap().clone();
    assert!(!on.is_empty() && on.iter().all(|e| e["connector"] == connector));
    let (_, scim) = srv.get("/audit?event=scim.");
    let scim = scim["Resources"].as_array().unwrap().clone();
    assert!(!scim.is_empty());
    assert!(scim
        .iter()
        .all(|e| e["action"].as_str().unwrap().starts_with("scim.")));
    let (s, head) = srv.get("/audit/head");
    assert_eq!(s, 200);
    assert_eq!(head["seq"], json!(seqs.len()));
    let (s, _) = srv.get("/audit?limit=0");
    assert_eq!(s, 400);
    let (s, _) = srv.get("/audit?from=yesterday");
    assert_eq!(s, 400);

    // The admin scope.
    let (s, _) = srv.call(reqwest::Method::GET, "/audit", &srv.scim_token, Value::Null);
    assert_eq!(s, 403);
}
