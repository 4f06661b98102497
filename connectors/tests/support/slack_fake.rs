//! A stateful fake of Slack's Web API methods `users.info` (docs.slack.dev/reference/methods/
//! users.info: GET or form POST with `user`, scope `users:read`, the user object with `is_admin`,
//! `is_owner`, `is_primary_owner`, `is_bot`; a JSON body is not read, so `user` is missing →
//! `invalid_arguments`) and `admin.users.session.reset`, following Slack's documentation
//! (docs.slack.dev/reference/methods/admin.users.session.reset): POST only,
//! `application/x-www-form-urlencoded` or `application/json` bodies, token in
//! `Authorization: Bearer` (or a `token` form field), HTTP 200 with `{"ok":false,"error":…}` for
//! failures, HTTP 429 + `Retry-After` + `ratelimited` when rate limited.
//!
//! It rejects what the real API rejects: no token (`not_authed`), unknown token (`invalid_auth`),
//! a token without `admin.users:write` (`missing_scope`, with `needed`/`provided`), a wrong
//! content type (`invalid_post_type`), a missing `user_id` (`invalid_arguments`), an unknown user
//! (`user_not_found`), a bot (`cannot_reset_bot`), an unknown method (`unknown_method`). Slack does
//! not document its answer to GET on this POST-only method; the fake answers
//! `{"ok":false,"error":"method_not_supported"}` so a client that sends GET fails loudly.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::scim_http::{self, form_pairs, Request, Response, TestServer};

pub const ADMIN_TOKEN: &str = "xoxp-fake-org-admin-token";
pub const BOT_TOKEN: &str = "xoxb-fake-bot-token-no-admin";

#[derive(Default)]
pub struct SlackState {
    /// Known users: id → is_bot.
    pub users: HashMap<String, bool>,
    /// Admin roles: id → `primary_owner`, `owner` or `admin`.
    pub roles: HashMap<String, String>,
    /// Users whose sessions were reset, in order, with (mobile_only, web_only).
    pub resets: Vec<(String, bool, bool)>,
    /// When set, the next N calls answer 429 ratelimited with this Retry-After.
    pub rate_limit: Option<(u32, u64)>,
    pub tokens: HashSet<String>,
}

pub struct SlackFake {
    pub server: TestServer,
    pub state: Arc<Mutex<SlackState>>,
}

impl SlackFake {
    pub fn api_base(&self) -> String {
        self.server.url("/api")
    }

    pub fn add_user(&self, id: &str, bot: bool) {
        self.state
            .lock()
            .expect("lock")
            .users
            .insert(id.to_owned(), bot);
    }

    /// Makes a known user a `primary_owner`, `owner` or `admin`.
    pub fn set_role(&self, id: &str, role: &str) {
        self.state
            .lock()
            .expect("lock")
            .roles
            .insert(id.to_owned(), role.to_owned());
    }

    pub fn resets(&self) -> Vec<(String, bool, bool)> {
        self.state.lock().expect("lock").resets.clone()
    }
}

fn err(code: &str) -> Response {
    Response::json(200, json!({"ok": false, "error": code}))
}

fn handle(state: &Mutex<SlackState>, req: &Request) -> Response {
    let mut st = state.lock().expect("lock");
    if let Some((n, secs)) = st.rate_limit {
        if n > 0 {
            st.rate_limit = if n > 1 { Some((n - 1, secs)) } else { None };
            return Response::json(429, json!({"ok": false, "error": "ratelimited"}))
                .with_header("Retry-After", &secs.to_string());
        }
    }
    let segments = req.segments();
    let method = match segments.as_slice() {
        [api, m] if api == "api" => m.clone(),
        _ => return Response::empty(404),
    };
    if method == "users.info" {
        return users_info(&st, req);
    }
    if method != "admin.users.session.reset" {
        return err("unknown_method");
    }
    if req.method != "POST" {
        return err("method_not_supported");
    }
    let content_type = req
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut warning = None;
    let args: HashMap<String, Value> = if content_type.starts_with("application/json") {
        if !content_type.contains("charset") {
            warning = Some("missing_charset");
        }
        match req.json() {
            Some(Value::Object(m)) => m.into_iter().collect(),
            _ => return err("invalid_json"),
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        form_pairs(&String::from_utf8_lossy(&req.body))
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect()
    } else {
        return err("invalid_post_type");
    };
    // Slack: a JSON body cannot carry the token; it must be in the Authorization header.
    let token = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| {
            (!content_type.starts_with("application/json"))
                .then(|| args.get("token").and_then(Value::as_str).map(str::to_owned))
                .flatten()
        });
    let Some(token) = token else {
        return err("not_authed");
    };
    if !st.tokens.contains(&token) {
        return err("invalid_auth");
    }
    if token != ADMIN_TOKEN {
        return Response::json(
            200,
            json!({"ok": false, "error": "missing_scope", "needed": "admin.users:write",
                   "provided": "chat:write,users:read"}),
        );
    }
    let Some(user_id) = args
        .get("user_id")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    else {
        return err("invalid_arguments");
    };
    let flag = |k: &str| match args.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        _ => false,
    };
    match st.users.get(user_id) {
        None => return err("user_not_found"),
        Some(true) => return err("cannot_reset_bot"),
        Some(false) => {}
    }
    let entry = (user_id.to_owned(), flag("mobile_only"), flag("web_only"));
    st.resets.push(entry);
    let mut body = json!({"ok": true});
    if let Some(w) = warning {
        body["warning"] = json!(w);
    }
    Response::json(200, body)
}

fn users_info(st: &SlackState, req: &Request) -> Response {
    let Some(token) = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return err("not_authed");
    };
    if !st.tokens.contains(token) {
        return err("invalid_auth");
    }
    // arguments come from the query string or a form body, never from JSON
    let mut args: HashMap<String, String> = req
        .query_param("user")
        .map(|u| ("user".to_owned(), u))
        .into_iter()
        .collect();
    if req.method == "POST"
        && req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        args.extend(form_pairs(&String::from_utf8_lossy(&req.body)));
    }
    let Some(id) = args.get("user").filter(|u| !u.is_empty()) else {
        return err("invalid_arguments");
    };
    let Some(&bot) = st.users.get(id) else {
        return err("user_not_found");
    };
    let role = st.roles.get(id).map(String::as_str);
    Response::json(
        200,
        json!({"ok": true, "user": {
            "id": id, "team_id": "T0FAKE", "name": id.to_lowercase(), "deleted": false,
            "is_bot": bot,
            "is_primary_owner": role == Some("primary_owner"),
            "is_owner": matches!(role, Some("primary_owner" | "owner")),
            "is_admin": matches!(role, Some("primary_owner" | "owner" | "admin")),
        }}),
    )
}

pub async fn start() -> SlackFake {
    let state = Arc::new(Mutex::new(SlackState::default()));
    {
        let mut st = state.lock().expect("lock");
        st.tokens.insert(ADMIN_TOKEN.to_owned());
        st.tokens.insert(BOT_TOKEN.to_owned());
    }
    let s = state.clone();
    let server = scim_http::serve(move |req: Request| handle(&s, &req)).await;
    SlackFake { server, state }
}
