//! Okta as a downstream IdP, through its Management API (`/api/v1`) with an `SSWS` API token.
//!
//! * **create or adopt** — `GET /api/v1/users/{login}` (the answer must carry that login: Okta
//!   also resolves ids, short names and `me` there; `me` is refused outright); when absent,
//!   `POST /api/v1/users?activate=true` with `profile` {login, email, firstName, lastName, …}
//!   (and `credentials.provider` FEDERATION when `federated`, so the user is ACTIVE at once and
//!   signs in through the hub's IdP). A duplicate-login `E0000001` means someone created it
//!   meanwhile: look again and adopt. Adopting updates the profile.
//! * **update** — `POST /api/v1/users/{id}` with the changed `profile` attributes (a partial
//!   update in Okta's API).
//! * **disable** — `POST …/lifecycle/suspend` (only from ACTIVE) or `…/lifecycle/deactivate`, per
//!   [`OktaDisable`]; a user in another status (STAGED, PROVISIONED, LOCKED_OUT, RECOVERY,
//!   PASSWORD_EXPIRED) cannot be suspended, so it is deactivated. **enable** — `unsuspend` from
//!   SUSPENDED, `activate?sendEmail=false` from STAGED/DEPROVISIONED.
//! * **delete** — deactivate first when not DEPROVISIONED, then `DELETE /api/v1/users/{id}`; 404
//!   is success.
//! * **revoke sessions** — `DELETE /api/v1/users/{id}/sessions`; **revoke credentials** — the
//!   same with `oauthTokens=true`, which also revokes the OAuth access and refresh tokens Okta
//!   issued to the user.
//! * **grant / revoke** — `PUT` / `DELETE /api/v1/groups/{gid}/users/{uid}`; a group named by name
//!   is resolved with `GET /api/v1/groups?q=` and an exact name match.
//! * **read** — the user and `GET /api/v1/users/{id}/groups` (OKTA_GROUP type only).
//! * **list** — `GET /api/v1/users?limit=`, following the `Link: <…>; rel="next"` header; the page
//!   token is the `after` cursor only, so the API token is never sent to a URL taken from a
//!   response.
//!
//! * **protected users** — a user whose Okta login matches `protected_accounts` (names or
//!   `*`/`?` globs, case-insensitive) or who holds one of `protected_roles` (default
//!   `SUPER_ADMIN`, `ORG_ADMIN`; read with `GET /api/v1/users/{id}/roles`) is never adopted,
//!   updated, suspended, deleted, regrouped or signed out: each is a
//!   [`ConnectorError::refused`] error. Okta has no owner's mark: an existing user is adopted
//!   under `adopt = "unowned"` (default) or `"always"`, refused under `"never"`.
//!
//! Errors: Okta's `{errorCode, errorSummary, errorCauses}`; E0000011 (invalid token) and other
//! 4xx are permanent; E0000047 (HTTP 429) is retryable with `X-Rate-Limit-Reset`.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::connector::{Capabilities, Capability, Connector};
use crate::error::{ConnectorError, ErrorKind};
use crate::http::{self, HttpClient, HttpResponse};
use crate::model::{AccountPage, AccountRef, AccountSpec, AccountState, Entitlement};
use crate::ownership::{Adopt, Mark, Ownership, DEFAULT_OWNER_ID};
use crate::secret::{Secret, SecretRef};

/// How `set_enabled(false)` disables a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OktaDisable {
    /// `lifecycle/suspend`: reversible, keeps app assignments.
    #[default]
    Suspend,
    /// `lifecycle/deactivate`: DEPROVISIONED, removes app assignments.
    Deactivate,
}

/// How entitlement ids name Okta groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OktaGroupRef {
    #[default]
    Id,
    Name,
}

fn default_timeout_ms() -> u64 {
    15_000
}

fn default_page_size() -> u32 {
    200
}

/// Okta admin roles whose holders the hub never touches unless the policy says otherwise.
pub const DEFAULT_PROTECTED_ROLES: &[&str] = &["SUPER_ADMIN", "ORG_ADMIN"];

fn default_protected_roles() -> Vec<String> {
    DEFAULT_PROTECTED_ROLES
        .iter()
        .map(|r| (*r).to_owned())
        .collect()
}

/// Settings of one Okta connector instance (the API token is passed separately).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OktaSettings {
    /// The org URL, e.g. `https://acme.okta.com`.
    pub base_url: String,
    #[serde(default)]
    pub disable: OktaDisable,
    #[serde(default)]
    pub groups_by: OktaGroupRef,
    /// Create users with the FEDERATION credential provider (they sign in through an external
    /// IdP and are ACTIVE on creation).
    #[serde(default)]
    pub federated: bool,
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Whether an existing user may be adopted (default `unowned`).
    #[serde(default)]
    pub adopt: Adopt,
    /// Logins (names or globs) the hub never touches.
    #[serde(default)]
    pub protected_accounts: Vec<String>,
    /// Admin role types whose holders the hub never touches; `[]` skips the role lookup (for a
    /// token that may not read roles).
    #[serde(default = "default_protected_roles")]
    pub protected_roles: Vec<String>,
}

impl OktaSettings {
    pub fn new(base_url: impl Into<String>) -> Self {
        OktaSettings {
            base_url: base_url.into(),
            disable: OktaDisable::Suspend,
            groups_by: OktaGroupRef::Id,
            federated: false,
            page_size: default_page_size(),
            timeout_ms: default_timeout_ms(),
            adopt: Adopt::default(),
            protected_accounts: Vec::new(),
            protected_roles: default_protected_roles(),
        }
    }
}

#[derive(Debug)]
pub struct OktaConnector {
    name: String,
    settings: OktaSettings,
    base: Url,
    http: HttpClient,
    token: Secret,
    ownership: Ownership,
}

/// SCIM User attributes → Okta profile attributes.
fn okta_profile(spec: &AccountSpec) -> Map<String, Value> {
    let a = &spec.attributes;
    let mut p = Map::new();
    let login = a
        .get("userName")
        .and_then(Value::as_str)
        .unwrap_or(&spec.account.key);
    p.insert("login".into(), json!(login));
    let emails = a.get("emails").and_then(Value::as_array);
    let email = emails
        .and_then(|e| {
            e.iter()
                .find(|x| x.get("primary").and_then(Value::as_bool) == Some(true))
                .or_else(|| e.first())
        })
        .and_then(|x| x.get("value"))
        .and_then(Value::as_str);
    if let Some(email) = email {
        p.insert("email".into(), json!(email));
    }
    let name = a.get("name");
    for (scim, okta) in [("givenName", "firstName"), ("familyName", "lastName")] {
        if let Some(v) = name.and_then(|n| n.get(scim)).and_then(Value::as_str) {
            p.insert(okta.into(), json!(v));
        }
    }
    for (scim, okta) in [
        ("displayName", "displayName"),
        ("nickName", "nickName"),
        ("title", "title"),
        ("userType", "userType"),
        ("preferredLanguage", "preferredLanguage"),
        ("locale", "locale"),
        ("timezone", "timezone"),
    ] {
        if let Some(v) = a.get(scim).filter(|v| !v.is_null()) {
            p.insert(okta.into(), v.clone());
        }
    }
    if let Some(ext) = a
        .get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        .and_then(Value::as_object)
    {
        for k in [
            "employeeNumber",
            "department",
            "division",
            "organization",
            "costCenter",
        ] {
            if let Some(v) = ext.get(k) {
                p.insert(k.into(), v.clone());
            }
        }
    }
    p
}

/// Okta user → SCIM User attributes.
fn scim_attributes(user: &Value) -> Map<String, Value> {
    let p = user.get("profile").cloned().unwrap_or_default();
    let s = |k: &str| p.get(k).cloned().filter(|v| !v.is_null());
    let mut a = Map::new();
    if let Some(v) = s("login") {
        a.insert("userName".into(), v);
    }
    let mut name = Map::new();
    if let Some(v) = s("firstName") {
        name.insert("givenName".into(), v);
    }
    if let Some(v) = s("lastName") {
        name.insert("familyName".into(), v);
    }
    if !name.is_empty() {
        a.insert("name".into(), Value::Object(name));
    }
    if let Some(v) = s("email") {
        a.insert("emails".into(), json!([{ "value": v, "primary": true }]));
    }
    for k in [
        "displayName",
        "nickName",
        "title",
        "userType",
        "locale",
        "timezone",
    ] {
        if let Some(v) = s(k) {
            a.insert(k.into(), v);
        }
    }
    a.insert("active".into(), json!(is_enabled(user)));
    a
}

fn status(user: &Value) -> &str {
    user.get("status").and_then(Value::as_str).unwrap_or("")
}

fn is_enabled(user: &Value) -> bool {
    !matches!(status(user), "SUSPENDED" | "DEPROVISIONED")
}

fn id_of(v: &Value) -> Option<String> {
    v.get("id").and_then(Value::as_str).map(str::to_owned)
}

/// The `after` cursor of the `rel="next"` link in Okta's `Link` headers.
/// The most groups of one user the connector reads (Okta's own limits are far below it): past
/// it the listing is refused rather than read on without end.
const MAX_GROUPS_OF_USER: usize = 100_000;

fn next_cursor(resp: &HttpResponse) -> Option<String> {
    for value in resp.headers.get_all("link") {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next().unwrap_or("").trim();
            if !parts.any(|p| p.trim().replace(' ', "") == "rel=\"next\"") {
                continue;
            }
            let target = target.trim_start_matches('<').trim_end_matches('>');
            let url = Url::parse(target).ok()?;
            return url
                .query_pairs()
                .find(|(k, _)| k == "after")
                .map(|(_, v)| v.into_owned());
        }
    }
    None
}

impl OktaConnector {
    pub fn new(name: &str, settings: OktaSettings, token: Secret) -> Result<Self, ConnectorError> {
        let base = http::parse_base_url(name, "base_url", &settings.base_url)?;
        let http =
            HttpClient::new(name, Duration::from_millis(settings.timeout_ms))?.redacting(&token);
        let ownership = Ownership::new(
            name,
            settings.adopt,
            &[],
            &settings.protected_accounts,
            DEFAULT_OWNER_ID,
        );
        Ok(OktaConnector {
            name: name.to_owned(),
            ownership,
            settings,
            base,
            http,
            token,
        })
    }

    pub fn from_secret_ref(
        name: &str,
        settings: OktaSettings,
        token: &SecretRef,
    ) -> Result<Self, ConnectorError> {
        let token = token
            .load()
            .map_err(|e| ConnectorError::permanent(name, e.to_string()))?;
        Self::new(name, settings, token)
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ConnectorError> {
        let mut all = vec!["api", "v1"];
        all.extend_from_slice(segments);
        http::join_segments(&self.base, &all)
            .map_err(|e| self.http.error(ErrorKind::Permanent, e.to_string()))
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<HttpResponse, ConnectorError> {
        let auth = http::auth_header("SSWS", &self.token)
            .map_err(|m| self.http.error(ErrorKind::Permanent, m))?;
        let mut req = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, "application/json");
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = self.http.json_body(req, "application/json", body)?;
        }
        self.http.send(req).await
    }

    /// `errorCode errorSummary (causes)` from Okta's error body.
    fn fail(&self, resp: &HttpResponse) -> ConnectorError {
        self.http.status_error(resp, &okta_error_detail(resp))
    }

    fn json(&self, resp: &HttpResponse) -> Result<Value, ConnectorError> {
        self.http.decode_json(resp)
    }

    /// `GET /api/v1/users/{id or login}`; `None` on 404. Unchecked: use
    /// [`Self::get_user_by_id`] or [`Self::get_user_by_login`].
    async fn get_user(&self, id_or_login: &str) -> Result<Option<Value>, ConnectorError> {
        let resp = self
            .call(Method::GET, self.url(&["users", id_or_login])?, &[], None)
            .await?;
        match resp.status {
            s if s.is_success() => Ok(Some(self.json(&resp)?)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.fail(&resp)),
        }
    }

    /// The user with id `id`; `None` on 404. One with another id is refused.
    async fn get_user_by_id(&self, id: &str) -> Result<Option<Value>, ConnectorError> {
        let Some(user) = self.get_user(id).await? else {
            return Ok(None);
        };
        let got = id_of(&user);
        if got.as_deref() != Some(id) {
            return Err(self.http.error(
                ErrorKind::Refused,
                format!("Okta answered GET /users/{id} with the user with id {got:?}"),
            ));
        }
        Ok(Some(user))
    }

    /// The user whose login is `login`; `None` on 404. Okta resolves `/users/{x}` as an id, a
    /// login, a login's short name, or `me` (the API token's owner), so the answer must carry
    /// `login` itself (case-insensitively, as Okta compares logins): a userName of `me` or of
    /// another user's short name would otherwise adopt, then disable, that user.
    async fn get_user_by_login(&self, login: &str) -> Result<Option<Value>, ConnectorError> {
        if login.eq_ignore_ascii_case("me") {
            return Err(self.http.error(
                ErrorKind::Refused,
                "login \"me\" names the API token's owner in Okta, never an account to manage",
            ));
        }
        let Some(user) = self.get_user(login).await? else {
            return Ok(None);
        };
        let got = user.pointer("/profile/login").and_then(Value::as_str);
        if !got.is_some_and(|g| g.eq_ignore_ascii_case(login)) {
            return Err(self.http.error(
                ErrorKind::Refused,
                format!(
                    "account {login:?}: Okta answered with the user whose login is {got:?} (id \
                     {:?}); not the same login, so the hub will not adopt nor modify it",
                    id_of(&user)
                ),
            ));
        }
        Ok(Some(user))
    }

    async fn find_user(&self, account: &AccountRef) -> Result<Option<Value>, ConnectorError> {
        if let Some(id) = &account.id {
            if let Some(u) = self.get_user_by_id(id).await? {
                return Ok(Some(u));
            }
        }
        self.get_user_by_login(&account.key).await
    }

    async fn require_user(&self, account: &AccountRef) -> Result<Value, ConnectorError> {
        self.find_user(account).await?.ok_or_else(|| {
            self.http.error(
                ErrorKind::Permanent,
                format!("account {} does not exist", account.key),
            )
        })
    }

    /// Refuses to touch `user` when its login is protected or it holds a protected admin role.
    async fn guard(&self, key: &str, user: &Value) -> Result<(), ConnectorError> {
        let login = user
            .pointer("/profile/login")
            .and_then(Value::as_str)
            .unwrap_or(key);
        self.ownership.check_not_protected("account", login)?;
        if login != key {
            self.ownership.check_not_protected("account", key)?;
        }
        if self.settings.protected_roles.is_empty() {
            return Ok(());
        }
        let id = id_of(user).unwrap_or_default();
        let resp = self
            .call(Method::GET, self.url(&["users", &id, "roles"])?, &[], None)
            .await?;
        if !resp.is_success() {
            // unknown roles: not knowing whether it is an admin is no licence to touch it
            return Err(self.fail(&resp));
        }
        let roles = self.json(&resp)?;
        let held = roles.as_array().into_iter().flatten().find_map(|r| {
            let t = r.get("type").and_then(Value::as_str)?;
            self.settings
                .protected_roles
                .iter()
                .any(|p| p.eq_ignore_ascii_case(t))
                .then_some(t)
        });
        match held {
            Some(t) => Err(ConnectorError::refused(
                &self.name,
                format!(
                    "account {login:?} holds the Okta admin role {t}; the hub never touches it"
                ),
            )),
            None => Ok(()),
        }
    }

    /// Adopts an existing user: the guard, then the `adopt` choice (no owner's mark in Okta).
    async fn adopt(&self, spec: &AccountSpec, user: &Value) -> Result<AccountRef, ConnectorError> {
        self.guard(&spec.account.key, user).await?;
        let login = user
            .pointer("/profile/login")
            .and_then(Value::as_str)
            .unwrap_or(&spec.account.key);
        self.ownership.may_adopt(login, true, &Mark::None)?;
        self.update_profile(user, spec).await?;
        Ok(AccountRef::new(spec.account.key.clone()).with_id(id_of(user).unwrap_or_default()))
    }

    async fn lifecycle(&self, id: &str, op: &str) -> Result<(), ConnectorError> {
        let query: Vec<(&str, String)> = match op {
            "activate" | "deactivate" => vec![("sendEmail", "false".into())],
            _ => Vec::new(),
        };
        let resp = self
            .call(
                Method::POST,
                self.url(&["users", id, "lifecycle", op])?,
                &query,
                None,
            )
            .await?;
        if resp.is_success() {
            Ok(())
        } else {
            Err(self.fail(&resp))
        }
    }

    async fn update_profile(&self, user: &Value, spec: &AccountSpec) -> Result<(), ConnectorError> {
        let id = id_of(user).unwrap_or_default();
        let current = user.get("profile").cloned().unwrap_or_default();
        let changed: Map<String, Value> = okta_profile(spec)
            .into_iter()
            .filter(|(k, v)| current.get(k) != Some(v))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let resp = self
            .call(
                Method::POST,
                self.url(&["users", &id])?,
                &[],
                Some(&json!({ "profile": changed })),
            )
            .await?;
        if resp.is_success() {
            Ok(())
        } else {
            Err(self.fail(&resp))
        }
    }

    async fn group_id(&self, entitlement: &Entitlement) -> Result<Option<String>, ConnectorError> {
        if entitlement.kind != "group" {
            return Err(self.http.error(
                ErrorKind::Permanent,
                format!(
                    "unknown entitlement kind {:?}; this connector knows \"group\"",
                    entitlement.kind
                ),
            ));
        }
        if self.settings.groups_by == OktaGroupRef::Id {
            return Ok(Some(entitlement.id.clone()));
        }
        let resp = self
            .call(
                Method::GET,
                self.url(&["groups"])?,
                &[("q", entitlement.id.clone()), ("limit", "200".into())],
                None,
            )
            .await?;
        if !resp.is_success() {
            return Err(self.fail(&resp));
        }
        let groups = self.json(&resp)?;
        Ok(groups.as_array().and_then(|gs| {
            gs.iter()
                .find(|g| {
                    g.pointer("/profile/name").and_then(Value::as_str) == Some(&entitlement.id)
                })
                .and_then(id_of)
        }))
    }

    async fn groups_of(&self, uid: &str) -> Result<Vec<Entitlement>, ConnectorError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![("limit", "200".to_owned())];
            if let Some(a) = &after {
                query.push(("after", a.clone()));
            }
            let resp = self
                .call(
                    Method::GET,
                    self.url(&["users", uid, "groups"])?,
                    &query,
                    None,
                )
                .await?;
            if !resp.is_success() {
                return Err(self.fail(&resp));
            }
            let groups = self.json(&resp)?;
            for g in groups.as_array().into_iter().flatten() {
                if g.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("OKTA_GROUP")
                    != "OKTA_GROUP"
                {
                    continue;
                }
                let id = match self.settings.groups_by {
                    OktaGroupRef::Id => id_of(g),
                    OktaGroupRef::Name => g
                        .pointer("/profile/name")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                };
                if let Some(id) = id {
                    out.push(Entitlement::new("group", id));
                }
            }
            match next_cursor(&resp) {
                // A cursor that does not move (a broken proxy, a hostile endpoint) would hold
                // this worker and grow the list forever: an error instead.
                Some(a) if after.as_deref() == Some(a.as_str()) => {
                    return Err(self.http.error(
                        ErrorKind::Permanent,
                        format!("GET /users/{uid}/groups: the next page repeats cursor {a:?}"),
                    ));
                }
                Some(_) if out.len() > MAX_GROUPS_OF_USER => {
                    return Err(self.http.error(
                        ErrorKind::Permanent,
                        format!(
                            "GET /users/{uid}/groups: more than {MAX_GROUPS_OF_USER} groups; \
                             not reading further"
                        ),
                    ));
                }
                Some(a) => after = Some(a),
                None => break,
            }
        }
        out.sort();
        Ok(out)
    }

    fn state_of(&self, user: &Value, entitlements: Vec<Entitlement>) -> AccountState {
        let key = user
            .pointer("/profile/login")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut account = AccountRef::new(key);
        account.id = id_of(user);
        AccountState {
            account,
            enabled: is_enabled(user),
            attributes: scim_attributes(user),
            entitlements,
        }
    }

    async fn clear_sessions(
        &self,
        account: &AccountRef,
        oauth: bool,
    ) -> Result<(), ConnectorError> {
        let Some(user) = self.find_user(account).await? else {
            return Ok(());
        };
        self.guard(&account.key, &user).await?;
        let id = id_of(&user).unwrap_or_default();
        let query = if oauth {
            vec![("oauthTokens", "true".to_owned())]
        } else {
            Vec::new()
        };
        let resp = self
            .call(
                Method::DELETE,
                self.url(&["users", &id, "sessions"])?,
                &query,
                None,
            )
            .await?;
        if resp.is_success() || resp.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.fail(&resp))
        }
    }
}

fn okta_error_detail(resp: &HttpResponse) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(&resp.body) else {
        return resp.body_excerpt();
    };
    let code = v.get("errorCode").and_then(Value::as_str).unwrap_or("");
    let summary = v.get("errorSummary").and_then(Value::as_str).unwrap_or("");
    let causes: Vec<&str> = v
        .get("errorCauses")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("errorSummary").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let mut out = format!("{code} {summary}").trim().to_owned();
    if !causes.is_empty() {
        out.push_str(&format!(" ({})", causes.join("; ")));
    }
    out
}

#[async_trait]
impl Connector for OktaConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn excluded(&self, account: &AccountState) -> Option<String> {
        self.ownership.excluded(&account.account.key, true)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            operations: vec![
                Capability::CreateAccount,
                Capability::UpdateAccount,
                Capability::EnableDisable,
                Capability::DeleteAccount,
                Capability::Grant,
                Capability::Revoke,
                Capability::RevokeSessions,
                Capability::RevokeCredentials,
                Capability::ReadAccount,
                Capability::ListAccounts,
            ],
            entitlement_kinds: vec!["group".into()],
        }
    }

    async fn create_or_adopt(&self, spec: &AccountSpec) -> Result<AccountRef, ConnectorError> {
        let login = okta_profile(spec)
            .get("login")
            .and_then(Value::as_str)
            .unwrap_or(&spec.account.key)
            .to_owned();
        let lookup = AccountRef {
            key: login.clone(),
            id: spec.account.id.clone(),
        };
        if let Some(user) = self.find_user(&lookup).await? {
            return self.adopt(spec, &user).await;
        }
        self.ownership.check_not_protected("account", &login)?;
        let mut body = json!({ "profile": okta_profile(spec) });
        if self.settings.federated {
            body["credentials"] = json!({"provider": {"type": "FEDERATION", "name": "FEDERATION"}});
        }
        let resp = self
            .call(
                Method::POST,
                self.url(&["users"])?,
                &[("activate", "true".into())],
                Some(&body),
            )
            .await?;
        if resp.is_success() {
            let user = self.json(&resp)?;
            let id = id_of(&user).ok_or_else(|| {
                self.http.error(
                    ErrorKind::Permanent,
                    "POST /api/v1/users: response has no id",
                )
            })?;
            return Ok(AccountRef::new(spec.account.key.clone()).with_id(id));
        }
        // E0000001 with "login: An object with this field already exists": created meanwhile.
        if resp.status == StatusCode::BAD_REQUEST
            && okta_error_detail(&resp).contains("already exists")
        {
            if let Some(user) = self.get_user_by_login(&login).await? {
                return self.adopt(spec, &user).await;
            }
        }
        Err(self.fail(&resp))
    }

    async fn update(&self, spec: &AccountSpec) -> Result<(), ConnectorError> {
        let user = self.require_user(&spec.account).await?;
        self.guard(&spec.account.key, &user).await?;
        self.update_profile(&user, spec).await
    }

    async fn set_enabled(&self, account: &AccountRef, enabled: bool) -> Result<(), ConnectorError> {
        let Some(user) = self.find_user(account).await? else {
            if enabled {
                return Err(self.http.error(
                    ErrorKind::Permanent,
                    format!("account {} does not exist", account.key),
                ));
            }
            return Ok(());
        };
        self.guard(&account.key, &user).await?;
        let id = id_of(&user).unwrap_or_default();
        match (enabled, status(&user), self.settings.disable) {
            (false, "SUSPENDED" | "DEPROVISIONED", _) => Ok(()),
            (false, "ACTIVE", OktaDisable::Suspend) => self.lifecycle(&id, "suspend").await,
            (false, _, _) => self.lifecycle(&id, "deactivate").await,
            (true, "SUSPENDED", _) => self.lifecycle(&id, "unsuspend").await,
            (true, "STAGED" | "DEPROVISIONED", _) => self.lifecycle(&id, "activate").await,
            (true, _, _) => Ok(()),
        }
    }

    async fn delete(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        let Some(user) = self.find_user(account).await? else {
            return Ok(());
        };
        self.guard(&account.key, &user).await?;
        let id = id_of(&user).unwrap_or_default();
        if status(&user) != "DEPROVISIONED" {
            self.lifecycle(&id, "deactivate").await?;
        }
        let resp = self
            .call(
                Method::DELETE,
                self.url(&["users", &id])?,
                &[("sendEmail", "false".into())],
                None,
            )
            .await?;
        if resp.is_success() || resp.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.fail(&resp))
        }
    }

    async fn grant(
        &self,
        account: &AccountRef,
        entitlement: &Entitlement,
    ) -> Result<(), ConnectorError> {
        let gid = self.group_id(entitlement).await?.ok_or_else(|| {
            self.http.error(
                ErrorKind::Permanent,
                format!("group {:?} does not exist", entitlement.id),
            )
        })?;
        let user = self.require_user(account).await?;
        self.guard(&account.key, &user).await?;
        let uid = id_of(&user).unwrap_or_default();
        let resp = self
            .call(
                Method::PUT,
                self.url(&["groups", &gid, "users", &uid])?,
                &[],
                None,
            )
            .await?;
        if resp.is_success() {
            Ok(())
        } else {
            Err(self.fail(&resp))
        }
    }

    async fn revoke(
        &self,
        account: &AccountRef,
        entitlement: &Entitlement,
    ) -> Result<(), ConnectorError> {
        let Some(gid) = self.group_id(entitlement).await? else {
            return Ok(());
        };
        let Some(user) = self.find_user(account).await? else {
            return Ok(());
        };
        self.guard(&account.key, &user).await?;
        let uid = id_of(&user).unwrap_or_default();
        let resp = self
            .call(
                Method::DELETE,
                self.url(&["groups", &gid, "users", &uid])?,
                &[],
                None,
            )
            .await?;
        if resp.is_success() || resp.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.fail(&resp))
        }
    }

    async fn revoke_sessions(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.clear_sessions(account, false).await
    }

    async fn revoke_credentials(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.clear_sessions(account, true).await
    }

    async fn read(&self, account: &AccountRef) -> Result<Option<AccountState>, ConnectorError> {
        let Some(user) = self.find_user(account).await? else {
            return Ok(None);
        };
        let groups = self.groups_of(&id_of(&user).unwrap_or_default()).await?;
        Ok(Some(self.state_of(&user, groups)))
    }

    /// One page of users; entitlements are not listed (one request per user — use `read`).
    async fn list_accounts(&self, page: Option<&str>) -> Result<AccountPage, ConnectorError> {
        let mut query = vec![("limit", self.settings.page_size.clamp(1, 200).to_string())];
        if let Some(after) = page {
            query.push(("after", after.to_owned()));
        }
        let resp = self
            .call(Method::GET, self.url(&["users"])?, &query, None)
            .await?;
        if !resp.is_success() {
            return Err(self.fail(&resp));
        }
        let users = self.json(&resp)?;
        let accounts = users
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| self.state_of(u, Vec::new()))
            .collect();
        Ok(AccountPage {
            accounts,
            next: next_cursor(&resp),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_scim_to_okta_profile() {
        let spec = AccountSpec {
            account: AccountRef::new("jdoe@example.com"),
            attributes: json!({
                "name": {"givenName": "Jane", "familyName": "Doe"},
                "emails": [{"value": "other@x"}, {"value": "jane@example.com", "primary": true}],
                "title": "Eng",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
            })
            .as_object()
            .cloned()
            .expect("object"),
        };
        let p = okta_profile(&spec);
        assert_eq!(p["login"], "jdoe@example.com");
        assert_eq!(p["email"], "jane@example.com");
        assert_eq!(p["firstName"], "Jane");
        assert_eq!(p["lastName"], "Doe");
        assert_eq!(p["department"], "R&D");
    }
}
