//! A stateful fake of the parts of Okta's Management API the Okta connector uses, following
//! Okta's documented API (developer.okta.com: Users, User Lifecycle, User Sessions, Groups) and
//! its user state machine:
//!
//! * `SSWS` API token only (`Bearer`, missing or unknown → 401 `E0000011 Invalid token provided`);
//!   bodies must be `application/json` (else 415).
//! * create: `profile.login`, `email`, `firstName`, `lastName` required (400 `E0000001` with
//!   causes); duplicate login → 400 `E0000001` "login: An object with this field already
//!   exists…"; `activate=true` makes a user with a password or the FEDERATION provider ACTIVE, one
//!   without credentials PROVISIONED; `activate=false` → STAGED.
//! * lifecycle: `suspend` only from ACTIVE; `unsuspend` only from SUSPENDED; `activate` only from
//!   STAGED/DEPROVISIONED (ACTIVE → 403 `E0000016`); `deactivate` from anything but
//!   DEPROVISIONED. Deactivation ends sessions and removes group memberships.
//! * `DELETE /users/{id}` deactivates a user that is not DEPROVISIONED, deletes one that is.
//! * `GET /users/{id or login}`, also a login's short name (the part before `@`, when one user
//!   has it) and `me` (the API token's owner, see [`OktaFake::set_token_owner`]); unknown → 404
//!   `E0000007 Not found: Resource not found: … (User)`.
//! * `GET /users?limit&after` with `Link` headers (`rel="self"`, `rel="next"`).
//! * groups: `GET /groups?q=` (name prefix), `PUT`/`DELETE /groups/{gid}/users/{uid}` (204),
//!   `GET /users/{id}/groups`.
//! * `GET /users/{id or login}/roles`: the admin roles assigned to the user (Role objects with
//!   `type` e.g. `SUPER_ADMIN`, `ORG_ADMIN`), `[]` for a user without any; unknown user → 404.
//! * rate limiting on demand: 429 `E0000047` with `X-Rate-Limit-Limit/Remaining/Reset`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use super::scim_http::{self, Request, Response, TestServer};

pub const TOKEN: &str = "00fakeOktaApiTokenForTests";

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub status: String,
    pub profile: Map<String, Value>,
    pub has_credentials: bool,
    pub sessions: u32,
    pub oauth_tokens: u32,
}

#[derive(Default)]
pub struct OktaState {
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, String>,     // id → name
    pub members: BTreeSet<(String, String)>,  // (gid, uid)
    pub roles: BTreeMap<String, Vec<String>>, // uid → admin role types
    /// The user `me` names: the API token's owner.
    pub token_owner: Option<String>,
    pub next_id: u64,
    /// Answer the next N calls with 429 E0000047.
    pub rate_limited: u32,
    pub host: String,
}

pub struct OktaFake {
    pub server: TestServer,
    pub state: Arc<Mutex<OktaState>>,
}

impl OktaFake {
    pub fn base_url(&self) -> String {
        self.server.url("")
    }

    pub fn add_group(&self, name: &str) -> String {
        let mut st = self.state.lock().expect("lock");
        st.next_id += 1;
        let id = format!("00g{:05}", st.next_id);
        st.groups.insert(id.clone(), name.to_owned());
        id
    }

    /// A user that already exists in Okta (ACTIVE, with a password), with live sessions.
    pub fn add_active_user(&self, login: &str, first: &str) -> String {
        let mut st = self.state.lock().expect("lock");
        st.next_id += 1;
        let id = format!("00u{:05}", st.next_id);
        let profile =
            json!({"login": login, "email": login, "firstName": first, "lastName": "Pre"});
        st.users.insert(
            id.clone(),
            User {
                id: id.clone(),
                status: "ACTIVE".into(),
                profile: profile.as_object().cloned().unwrap_or_default(),
                has_credentials: true,
                sessions: 2,
                oauth_tokens: 1,
            },
        );
        id
    }

    /// Assigns an admin role (`SUPER_ADMIN`, `ORG_ADMIN`, …) to a user.
    pub fn assign_role(&self, uid: &str, role_type: &str) {
        let mut st = self.state.lock().expect("lock");
        st.roles
            .entry(uid.to_owned())
            .or_default()
            .push(role_type.to_owned());
    }

    /// Makes `uid` the owner of the API token (what `GET /users/me` returns).
    pub fn set_token_owner(&self, uid: &str) {
        self.state.lock().expect("lock").token_owner = Some(uid.to_owned());
    }

    pub fn user(&self, id: &str) -> Option<User> {
        self.state.lock().expect("lock").users.get(id).cloned()
    }

    pub fn members(&self, gid: &str) -> Vec<String> {
        let st = self.state.lock().expect("lock");
        st.members
            .iter()
            .filter(|(g, _)| g == gid)
            .map(|(_, u)| u.clone())
            .collect()
    }

    pub fn set_sessions(&self, id: &str, n: u32) {
        if let Some(u) = self.state.lock().expect("lock").users.get_mut(id) {
            u.sessions = n;
            u.oauth_tokens = n;
        }
    }
}

fn error(status: u16, code: &str, summary: &str, causes: &[&str]) -> Response {
    let causes: Vec<Value> = causes.iter().map(|c| json!({"errorSummary": c})).collect();
    Response::json(
        status,
        json!({"errorCode": code, "errorSummary": summary, "errorLink": code,
               "errorId": "oaeFakeErrorId", "errorCauses": causes}),
    )
}

fn not_found(what: &str, kind: &str) -> Response {
    error(
        404,
        "E0000007",
        &format!("Not found: Resource not found: {what} ({kind})"),
        &[],
    )
}

fn user_json(st: &OktaState, u: &User) -> Value {
    json!({
        "id": u.id,
        "status": u.status,
        "created": "2024-01-01T00:00:00.000Z",
        "profile": u.profile,
        "credentials": if u.has_credentials { json!({"provider": {"type": "OKTA", "name": "OKTA"}}) } else { json!({}) },
        "_links": {"self": {"href": format!("http://{}/api/v1/users/{}", st.host, u.id)}}
    })
}

fn group_json(id: &str, name: &str) -> Value {
    json!({"id": id, "type": "OKTA_GROUP", "profile": {"name": name, "description": null}})
}

fn find_user_id(st: &OktaState, id_or_login: &str) -> Option<String> {
    if st.users.contains_key(id_or_login) {
        return Some(id_or_login.to_owned());
    }
    if id_or_login == "me" {
        // (a deleted owner's token would be revoked with it)
        return st
            .token_owner
            .clone()
            .filter(|id| st.users.contains_key(id));
    }
    let login_of = |u: &User| {
        u.profile
            .get("login")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if let Some(u) = st
        .users
        .values()
        .find(|u| login_of(u).eq_ignore_ascii_case(id_or_login))
    {
        return Some(u.id.clone());
    }
    // Okta also takes a login's short name when it names one user
    if id_or_login.contains('@') {
        return None;
    }
    let short: Vec<&User> = st
        .users
        .values()
        .filter(|u| {
            login_of(u)
                .split('@')
                .next()
                .is_some_and(|s| s.eq_ignore_ascii_case(id_or_login))
        })
        .collect();
    match short.as_slice() {
        [one] => Some(one.id.clone()),
        _ => None,
    }
}

fn deactivate(st: &mut OktaState, uid: &str) {
    if let Some(u) = st.users.get_mut(uid) {
        u.status = "DEPROVISIONED".into();
        u.sessions = 0;
        u.oauth_tokens = 0;
    }
    st.members.retain(|(_, m)| m != uid);
}

fn handle(state: &Mutex<OktaState>, req: &Request) -> Response {
    let mut st = state.lock().expect("lock");
    if let Some(host) = req.header("host") {
        st.host = host.to_owned();
    }
    match req
        .header("authorization")
        .and_then(|h| h.strip_prefix("SSWS "))
    {
        Some(t) if t == TOKEN => {}
        _ => return error(401, "E0000011", "Invalid token provided", &[]),
    }
    if st.rate_limited > 0 {
        st.rate_limited -= 1;
        let reset = chrono::Utc::now().timestamp() + 2;
        return error(
            429,
            "E0000047",
            "API call exceeded rate limit due to too many requests.",
            &[],
        )
        .with_header("X-Rate-Limit-Limit", "600")
        .with_header("X-Rate-Limit-Remaining", "0")
        .with_header("X-Rate-Limit-Reset", &reset.to_string());
    }
    if !req.body.is_empty()
        && !req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    {
        return error(415, "E0000001", "Unsupported media type", &[]);
    }
    let seg = req.segments();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    match (m, seg.as_slice()) {
        ("POST", ["api", "v1", "users"]) => create_user(&mut st, req),
        ("GET", ["api", "v1", "users"]) => list_users(&st, req),
        ("GET", ["api", "v1", "users", who]) => match find_user_id(&st, who) {
            Some(id) => Response::json(200, user_json(&st, &st.users[&id])),
            None => not_found(who, "User"),
        },
        ("POST", ["api", "v1", "users", who]) => {
            let Some(id) = find_user_id(&st, who) else {
                return not_found(who, "User");
            };
            let Some(profile) = req.json().and_then(|b| b.get("profile").cloned()) else {
                return error(
                    400,
                    "E0000003",
                    "The request body was not well-formed.",
                    &[],
                );
            };
            let Some(user) = st.users.get_mut(&id) else {
                return not_found(who, "User");
            };
            for (k, v) in profile.as_object().cloned().unwrap_or_default() {
                user.profile.insert(k, v);
            }
            let u = st.users[&id].clone();
            Response::json(200, user_json(&st, &u))
        }
        ("DELETE", ["api", "v1", "users", who]) => {
            let Some(id) = find_user_id(&st, who) else {
                return not_found(who, "User");
            };
            if st.users[&id].status == "DEPROVISIONED" {
                st.users.remove(&id);
                st.members.retain(|(_, m)| m != &id);
            } else {
                deactivate(&mut st, &id);
            }
            Response::empty(204)
        }
        ("POST", ["api", "v1", "users", who, "lifecycle", op]) => lifecycle(&mut st, who, op),
        ("DELETE", ["api", "v1", "users", who, "sessions"]) => {
            let Some(id) = find_user_id(&st, who) else {
                return not_found(who, "User");
            };
            let oauth = req.query_param("oauthTokens").as_deref() == Some("true");
            if let Some(u) = st.users.get_mut(&id) {
                u.sessions = 0;
                if oauth {
                    u.oauth_tokens = 0;
                }
            }
            Response::empty(204)
        }
        ("GET", ["api", "v1", "users", who, "roles"]) => {
            let Some(id) = find_user_id(&st, who) else {
                return not_found(who, "User");
            };
            let roles: Vec<Value> = st
                .roles
                .get(&id)
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, t)| {
                    json!({
                        "id": format!("ra{id}{i}"), "label": t, "type": t,
                        "status": "ACTIVE", "assignmentType": "USER",
                        "created": "2026-01-01T00:00:00.000Z",
                        "lastUpdated": "2026-01-01T00:00:00.000Z"
                    })
                })
                .collect();
            Response::json(200, Value::Array(roles))
        }
        ("GET", ["api", "v1", "users", who, "groups"]) => {
            let Some(id) = find_user_id(&st, who) else {
                return not_found(who, "User");
            };
            let groups: Vec<Value> = st
                .members
                .iter()
                .filter(|(_, u)| u == &id)
                .map(|(g, _)| group_json(g, &st.groups[g]))
                .collect();
            Response::json(200, Value::Array(groups))
        }
        ("GET", ["api", "v1", "groups"]) => {
            let q = req.query_param("q").unwrap_or_default().to_lowercase();
            let groups: Vec<Value> = st
                .groups
                .iter()
                .filter(|(_, n)| n.to_lowercase().starts_with(&q))
                .map(|(id, n)| group_json(id, n))
                .collect();
            Response::json(200, Value::Array(groups))
        }
        ("PUT" | "DELETE", ["api", "v1", "groups", gid, "users", uid]) => {
            if !st.groups.contains_key(*gid) {
                return not_found(gid, "UserGroup");
            }
            if !st.users.contains_key(*uid) {
                return not_found(uid, "User");
            }
            let key = (gid.to_string(), uid.to_string());
            if m == "PUT" {
                st.members.insert(key);
            } else {
                st.members.remove(&key);
            }
            Response::empty(204)
        }
        _ => error(
            404,
            "E0000022",
            "The endpoint does not support the provided HTTP method",
            &[],
        ),
    }
}

fn create_user(st: &mut OktaState, req: &Request) -> Response {
    let Some(body) = req.json() else {
        return error(
            400,
            "E0000003",
            "The request body was not well-formed.",
            &[],
        );
    };
    let profile = body
        .get("profile")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut causes = Vec::new();
    for k in ["login", "email", "firstName", "lastName"] {
        if profile
            .get(k)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(format!("{k}: The field cannot be left blank"));
        }
    }
    let login = profile.get("login").and_then(Value::as_str).unwrap_or("");
    if !login.is_empty() && find_user_id(st, login).is_some() {
        causes.push(
            "login: An object with this field already exists in the current organization".into(),
        );
    }
    if !causes.is_empty() {
        let refs: Vec<&str> = causes.iter().map(String::as_str).collect();
        return error(400, "E0000001", "Api validation failed: login", &refs);
    }
    let creds = body.get("credentials");
    let federated = creds
        .and_then(|c| c.pointer("/provider/type"))
        .and_then(Value::as_str)
        == Some("FEDERATION");
    let password = creds.and_then(|c| c.get("password")).is_some();
    let activate = req.query_param("activate").as_deref() != Some("false");
    let status = match (activate, federated || password) {
        (false, _) => "STAGED",
        (true, true) => "ACTIVE",
        (true, false) => "PROVISIONED",
    };
    st.next_id += 1;
    let id = format!("00u{:05}", st.next_id);
    let user = User {
        id: id.clone(),
        status: status.into(),
        profile,
        has_credentials: federated || password,
        sessions: 0,
        oauth_tokens: 0,
    };
    st.users.insert(id, user.clone());
    Response::json(200, user_json(st, &user))
}

fn lifecycle(st: &mut OktaState, who: &str, op: &str) -> Response {
    let Some(id) = find_user_id(st, who) else {
        return not_found(who, "User");
    };
    let status = st.users[&id].status.clone();
    let bad = |summary: &str| error(400, "E0000001", "Api validation failed", &[summary]);
    let new_status = match op {
        "suspend" if status == "ACTIVE" => "SUSPENDED",
        "suspend" => return bad("Cannot suspend a user that is not active"),
        "unsuspend" if status == "SUSPENDED" => "ACTIVE",
        "unsuspend" => return bad("Cannot unsuspend a user that is not suspended"),
        "activate" if status == "STAGED" || status == "DEPROVISIONED" => {
            if st.users[&id].has_credentials {
                "ACTIVE"
            } else {
                "PROVISIONED"
            }
        }
        "activate" => {
            return error(
                403,
                "E0000016",
                "Activation failed because the user is already active",
                &[],
            )
        }
        "deactivate" if status != "DEPROVISIONED" => {
            deactivate(st, &id);
            return Response::json(200, json!({}));
        }
        "deactivate" => return bad("Cannot deactivate a user that is deprovisioned"),
        _ => {
            return error(
                404,
                "E0000022",
                "The endpoint does not support the provided HTTP method",
                &[],
            )
        }
    };
    if let Some(u) = st.users.get_mut(&id) {
        u.status = new_status.into();
    }
    Response::json(200, json!({}))
}

fn list_users(st: &OktaState, req: &Request) -> Response {
    let limit: usize = req
        .query_param("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(200)
        .clamp(1, 200);
    let after = req.query_param("after");
    let users: Vec<&User> = st
        .users
        .values()
        .filter(|u| after.as_ref().is_none_or(|a| u.id.as_str() > a.as_str()))
        .collect();
    let page: Vec<Value> = users.iter().take(limit).map(|u| user_json(st, u)).collect();
    let base = format!("http://{}/api/v1/users", st.host);
    let mut resp = Response::json(200, Value::Array(page))
        .with_header("Link", &format!("<{base}?limit={limit}>; rel=\"self\""));
    if users.len() > limit {
        let last = &users[limit - 1].id;
        resp = resp.with_header(
            "Link",
            &format!("<{base}?after={last}&limit={limit}>; rel=\"next\""),
        );
    }
    resp
}

pub async fn start() -> OktaFake {
    let state = Arc::new(Mutex::new(OktaState::default()));
    let s = state.clone();
    let server = scim_http::serve(move |req: Request| handle(&s, &req)).await;
    OktaFake { server, state }
}
