//! Slack: accounts and group memberships through Slack's SCIM API (a [`ScimConnector`] with the
//! [`ScimProfile::Slack`] profile), plus session reset on leave through the Web API's
//! `admin.users.session.reset` (Enterprise Grid; scope `admin.users:write`).
//!
//! Workspace and org admins are protected by default (`protect_admins = true`): before the hub
//! adopts, changes, deactivates, deletes, regroups or signs out an existing Slack user it asks
//! `users.info` (scope `users:read`), and a user with `is_primary_owner`, `is_owner` or
//! `is_admin` is refused ([`ConnectorError::refused`]). `user_not_found` there means the Web API
//! does not know the user, so there is no admin to protect. Names and the `adopt` choice come
//! from the SCIM settings (`scim.protected_accounts`, `scim.adopt`).
//!
//! The Web API answers HTTP 200 with `{"ok": false, "error": "…"}` for most failures; rate
//! limiting is HTTP 429 with `Retry-After` and `"error": "ratelimited"`. Auth and argument errors
//! are permanent; `ratelimited`, `internal_error`, `fatal_error`, `service_unavailable` and
//! `request_timeout` are retryable. `user_not_found` is success: an account that does not exist
//! has no sessions.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::connector::{Capabilities, Capability, Connector};
use crate::error::{ConnectorError, ErrorKind};
use crate::http::{self, HttpClient};
use crate::model::{AccountPage, AccountRef, AccountSpec, AccountState, Entitlement};
use crate::scim::{ScimConnector, ScimProfile, ScimSettings};
use crate::secret::{Secret, SecretRef};

fn default_api_base() -> String {
    "https://slack.com/api".into()
}

fn default_timeout_ms() -> u64 {
    15_000
}

/// Settings of one Slack connector instance (tokens are passed separately).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// SCIM settings; the profile is forced to `slack`. Base URL e.g.
    /// `https://api.slack.com/scim/v2`.
    pub scim: ScimSettings,
    /// Web API base, `https://slack.com/api` unless testing.
    #[serde(default = "default_api_base")]
    pub api_base_url: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Only reset mobile (or only web) sessions; default: all sessions.
    #[serde(default)]
    pub mobile_only: bool,
    #[serde(default)]
    pub web_only: bool,
    /// Refuse to touch Primary Owners, Owners and Admins (default `true`).
    #[serde(default = "default_true")]
    pub protect_admins: bool,
}

fn default_true() -> bool {
    true
}

impl SlackSettings {
    pub fn new(scim_base_url: impl Into<String>) -> Self {
        let mut scim = ScimSettings::new(scim_base_url);
        scim.profile = ScimProfile::Slack;
        SlackSettings {
            scim,
            api_base_url: default_api_base(),
            timeout_ms: default_timeout_ms(),
            mobile_only: false,
            web_only: false,
            protect_admins: true,
        }
    }
}

#[derive(Debug)]
pub struct SlackConnector {
    name: String,
    scim: ScimConnector,
    api_base: Url,
    http: HttpClient,
    admin_token: Secret,
    mobile_only: bool,
    web_only: bool,
    protect_admins: bool,
}

/// Slack Web API error codes after which a retry can succeed.
fn slack_error_retryable(code: &str) -> bool {
    matches!(
        code,
        "ratelimited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout"
            | "team_added_to_org"
    )
}

impl SlackConnector {
    /// `scim_token` is the SCIM API token; `admin_token` a user token with `admin.users:write`
    /// (often the same org-owner token).
    pub fn new(
        name: &str,
        settings: SlackSettings,
        scim_token: Secret,
        admin_token: Secret,
    ) -> Result<Self, ConnectorError> {
        let mut scim_settings = settings.scim;
        scim_settings.profile = ScimProfile::Slack;
        let scim = ScimConnector::new(name, scim_settings, scim_token.clone())?;
        let api_base = http::parse_base_url(name, "api_base_url", &settings.api_base_url)?;
        let http = HttpClient::new(name, Duration::from_millis(settings.timeout_ms))?
            .redacting(&admin_token)
            .redacting(&scim_token);
        Ok(SlackConnector {
            name: name.to_owned(),
            scim,
            api_base,
            http,
            admin_token,
            mobile_only: settings.mobile_only,
            web_only: settings.web_only,
            protect_admins: settings.protect_admins,
        })
    }

    pub fn from_secret_refs(
        name: &str,
        settings: SlackSettings,
        scim_token: &SecretRef,
        admin_token: &SecretRef,
    ) -> Result<Self, ConnectorError> {
        let load = |r: &SecretRef| {
            r.load()
                .map_err(|e| ConnectorError::permanent(name, e.to_string()))
        };
        Self::new(name, settings, load(scim_token)?, load(admin_token)?)
    }

    /// The Web API URL of `method` (`users.info`, `admin.users.session.reset`).
    fn api_url(&self, method: &str) -> Result<Url, ConnectorError> {
        http::join_segments(&self.api_base, &[method])
            .map_err(|e| self.http.error(ErrorKind::Permanent, e.to_string()))
    }

    /// Refuses to touch `account` when Slack says it is a Primary Owner, an Owner or an Admin.
    async fn guard(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        if !self.protect_admins {
            return Ok(());
        }
        let Some(user_id) = self.scim.find_user_id(account).await? else {
            return Ok(());
        };
        // users.info reads with GET and query arguments (it takes no JSON body)
        let mut url = self.api_url("users.info")?;
        url.query_pairs_mut().append_pair("user", &user_id);
        let info = match self
            .web_api_call(Method::GET, "users.info", url, None)
            .await
        {
            Ok(body) => body,
            Err(e) if e.message.ends_with(": user_not_found") => return Ok(()),
            Err(e) => return Err(e),
        };
        let flag =
            |k: &str| info.pointer(&format!("/user/{k}")).and_then(Value::as_bool) == Some(true);
        let role = ["is_primary_owner", "is_owner", "is_admin"]
            .into_iter()
            .find(|k| flag(k));
        match role {
            Some(r) => Err(ConnectorError::refused(
                &self.name,
                format!(
                    "Slack user {:?} ({user_id}) has {r}; the hub never touches owners and admins",
                    account.key
                ),
            )),
            None => Ok(()),
        }
    }

    /// Calls a Web API method with a JSON body; `Ok(body)` when `ok: true`.
    async fn web_api(&self, method: &str, args: Value) -> Result<Value, ConnectorError> {
        let url = self.api_url(method)?;
        self.web_api_call(Method::POST, method, url, Some(args))
            .await
    }

    async fn web_api_call(
        &self,
        verb: Method,
        method: &str,
        url: Url,
        args: Option<Value>,
    ) -> Result<Value, ConnectorError> {
        let auth = http::auth_header("Bearer", &self.admin_token)
            .map_err(|m| self.http.error(ErrorKind::Permanent, m))?;
        let mut req = self.http.request(verb, url).header(AUTHORIZATION, auth);
        if let Some(args) = args {
            let body = serde_json::to_vec(&args).map_err(|e| {
                self.http
                    .error(ErrorKind::Permanent, format!("cannot encode {method}: {e}"))
            })?;
            req = req
                .header(CONTENT_TYPE, "application/json; charset=utf-8")
                .body(body);
        }
        let resp = self.http.send(req).await?;
        let parsed = resp.json_value().ok();
        let code = parsed
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !resp.is_success() {
            return Err(self.http.status_error(&resp, &code));
        }
        let body = parsed.unwrap_or(Value::Null);
        if body.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(body);
        }
        let mut message = format!(
            "{method}: {}",
            if code.is_empty() { "ok:false" } else { &code }
        );
        if let Some(needed) = body.get("needed").and_then(Value::as_str) {
            message.push_str(&format!(" (needed {needed})"));
        }
        let kind = if slack_error_retryable(&code) {
            ErrorKind::Retryable
        } else {
            ErrorKind::Permanent
        };
        let mut err = self.http.error(kind, message);
        if let Some(after) = http::retry_after(&resp.headers) {
            err = err.with_retry_after(after);
        }
        Err(err)
    }
}

#[async_trait]
impl Connector for SlackConnector {
    fn name(&self) -> &str {
        &self.name
    }

    /// The SCIM profile's operations plus session reset.
    fn capabilities(&self) -> Capabilities {
        let mut caps = self.scim.capabilities();
        caps.operations.push(Capability::RevokeSessions);
        caps
    }

    async fn create_or_adopt(&self, spec: &AccountSpec) -> Result<AccountRef, ConnectorError> {
        self.guard(&spec.account).await?;
        self.scim.create_or_adopt(spec).await
    }

    async fn update(&self, spec: &AccountSpec) -> Result<(), ConnectorError> {
        self.guard(&spec.account).await?;
        self.scim.update(spec).await
    }

    async fn set_enabled(&self, account: &AccountRef, enabled: bool) -> Result<(), ConnectorError> {
        self.guard(account).await?;
        self.scim.set_enabled(account, enabled).await
    }

    async fn delete(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.guard(account).await?;
        self.scim.delete(account).await
    }

    async fn grant(
        &self,
        account: &AccountRef,
        entitlement: &Entitlement,
    ) -> Result<(), ConnectorError> {
        self.guard(account).await?;
        self.scim.grant(account, entitlement).await
    }

    async fn revoke(
        &self,
        account: &AccountRef,
        entitlement: &Entitlement,
    ) -> Result<(), ConnectorError> {
        self.guard(account).await?;
        self.scim.revoke(account, entitlement).await
    }

    /// `admin.users.session.reset` for the account's Slack user id (its SCIM id).
    async fn revoke_sessions(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.guard(account).await?;
        let Some(user_id) = self.scim.find_user_id(account).await? else {
            return Ok(());
        };
        let mut args = json!({ "user_id": user_id });
        if self.mobile_only {
            args["mobile_only"] = Value::Bool(true);
        }
        if self.web_only {
            args["web_only"] = Value::Bool(true);
        }
        match self.web_api("admin.users.session.reset", args).await {
            Ok(_) => Ok(()),
            Err(e) if e.message.ends_with(": user_not_found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn read(&self, account: &AccountRef) -> Result<Option<AccountState>, ConnectorError> {
        self.scim.read(account).await
    }

    async fn list_accounts(&self, page: Option<&str>) -> Result<AccountPage, ConnectorError> {
        self.scim.list_accounts(page).await
    }
}
