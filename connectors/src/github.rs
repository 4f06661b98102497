//! GitHub organisations through the REST API (`X-GitHub-Api-Version: 2022-11-28`, Bearer token).
//!
//! - Account: membership of the configured organisation for the GitHub login
//!   [`AccountRef::key`]; `id` is the GitHub user id. Create = `PUT /orgs/{org}/memberships/{user}`
//!   with role `member` unless a membership (active or pending) exists, which is adopted as is.
//!   GitHub profiles belong to their users, so there is nothing to update; disable and delete
//!   both remove the membership (`DELETE /orgs/{org}/memberships/{user}`, which also cancels a
//!   pending invitation), and delete also cancels any invitation still listed for the login.
//! - Entitlements: kind `org` (id = organisation login, role `member`/`admin`; revoking the
//!   `admin` role demotes to `member`, revoking without a role removes the membership) and kind
//!   `team` (id = team slug in the configured org, or `org/slug`; role `member`/`maintainer`).
//! - Read back: the org membership (role, `active`/`pending`) and membership of each managed
//!   team ([`GitHubConfig::teams`]: GitHub has no "teams of a user in an org" endpoint for
//!   another user). List: `GET /orgs/{org}/members`, following the `Link: rel="next"` header; the
//!   page token is the next page's query, re-based on the configured API URL.
//! - Ownership: GitHub has no owner's mark on a membership, so the connector protects by name
//!   and role. Organisation owners (role `admin`, active or invited) and logins matching
//!   `protected_accounts` (names or `*`/`?` globs) are never adopted, removed, re-roled or
//!   team-edited: every such operation is a [`ConnectorError::refused`] error. An existing
//!   membership is adopted under `adopt = "unowned"` (default) or `"always"` (the same here: no
//!   marks), refused under `"never"`. Team entitlements are limited to the managed teams
//!   ([`GitHubConfig::teams`]); any other team is refused.
//! - Names in paths: logins and org names must be valid GitHub logins, team slugs
//!   `[A-Za-z0-9_-]+`; anything else is refused before a request is built (`..` would otherwise
//!   climb out of the endpoint, and percent-encoding it does not help: `%2E%2E` is a
//!   dot-segment to URL parsers too).
//! - Pending invitations: [`GitHubConnector::pending_invitations`] and
//!   [`GitHubConnector::cancel_invitation`].
//! - Limits: 429, or 403 with `retry-after` or `x-ratelimit-remaining: 0` or a "secondary rate
//!   limit" message, are retryable with the wait from `retry-after` or `x-ratelimit-reset`;
//!   401 (bad credentials), other 403s and 422s are permanent; 5xx and transport errors retryable.
//!
//! Requests go through [`HttpClient`] (timeout, status classification, `Retry-After`, secret
//! scrubbing); the `Link` header and GitHub's rate-limit signals are read here.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::connector::{Capabilities, Capability, Connector};
use crate::error::{ConnectorError, ErrorKind};
use crate::http::{self, HttpClient};
use crate::model::{AccountPage, AccountRef, AccountSpec, AccountState, Entitlement};
use crate::ownership::{Adopt, Mark, Ownership};
use crate::secret::Secret;

fn default_api_base() -> String {
    "https://api.github.com".into()
}
fn default_timeout_ms() -> u64 {
    20_000
}
fn default_page_size() -> u32 {
    100
}

/// Settings of one GitHub connector instance: the policy's `settings` table for
/// `type = "github"` (the token is passed separately, see [`GitHubConfig::from_settings`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubSettings {
    pub org: String,
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Team slugs the policy manages (read back checks each); other teams are never touched.
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Whether an existing membership may be adopted (default `unowned`).
    #[serde(default)]
    pub adopt: Adopt,
    /// Logins (names or globs) the hub never adopts, removes or re-roles; org owners always are.
    #[serde(default)]
    pub protected_accounts: Vec<String>,
}

/// Everything one GitHub connector instance needs: its settings and its token.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    pub name: String,
    /// `https://api.github.com` (or a GHES `/api/v3` URL, or a local stand-in).
    pub api_base: String,
    pub org: String,
    /// A token with `admin:org` (classic) or organisation members: write (fine-grained).
    pub token: Secret,
    /// Team slugs the policy manages; read back checks membership of each, and team
    /// entitlements outside them are refused.
    pub teams: Vec<String>,
    pub timeout: Duration,
    pub page_size: u32,
    pub adopt: Adopt,
    /// Logins the hub never touches, besides the org owners.
    pub protected_accounts: Vec<String>,
}

impl GitHubConfig {
    pub fn new(name: impl Into<String>, org: impl Into<String>, token: Secret) -> Self {
        GitHubConfig {
            name: name.into(),
            api_base: default_api_base(),
            org: org.into(),
            token,
            teams: Vec::new(),
            timeout: Duration::from_millis(default_timeout_ms()),
            page_size: default_page_size(),
            adopt: Adopt::default(),
            protected_accounts: Vec::new(),
        }
    }

    /// The instance `name` of the policy: its `settings` plus the token loaded from its
    /// credentials.
    pub fn from_settings(name: impl Into<String>, settings: GitHubSettings, token: Secret) -> Self {
        GitHubConfig {
            name: name.into(),
            api_base: settings.api_base,
            org: settings.org,
            token,
            teams: settings.teams,
            timeout: Duration::from_millis(settings.timeout_ms),
            page_size: settings.page_size,
            adopt: settings.adopt,
            protected_accounts: settings.protected_accounts,
        }
    }
}

/// A pending organisation invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: u64,
    pub login: Option<String>,
    pub email: Option<String>,
    pub role: String,
}

/// The GitHub connector. See the module documentation.
pub struct GitHubConnector {
    cfg: GitHubConfig,
    api_base: Url,
    http: HttpClient,
    ownership: Ownership,
}

impl fmt::Debug for GitHubConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubConnector")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

struct Response {
    status: StatusCode,
    body: Value,
    next: Option<String>,
}

impl GitHubConnector {
    pub fn new(cfg: GitHubConfig) -> Result<Self, ConnectorError> {
        let api_base = http::parse_base_url(&cfg.name, "api_base", &cfg.api_base)?;
        // the settings end up in request paths too: refuse them now rather than per operation
        if !is_login(&cfg.org) {
            return Err(ConnectorError::permanent(
                &cfg.name,
                format!("org {:?} is not a valid GitHub organisation login", cfg.org),
            ));
        }
        for team in &cfg.teams {
            let (org, slug) = team.split_once('/').unwrap_or((&cfg.org, team));
            if !is_login(org) || !is_slug(slug) {
                return Err(ConnectorError::permanent(
                    &cfg.name,
                    format!("teams: {team:?} is not a team slug (or org/slug)"),
                ));
            }
        }
        let http = HttpClient::new(&cfg.name, cfg.timeout)?.redacting(&cfg.token);
        // no built-in names: GitHub's privileged accounts are the org owners, found by role
        let ownership = Ownership::new(
            &cfg.name,
            cfg.adopt,
            &[],
            &cfg.protected_accounts,
            crate::ownership::DEFAULT_OWNER_ID,
        );
        Ok(GitHubConnector {
            cfg,
            api_base,
            http,
            ownership,
        })
    }

    /// Refuses to touch `user` when its login is protected or it is an owner (role `admin`,
    /// active or invited) of `org`; otherwise its membership of `org`, if any.
    async fn guard(&self, org: &str, user: &str) -> Result<Option<Value>, ConnectorError> {
        self.ownership.check_not_protected("account", user)?;
        let m = self.membership(org, user).await?;
        if m.as_ref()
            .and_then(|m| m.get("role"))
            .and_then(Value::as_str)
            == Some("admin")
        {
            return Err(ConnectorError::refused(
                &self.cfg.name,
                format!("{user:?} is an owner of the organisation {org:?}; the hub never touches owners"),
            ));
        }
        Ok(m)
    }

    /// [`Self::guard`] for a team entitlement, which must be one of the managed teams.
    async fn guard_team(&self, id: &str, user: &str) -> Result<(), ConnectorError> {
        let (org, slug) = self.team_of(id);
        let managed = self.cfg.teams.iter().any(|t| {
            let (o, s) = self.team_of(t);
            o.eq_ignore_ascii_case(org) && s.eq_ignore_ascii_case(slug)
        });
        if !managed {
            return Err(ConnectorError::refused(
                &self.cfg.name,
                format!(
                    "team {id:?} is not one of the managed teams {:?}",
                    self.cfg.teams
                ),
            ));
        }
        self.guard(org, user).await.map(|_| ())
    }

    fn url(&self, path_and_query: &str) -> Result<Url, ConnectorError> {
        let raw = format!(
            "{}{}",
            self.api_base.as_str().trim_end_matches('/'),
            path_and_query
        );
        Url::parse(&raw).map_err(|e| {
            self.http
                .error(ErrorKind::Permanent, format!("invalid request URL: {e}"))
        })
    }

    /// Sends one request; 2xx and the statuses in `accept` come back as `Ok`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        accept: &[u16],
    ) -> Result<Response, ConnectorError> {
        let auth = http::auth_header("Bearer", &self.cfg.token)
            .map_err(|e| self.http.error(ErrorKind::Permanent, e))?;
        let mut req = self
            .http
            .request(method, self.url(path)?)
            .header("accept", "application/vnd.github+json, application/json")
            .header("x-github-api-version", "2022-11-28")
            .header(reqwest::header::AUTHORIZATION, auth);
        if let Some(b) = body {
            req = self.http.json_body(req, "application/json", &b)?;
        }
        let resp = self.http.send(req).await?;
        let status = resp.status;
        let next = resp.header("link").and_then(next_link);
        let body: Value = resp.json_value().unwrap_or_else(|_| {
            Value::String(
                String::from_utf8_lossy(&resp.body)
                    .chars()
                    .take(200)
                    .collect(),
            )
        });
        if status.is_success() || accept.contains(&status.as_u16()) {
            return Ok(Response { status, body, next });
        }

        let message = body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let details = body
            .get("errors")
            .map(|e| format!(" {e}"))
            .unwrap_or_default();
        let text = self.http.scrub(format!(
            "{} {}: HTTP {} {message}{details}",
            resp.method,
            resp.path,
            status.as_u16()
        ));
        let text: String = text.chars().take(400).collect();
        // GitHub's secondary rate limits may answer 403 with only a message to say so.
        let secondary_limit =
            status == StatusCode::FORBIDDEN && message.to_ascii_lowercase().contains("rate limit");
        let kind = if secondary_limit {
            ErrorKind::Retryable
        } else {
            http::classify(status, &resp.headers)
        };
        let err = self.http.response_error(&resp, kind, text);
        let limited = kind == ErrorKind::Retryable
            && (status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::FORBIDDEN);
        if limited && err.retry_after.is_none() {
            // a rate limit without headers: GitHub asks for at least a minute
            return Err(err.with_retry_after(Duration::from_secs(60)));
        }
        Err(err)
    }

    /// `/orgs/{org}{rest}`; `org` must be a valid login.
    fn org_path(&self, org: &str, rest: &str) -> Result<String, ConnectorError> {
        Ok(format!(
            "/orgs/{}{rest}",
            self.seg("organisation", org, is_login)?
        ))
    }

    fn membership_path(&self, org: &str, user: &str) -> Result<String, ConnectorError> {
        let user = self.seg("login", user, is_user_login)?;
        self.org_path(org, &format!("/memberships/{user}"))
    }

    fn team_membership_path(
        &self,
        org: &str,
        slug: &str,
        user: &str,
    ) -> Result<String, ConnectorError> {
        let slug = self.seg("team slug", slug, is_slug)?;
        let user = self.seg("login", user, is_user_login)?;
        self.org_path(org, &format!("/teams/{slug}/memberships/{user}"))
    }

    /// `s` as a path segment when `valid` accepts it. Names come from the policy and the
    /// identity source; one GitHub would not accept (`..`, `a/b`) could make the request hit
    /// another endpoint (`PUT /orgs/acme/memberships/..` is `PUT /orgs/acme/`), so it is refused
    /// rather than encoded: `%2E%2E` is a dot-segment to URL parsers too.
    fn seg<'a>(
        &self,
        what: &str,
        s: &'a str,
        valid: fn(&str) -> bool,
    ) -> Result<&'a str, ConnectorError> {
        if valid(s) {
            Ok(s)
        } else {
            Err(ConnectorError::refused(
                &self.cfg.name,
                format!("{what} {s:?} is not a valid GitHub {what}; no request is built from it"),
            ))
        }
    }

    /// The org membership of `user`, `None` when there is none.
    async fn membership(&self, org: &str, user: &str) -> Result<Option<Value>, ConnectorError> {
        let r = self
            .send(Method::GET, &self.membership_path(org, user)?, None, &[404])
            .await?;
        Ok((r.status != StatusCode::NOT_FOUND).then_some(r.body))
    }

    async fn put_membership(
        &self,
        org: &str,
        user: &str,
        role: &str,
    ) -> Result<Value, ConnectorError> {
        check_role(&self.cfg.name, role, &["member", "admin"])?;
        let r = self
            .send(
                Method::PUT,
                &self.membership_path(org, user)?,
                Some(json!({ "role": role })),
                &[],
            )
            .await?;
        Ok(r.body)
    }

    async fn remove_membership(&self, user: &str) -> Result<(), ConnectorError> {
        self.send(
            Method::DELETE,
            &self.membership_path(&self.cfg.org, user)?,
            None,
            &[404],
        )
        .await
        .map(|_| ())
    }

    /// `(org, slug)` of a team entitlement id (`slug` or `org/slug`).
    fn team_of<'a>(&'a self, id: &'a str) -> (&'a str, &'a str) {
        id.split_once('/').unwrap_or((self.cfg.org.as_str(), id))
    }

    async fn team_membership(
        &self,
        org: &str,
        slug: &str,
        user: &str,
    ) -> Result<Option<Value>, ConnectorError> {
        let r = self
            .send(
                Method::GET,
                &self.team_membership_path(org, slug, user)?,
                None,
                &[404],
            )
            .await?;
        Ok((r.status != StatusCode::NOT_FOUND).then_some(r.body))
    }

    /// Pending invitations of the configured organisation (all pages).
    pub async fn pending_invitations(&self) -> Result<Vec<Invitation>, ConnectorError> {
        let mut out = Vec::new();
        let mut path = self.org_path(
            &self.cfg.org,
            &format!("/invitations?per_page={}", self.cfg.page_size),
        )?;
        for _ in 0..1000 {
            let r = self.send(Method::GET, &path, None, &[]).await?;
            for i in r.body.as_array().into_iter().flatten() {
                out.push(Invitation {
                    id: i.get("id").and_then(Value::as_u64).unwrap_or_default(),
                    login: i.get("login").and_then(Value::as_str).map(str::to_owned),
                    email: i.get("email").and_then(Value::as_str).map(str::to_owned),
                    role: i
                        .get("role")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
            match r.next {
                Some(n) => path = n,
                None => break,
            }
        }
        Ok(out)
    }

    /// Cancels a pending invitation; one that is gone is success.
    pub async fn cancel_invitation(&self, id: u64) -> Result<(), ConnectorError> {
        self.send(
            Method::DELETE,
            &self.org_path(&self.cfg.org, &format!("/invitations/{id}"))?,
            None,
            &[404],
        )
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl Connector for GitHubConnector {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn excluded(&self, account: &AccountState) -> Option<String> {
        self.ownership.excluded(&account.account.key, true)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            operations: vec![
                Capability::CreateAccount,
                Capability::EnableDisable,
                Capability::DeleteAccount,
                Capability::Grant,
                Capability::Revoke,
                Capability::ReadAccount,
                Capability::ListAccounts,
            ],
            entitlement_kinds: vec!["org".into(), "team".into()],
        }
    }

    async fn create_or_adopt(&self, spec: &AccountSpec) -> Result<AccountRef, ConnectorError> {
        let user = spec.account.key.as_str();
        let m = match self.guard(&self.cfg.org, user).await? {
            Some(m) => {
                // no owner's mark on GitHub: `never` refuses, `unowned`/`always` adopt
                self.ownership.may_adopt(user, true, &Mark::None)?;
                m
            }
            None => self.put_membership(&self.cfg.org, user, "member").await?,
        };
        Ok(with_user_id(AccountRef::new(user), &m))
    }

    /// GitHub profiles belong to their users: nothing to bring to `spec` beyond the membership,
    /// which must exist.
    async fn update(&self, spec: &AccountSpec) -> Result<(), ConnectorError> {
        match self.guard(&self.cfg.org, &spec.account.key).await? {
            Some(_) => Ok(()),
            None => Err(ConnectorError::permanent(
                &self.cfg.name,
                format!("{} is not a member of {}", spec.account.key, self.cfg.org),
            )),
        }
    }

    /// Disabling removes the org membership (GitHub has no suspended member); enabling invites
    /// or adds the user back as `member`.
    async fn set_enabled(&self, account: &AccountRef, enabled: bool) -> Result<(), ConnectorError> {
        let member = self.guard(&self.cfg.org, &account.key).await?;
        if enabled {
            if member.is_none() {
                self.put_membership(&self.cfg.org, &account.key, "member")
                    .await?;
            }
            Ok(())
        } else {
            self.remove_membership(&account.key).await
        }
    }

    async fn delete(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.guard(&self.cfg.org, &account.key).await?;
        self.remove_membership(&account.key).await?;
        for inv in self.pending_invitations().await? {
            if inv
                .login
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case(&account.key))
            {
                self.cancel_invitation(inv.id).await?;
            }
        }
        Ok(())
    }

    async fn grant(&self, account: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        let user = account.key.as_str();
        match e.kind.as_str() {
            "org" => {
                let role = e.role.as_deref().unwrap_or("member");
                self.guard(&e.id, user).await?;
                self.put_membership(&e.id, user, role).await.map(|_| ())
            }
            "team" => {
                let role = e.role.as_deref().unwrap_or("member");
                check_role(&self.cfg.name, role, &["member", "maintainer"])?;
                self.guard_team(&e.id, user).await?;
                let (org, slug) = self.team_of(&e.id);
                self.send(
                    Method::PUT,
                    &self.team_membership_path(org, slug, user)?,
                    Some(json!({ "role": role })),
                    &[],
                )
                .await
                .map(|_| ())
            }
            other => Err(unknown_kind(&self.cfg.name, other)),
        }
    }

    async fn revoke(&self, account: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        let user = account.key.as_str();
        match e.kind.as_str() {
            // demoting an owner is touching an owner: refused by the guard like any other change
            "org" if e.role.as_deref() == Some("admin") => {
                self.guard(&e.id, user).await.map(|_| ())
            }
            "org" => {
                self.guard(&e.id, user).await?;
                self.send(
                    Method::DELETE,
                    &self.membership_path(&e.id, user)?,
                    None,
                    &[404],
                )
                .await
                .map(|_| ())
            }
            "team" => {
                self.guard_team(&e.id, user).await?;
                let (org, slug) = self.team_of(&e.id);
                self.send(
                    Method::DELETE,
                    &self.team_membership_path(org, slug, user)?,
                    None,
                    &[404],
                )
                .await
                .map(|_| ())
            }
            other => Err(unknown_kind(&self.cfg.name, other)),
        }
    }

    async fn read(&self, account: &AccountRef) -> Result<Option<AccountState>, ConnectorError> {
        let user = account.key.as_str();
        let Some(m) = self.membership(&self.cfg.org, user).await? else {
            return Ok(None);
        };
        let state = m
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("active")
            .to_owned();
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("member")
            .to_owned();
        let mut ents = vec![Entitlement::new("org", self.cfg.org.clone()).with_role(role.clone())];
        for slug in &self.cfg.teams {
            let (org, s) = self.team_of(slug);
            if let Some(t) = self.team_membership(org, s, user).await? {
                let r = t.get("role").and_then(Value::as_str).unwrap_or("member");
                ents.push(Entitlement::new("team", slug.clone()).with_role(r));
            }
        }
        let mut attributes = Map::new();
        attributes.insert("userName".into(), json!(user));
        attributes.insert("state".into(), json!(state));
        attributes.insert("role".into(), json!(role));
        if let Some(u) = m.get("user") {
            for (from, to) in [
                ("id", "githubId"),
                ("html_url", "profileUrl"),
                ("type", "userType"),
            ] {
                if let Some(v) = u.get(from) {
                    attributes.insert(to.into(), v.clone());
                }
            }
        }
        Ok(Some(AccountState {
            account: with_user_id(AccountRef::new(user), &m),
            enabled: state == "active",
            attributes,
            entitlements: ents,
        }))
    }

    async fn list_accounts(&self, page: Option<&str>) -> Result<AccountPage, ConnectorError> {
        let path = match page {
            Some(p) if p.starts_with("/orgs/") => p.to_owned(),
            Some(_) => {
                return Err(ConnectorError::permanent(
                    &self.cfg.name,
                    "invalid page token",
                ))
            }
            None => self.org_path(
                &self.cfg.org,
                &format!("/members?per_page={}", self.cfg.page_size),
            )?,
        };
        let r = self.send(Method::GET, &path, None, &[]).await?;
        let accounts = r
            .body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| {
                let login = u.get("login")?.as_str()?.to_owned();
                let mut attributes = Map::new();
                attributes.insert("userName".into(), json!(login));
                if let Some(id) = u.get("id") {
                    attributes.insert("githubId".into(), id.clone());
                }
                let mut account = AccountRef::new(login);
                if let Some(id) = u.get("id").and_then(Value::as_u64) {
                    account = account.with_id(id.to_string());
                }
                Some(AccountState {
                    account,
                    enabled: true,
                    attributes,
                    entitlements: vec![Entitlement::new("org", self.cfg.org.clone())],
                })
            })
            .collect();
        Ok(AccountPage {
            accounts,
            next: r.next,
        })
    }
}

fn with_user_id(account: AccountRef, membership: &Value) -> AccountRef {
    match membership.pointer("/user/id").and_then(Value::as_u64) {
        Some(id) => account.with_id(id.to_string()),
        None => account,
    }
}

fn check_role(name: &str, role: &str, allowed: &[&str]) -> Result<(), ConnectorError> {
    if allowed.contains(&role) {
        Ok(())
    } else {
        Err(ConnectorError::permanent(
            name,
            format!("role {role:?} is not one of {allowed:?}"),
        ))
    }
}

fn unknown_kind(name: &str, kind: &str) -> ConnectorError {
    ConnectorError::permanent(
        name,
        format!("unknown entitlement kind {kind:?} (GitHub knows org, team)"),
    )
}

/// A GitHub user or organisation login: 1 to 39 ASCII letters, digits or hyphens, not starting
/// with a hyphen (GitHub's rule; some old logins end with or double a hyphen, so those pass).
fn is_login(s: &str) -> bool {
    (1..=39).contains(&s.len())
        && !s.starts_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A user's login: an organisation-style login, or an Enterprise Managed User's
/// `handle_shortcode` (the enterprise's short code after an underscore): ASCII letters, digits,
/// `-` and `_`, not starting with either; never `.`, `/` or `%`, which would move the request
/// path.
fn is_user_login(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && !s.starts_with(['-', '_'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A team slug: what GitHub derives from a team name, ASCII letters, digits, `-` and `_`.
fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `rel="next"` target of a `Link` header, as path and query (re-based on the configured
/// API URL by the caller, so pages go through the same endpoint as the first request).
fn next_link(link: &str) -> Option<String> {
    for part in link.split(',') {
        let (url, params) = part.split_once(';')?;
        if params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        }) {
            let url = url.trim().trim_start_matches('<').trim_end_matches('>');
            let parsed = reqwest::Url::parse(url).ok()?;
            // keep the path below the API base (GHES: /api/v3/orgs/... -> /orgs/...)
            let path = parsed.path();
            let path = path.find("/orgs/").map_or(path, |i| &path[i..]);
            return Some(match parsed.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_and_segments() {
        let l = r#"<http://127.0.0.1:4100/orgs/acme/members?per_page=2&page=2>; rel="next", <http://127.0.0.1:4100/orgs/acme/members?per_page=2&page=5>; rel="last""#;
        assert_eq!(
            next_link(l).as_deref(),
            Some("/orgs/acme/members?per_page=2&page=2")
        );
        let l = r#"<https://ghe.example/api/v3/orgs/a/members?page=3>; rel="next""#;
        assert_eq!(next_link(l).as_deref(), Some("/orgs/a/members?page=3"));
        assert_eq!(
            next_link(r#"<https://x/orgs/a/members?page=1>; rel="prev""#),
            None
        );
        assert_eq!(http::parse_retry_after("30"), Some(Duration::from_secs(30)));
    }

    #[test]
    fn logins_and_slugs_follow_githubs_rules() {
        for ok in ["jdoe", "J-Doe", "a", "x1-", "a--b", &"a".repeat(39)] {
            assert!(is_login(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "-jdoe",
            "j.doe",
            "a/b",
            "a b",
            "j_doe",
            &"a".repeat(40),
        ] {
            assert!(!is_login(bad), "{bad}");
        }
        // Users of an Enterprise Managed Users org log in as `handle_shortcode`.
        for ok in ["jdoe", "j_doe", "jdoe_acme", "J-Doe_acme", &"a".repeat(100)] {
            assert!(is_user_login(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "_jdoe",
            "-jdoe",
            "j.doe",
            "a/b",
            "a%2F",
            &"a".repeat(101),
        ] {
            assert!(!is_user_login(bad), "{bad}");
        }
        for ok in ["eng", "on-call", "data_eng", "Eng2"] {
            assert!(is_slug(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a.b", "a/b", "%2E%2E"] {
            assert!(!is_slug(bad), "{bad}");
        }
    }

    /// No request path is built from `..`, `.` or anything else GitHub would not accept.
    #[test]
    fn paths_refuse_dot_segments_and_invalid_names() {
        let c = GitHubConnector::new(GitHubConfig::new("gh", "acme", Secret::new("t")))
            .expect("connector");
        assert_eq!(
            c.membership_path("acme", "jdoe").expect("valid"),
            "/orgs/acme/memberships/jdoe"
        );
        assert_eq!(
            c.team_membership_path("acme", "data_eng", "jdoe")
                .expect("valid"),
            "/orgs/acme/teams/data_eng/memberships/jdoe"
        );
        for (org, slug, user) in [
            ("acme", "eng", ".."),
            ("acme", "eng", "."),
            ("acme", "eng", ""),
            ("acme", "..", "jdoe"),
            ("acme", ".", "jdoe"),
            ("..", "eng", "jdoe"),
            ("acme", "eng", "a/../b"),
        ] {
            let err = c
                .team_membership_path(org, slug, user)
                .expect_err("refused");
            assert_eq!(err.kind, ErrorKind::Refused, "{err}");
            if slug == "eng" {
                let err = c.membership_path(org, user).expect_err("refused");
                assert_eq!(err.kind, ErrorKind::Refused, "{err}");
            }
        }
        for (org, teams) in [("..", vec![]), ("acme", vec!["..".to_owned()])] {
            let mut cfg = GitHubConfig::new("gh", org, Secret::new("t"));
            cfg.teams = teams;
            let err = GitHubConnector::new(cfg).expect_err("bad settings");
            assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
        }
    }

    /// The red-team case: a joiner/leaver with login `..` would have PUT/DELETE
    /// `/orgs/acme/`. Nothing listens on the API URL, so any request would come back as a
    /// retryable connect error; a refusal proves none was sent.
    #[tokio::test]
    async fn operations_on_a_dot_login_are_refused_before_any_request() {
        let mut cfg = GitHubConfig::new("gh", "acme", Secret::new("t"));
        cfg.api_base = "http://127.0.0.1:9".into();
        cfg.timeout = Duration::from_secs(2);
        cfg.teams = vec!["eng".into()];
        let c = GitHubConnector::new(cfg).expect("connector");
        for login in ["..", ".", "-x", "a/b"] {
            let account = AccountRef::new(login);
            let spec = AccountSpec {
                account: account.clone(),
                attributes: Map::new(),
            };
            let team = Entitlement::new("team", "eng");
            let results = [
                c.create_or_adopt(&spec).await.map(|_| ()),
                c.set_enabled(&account, false).await,
                c.delete(&account).await,
                c.grant(&account, &Entitlement::new("org", "acme")).await,
                c.revoke(&account, &team).await,
                c.read(&account).await.map(|_| ()),
            ];
            for r in results {
                let err = r.expect_err(login);
                assert_eq!(err.kind, ErrorKind::Refused, "{login}: {err}");
                assert!(err.message.contains("not a valid GitHub"), "{err}");
            }
        }
        let err = c
            .grant(&AccountRef::new("jdoe"), &Entitlement::new("org", ".."))
            .await
            .expect_err("org ..");
        assert_eq!(err.kind, ErrorKind::Refused, "{err}");
    }

    #[test]
    fn settings_default_to_the_config_defaults_and_reject_unknown_keys() {
        let s: GitHubSettings = serde_json::from_value(json!({"org": "acme"})).expect("settings");
        let from_settings = GitHubConfig::from_settings("gh", s, Secret::new("t"));
        let new = GitHubConfig::new("gh", "acme", Secret::new("t"));
        assert_eq!(
            (
                from_settings.api_base.as_str(),
                from_settings.timeout,
                from_settings.page_size
            ),
            (new.api_base.as_str(), new.timeout, new.page_size)
        );
        let err = serde_json::from_value::<GitHubSettings>(json!({"org": "a", "team": []}))
            .expect_err("unknown key");
        assert!(err.to_string().starts_with("unknown field `team`"), "{err}");
        assert!(serde_json::from_value::<GitHubSettings>(json!({})).is_err());
    }
}
