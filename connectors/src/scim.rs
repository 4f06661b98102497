//! Generic SCIM 2.0 connector (RFC 7643/7644): any SCIM service provider, with profiles for the
//! documented differences of Slack's and GitHub Enterprise Managed Users' SCIM APIs.
//!
//! * **create or adopt** — looks the user up by a `userName` (and/or `externalId`) filter first;
//!   an existing user is adopted under [`crate::ownership`]'s rules (never a protected userName;
//!   only users matching `managed_filter`; with `adopt = "unowned"`, only users without an
//!   `externalId` or with the spec's) and brought to the spec with `active=true`. A `409` (or `400
//!   uniqueness`) on POST means someone created it meanwhile: look it up again and adopt under
//!   the same rules. New users are POSTed with `active=true`. Every lookup's answer is checked
//!   against what was asked (`userName` up to case, `externalId` exactly, `id` exactly): a
//!   provider that ignores the filter gets a refusal, not an adoption.
//! * **update** — `PATCH` with one `replace` per changed attribute (extension attributes by their
//!   fully qualified path), or `PUT` of the merged resource, per [`UpdateMethod`]. Nothing is sent
//!   when nothing changed.
//! * **disable** — `PATCH active=false` or `DELETE`, per [`DisableMethod`]; enabling is always
//!   `PATCH active=true`.
//! * **delete** — `DELETE /Users/{id}`; `404` is success.
//! * **grant / revoke** — `PATCH /Groups/{gid}` with `add members` / `remove
//!   members[value eq "uid"]`; the group is named by id or resolved from its `displayName` by
//!   filter ([`GroupRef`]). Revoking what is not held (`404`, `400 noTarget`) is success.
//! * **read** — `GET /Users/{id}`, entitlements from the user's `groups` attribute or, where the
//!   provider does not fill it and supports it, a `members.value eq "uid"` filter on Groups.
//! * **list** — `GET /Users?startIndex=&count=`; the page token is the next `startIndex`.
//!
//! Filters are built as [`scim_schema::filter::Filter`] trees and printed by its printer, which
//! escapes quotes and backslashes, so user input never reaches filter text by concatenation.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::{Method, StatusCode, Url};
use scim_schema::filter::{AttrPath, CompValue, CompareOp, Filter, PatchPath};
use scim_schema::message::{ErrorResponse, ListResponse, PatchOpRequest, RawPatchOperation};
use scim_schema::ScimType;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::connector::{Capabilities, Capability, Connector};
use crate::error::{ConnectorError, ErrorKind};
use crate::http::{self, HttpClient, HttpResponse};
use crate::model::{AccountPage, AccountRef, AccountSpec, AccountState, Entitlement};
use crate::ownership::{Adopt, Mark, Ownership};
use crate::secret::{Secret, SecretRef};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const SCIM_JSON: &str = "application/scim+json";
/// userNames the connector never adopts, modifies, disables or deletes (`protected_accounts`
/// adds to them).
pub const DEFAULT_PROTECTED: &[&str] = &["root", "admin", "administrator"];

/// Which provider's documented differences to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScimProfile {
    /// RFC 7643/7644 as written.
    #[default]
    Generic,
    /// Slack's SCIM API v2 (`https://api.slack.com/scim/v2/`): `count` capped at 1000, no
    /// compound (`and`/`or`) filters and no filters on `Groups.members`, `emails` required on
    /// create, group memberships read from the user's `groups` attribute. `DELETE /Users/{id}`
    /// *deactivates* a Slack user (Slack has no hard delete over SCIM), so `delete` leaves a
    /// deactivated account behind. SCIM v1.1 (`/scim/v1`) is not supported.
    Slack,
    /// GitHub Enterprise Managed Users (`https://api.github.com/scim/v2/enterprises/{enterprise}/`):
    /// `Accept: application/scim+json` and `X-GitHub-Api-Version: 2022-11-28` on every call;
    /// `externalId` and `emails` required on create and `roles` defaulted to
    /// `[{"value":"user","primary":false}]`; matched by `externalId` or `userName`; no compound
    /// filters; `count` capped at 100. Disable suspends (`active=false`); `DELETE` deletes.
    GithubEmu,
}

impl ScimProfile {
    fn compound_filters(self) -> bool {
        self == ScimProfile::Generic
    }

    fn member_filter(self) -> bool {
        self == ScimProfile::Generic
    }

    fn max_page_size(self) -> u32 {
        match self {
            ScimProfile::Generic => 1000,
            ScimProfile::Slack => 1000,
            ScimProfile::GithubEmu => 100,
        }
    }

    fn default_match(self) -> MatchBy {
        match self {
            ScimProfile::GithubEmu => MatchBy::UserNameOrExternalId,
            _ => MatchBy::UserName,
        }
    }

    /// Adjusts a User document for POST (and PUT); `Err` names what the provider requires.
    fn prepare_user(self, doc: &mut Map<String, Value>) -> Result<(), String> {
        let has = |doc: &Map<String, Value>, k: &str| {
            doc.get(k)
                .is_some_and(|v| !v.is_null() && v != &json!([]) && v != &json!(""))
        };
        match self {
            ScimProfile::Generic => Ok(()),
            ScimProfile::Slack => {
                if !has(doc, "emails") {
                    return Err("Slack requires emails on a user".into());
                }
                Ok(())
            }
            ScimProfile::GithubEmu => {
                for required in ["externalId", "emails"] {
                    if !has(doc, required) {
                        return Err(format!(
                            "GitHub Enterprise Managed Users require {required} on a user"
                        ));
                    }
                }
                if !has(doc, "roles") {
                    doc.insert("roles".into(), json!([{"value": "user", "primary": false}]));
                }
                Ok(())
            }
        }
    }
}

/// How `update` writes changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateMethod {
    /// `PATCH` with a `replace` per changed attribute.
    #[default]
    Patch,
    /// `PUT` of the whole resource (current merged with the spec).
    Put,
}

/// How `set_enabled(false)` disables an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisableMethod {
    /// `PATCH` `replace active=false`.
    #[default]
    ActiveFalse,
    /// `DELETE /Users/{id}` (for providers where deletion is the deactivation, e.g. Slack).
    Delete,
}

/// How an existing account is found before create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchBy {
    UserName,
    /// `externalId` from the spec's attributes; falls back to `userName` when the spec has none.
    ExternalId,
    UserNameOrExternalId,
}

/// How entitlement ids name groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRef {
    /// The entitlement id is the SCIM Group `id`.
    #[default]
    Id,
    /// The entitlement id is the Group's `displayName`, resolved by filter.
    DisplayName,
}

fn default_page_size() -> u32 {
    100
}

fn default_timeout_ms() -> u64 {
    30_000
}

/// Settings of one SCIM connector instance, as written in the policy (the token is passed
/// separately, see [`ScimConnector::from_secret_ref`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimSettings {
    /// The SCIM base URL, e.g. `https://api.slack.com/scim/v2`; `/Users` and `/Groups` are
    /// appended.
    pub base_url: String,
    #[serde(default)]
    pub profile: ScimProfile,
    #[serde(default)]
    pub update: UpdateMethod,
    /// Default: `active_false`.
    #[serde(default)]
    pub disable: DisableMethod,
    /// Default: per profile (`user_name`; GitHub EMU: `user_name_or_external_id`).
    #[serde(default)]
    pub match_by: Option<MatchBy>,
    #[serde(default)]
    pub groups_by: GroupRef,
    /// `count` for list pages (capped per profile).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Bound on every HTTP call, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `never`, `unowned` (default) or `always` (see [`Adopt`]).
    #[serde(default)]
    pub adopt: Adopt,
    /// userNames and globs never touched, added to [`DEFAULT_PROTECTED`].
    #[serde(default)]
    pub protected_accounts: Vec<String>,
    /// A SCIM filter the provider's users must match to be managed (e.g.
    /// `userType eq "Employee"`), evaluated by the hub on the user it reads; default: all.
    #[serde(default)]
    pub managed_filter: Option<String>,
}

impl ScimSettings {
    pub fn new(base_url: impl Into<String>) -> Self {
        ScimSettings {
            base_url: base_url.into(),
            profile: ScimProfile::Generic,
            update: UpdateMethod::Patch,
            disable: DisableMethod::ActiveFalse,
            match_by: None,
            groups_by: GroupRef::Id,
            page_size: default_page_size(),
            timeout_ms: default_timeout_ms(),
            adopt: Adopt::default(),
            protected_accounts: Vec::new(),
            managed_filter: None,
        }
    }
}

/// A SCIM 2.0 service provider reached with a bearer token.
#[derive(Debug)]
pub struct ScimConnector {
    name: String,
    settings: ScimSettings,
    base: Url,
    http: HttpClient,
    token: Secret,
    ownership: Ownership,
    managed_filter: Option<Filter>,
}

/// Parses `managed_filter` (also used by the policy checker).
pub fn parse_managed_filter(text: &str) -> Result<Filter, String> {
    scim_schema::filter::parse_filter(text).map_err(|e| format!("managed_filter: {e}"))
}

impl ScimConnector {
    pub fn new(name: &str, settings: ScimSettings, token: Secret) -> Result<Self, ConnectorError> {
        let base = http::parse_base_url(name, "base_url", &settings.base_url)?;
        let http =
            HttpClient::new(name, Duration::from_millis(settings.timeout_ms))?.redacting(&token);
        let managed_filter = settings
            .managed_filter
            .as_deref()
            .map(parse_managed_filter)
            .transpose()
            .map_err(|m| ConnectorError::permanent(name, m))?;
        // the owner's mark is the externalId the hub sends, so there is no owner id to set
        let ownership = Ownership::new(
            name,
            settings.adopt,
            DEFAULT_PROTECTED,
            &settings.protected_accounts,
            "externalId",
        );
        Ok(ScimConnector {
            name: name.to_owned(),
            settings,
            base,
            http,
            token,
            ownership,
            managed_filter,
        })
    }

    /// Loads the token from the policy's secret reference (env var or file).
    pub fn from_secret_ref(
        name: &str,
        settings: ScimSettings,
        token: &SecretRef,
    ) -> Result<Self, ConnectorError> {
        let token = token
            .load()
            .map_err(|e| ConnectorError::permanent(name, e.to_string()))?;
        Self::new(name, settings, token)
    }

    pub fn settings(&self) -> &ScimSettings {
        &self.settings
    }

    fn match_by(&self) -> MatchBy {
        self.settings
            .match_by
            .unwrap_or(self.settings.profile.default_match())
    }

    fn page_size(&self) -> u32 {
        self.settings
            .page_size
            .clamp(1, self.settings.profile.max_page_size())
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ConnectorError> {
        http::join_segments(&self.base, segments)
            .map_err(|e| self.http.error(ErrorKind::Permanent, e.to_string()))
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<HttpResponse, ConnectorError> {
        let auth = http::auth_header("Bearer", &self.token)
            .map_err(|m| self.http.error(ErrorKind::Permanent, m))?;
        let mut req = self.http.request(method, url).header(AUTHORIZATION, auth);
        if self.settings.profile == ScimProfile::GithubEmu {
            req = req.header(ACCEPT, SCIM_JSON).header(
                "X-GitHub-Api-Version",
                HeaderValue::from_static("2022-11-28"),
            );
        } else {
            req = req.header(ACCEPT, "application/scim+json, application/json");
        }
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = self.http.json_body(req, SCIM_JSON, body)?;
        }
        self.http.send(req).await
    }

    /// The error for a failed SCIM response, with the provider's `scimType` and `detail`.
    fn fail(&self, resp: &HttpResponse) -> ConnectorError {
        self.http.status_error(resp, &scim_error_detail(resp))
    }

    fn json(&self, resp: &HttpResponse) -> Result<Value, ConnectorError> {
        self.http.decode_json(resp)
    }

    /// `GET /Users/{id}`; `None` on 404. A user with another `id` is refused: the hub would
    /// otherwise modify whoever the provider chose to answer with.
    async fn get_user(&self, id: &str) -> Result<Option<Value>, ConnectorError> {
        let resp = self
            .call(Method::GET, self.url(&["Users", id])?, &[], None)
            .await?;
        match resp.status {
            s if s.is_success() => {
                let user = self.json(&resp)?;
                let got = user.get("id").and_then(Value::as_str);
                if got != Some(id) {
                    return Err(self.http.error(
                        ErrorKind::Refused,
                        format!(
                            "GET {} answered with the user with id {got:?}, not {id:?}; \
                             not touching it",
                            resp.path
                        ),
                    ));
                }
                Ok(Some(user))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.fail(&resp)),
        }
    }

    /// `GET /{resource}?filter=…`, all matches (bounded by one page of `count`).
    async fn search(&self, resource: &str, filter: &Filter) -> Result<Vec<Value>, ConnectorError> {
        let query = [
            ("filter", filter.to_string()),
            ("count", self.page_size().to_string()),
        ];
        let resp = self
            .call(Method::GET, self.url(&[resource])?, &query, None)
            .await?;
        if !resp.is_success() {
            return Err(self.fail(&resp));
        }
        let list: ListResponse<Value> = serde_json::from_slice(&resp.body).map_err(|e| {
            self.http.error(
                ErrorKind::Permanent,
                format!("GET {}: not a ListResponse: {e}", resp.path),
            )
        })?;
        Ok(list.resources)
    }

    async fn search_one(
        &self,
        resource: &str,
        filter: &Filter,
    ) -> Result<Option<Value>, ConnectorError> {
        let mut found = self.search(resource, filter).await?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            n => Err(self.http.error(
                ErrorKind::Permanent,
                format!("{n} {resource} match {filter}; refusing to guess"),
            )),
        }
    }

    /// The one user matching `wanted`, checked: a provider that ignores or mis-evaluates
    /// `filter=` answers with someone else, whom the hub must never adopt nor modify.
    async fn search_user(
        &self,
        key: &str,
        wanted: UserMatch<'_>,
    ) -> Result<Option<Value>, ConnectorError> {
        let filter = wanted.filter();
        let Some(user) = self.search_one("Users", &filter).await? else {
            return Ok(None);
        };
        if !wanted.holds_for(&user) {
            let field = |k: &str| user.get(k).and_then(Value::as_str).map(str::to_owned);
            return Err(self.http.error(
                ErrorKind::Refused,
                format!(
                    "account {key}: the provider answered {filter} with a user whose userName is \
                     {:?} and externalId {:?} (id {:?}); it does not match, so the hub will not \
                     adopt nor modify it",
                    field("userName"),
                    field("externalId"),
                    field("id"),
                ),
            ));
        }
        Ok(Some(user))
    }

    /// Finds an existing user for `account`: by id when known, else by the configured match.
    async fn find_user(
        &self,
        account: &AccountRef,
        attributes: Option<&Map<String, Value>>,
    ) -> Result<Option<Value>, ConnectorError> {
        if let Some(id) = &account.id {
            if let Some(user) = self.get_user(id).await? {
                return Ok(Some(user));
            }
        }
        let user_name = attributes
            .and_then(|a| a.get("userName"))
            .and_then(Value::as_str)
            .unwrap_or(&account.key);
        let external_id = attributes
            .and_then(|a| a.get("externalId"))
            .and_then(Value::as_str);
        let key = &account.key;
        let by_name = UserMatch::UserName(user_name);
        match (self.match_by(), external_id) {
            (MatchBy::UserName, _) | (_, None) => self.search_user(key, by_name).await,
            (MatchBy::ExternalId, Some(ext)) => {
                self.search_user(key, UserMatch::ExternalId(ext)).await
            }
            (MatchBy::UserNameOrExternalId, Some(ext)) => {
                if self.settings.profile.compound_filters() {
                    return self
                        .search_user(key, UserMatch::Either(user_name, ext))
                        .await;
                }
                match self.search_user(key, UserMatch::ExternalId(ext)).await? {
                    Some(user) => Ok(Some(user)),
                    None => self.search_user(key, by_name).await,
                }
            }
        }
    }

    /// The provider's id for `account`, looked up when not known; `None` when it does not exist.
    pub async fn find_user_id(
        &self,
        account: &AccountRef,
    ) -> Result<Option<String>, ConnectorError> {
        if let Some(id) = &account.id {
            return Ok(Some(id.clone()));
        }
        match self.find_user(account, None).await? {
            Some(user) => self.id_of(&user, "user").map(Some),
            None => Ok(None),
        }
    }

    /// The `id` of a resource the provider answered with. An answer without one is broken, not
    /// "no such account": taken as gone, a leaver was marked done with nothing disabled.
    fn id_of(&self, resource: &Value, what: &str) -> Result<String, ConnectorError> {
        resource_id(resource).ok_or_else(|| {
            self.http.error(
                ErrorKind::Permanent,
                format!("the provider answered with a {what} without a string id"),
            )
        })
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
        match self.settings.groups_by {
            GroupRef::Id => Ok(Some(entitlement.id.clone())),
            GroupRef::DisplayName => {
                let filter = eq("displayName", &entitlement.id);
                let Some(group) = self.search_one("Groups", &filter).await? else {
                    return Ok(None);
                };
                // as for users: a provider ignoring the filter would name another group
                let name = group.get("displayName").and_then(Value::as_str);
                if !name.is_some_and(|n| eq_ci(n, &entitlement.id)) {
                    return Err(self.http.error(
                        ErrorKind::Refused,
                        format!(
                            "the provider answered {filter} with the group {name:?}; \
                             not granting or revoking it"
                        ),
                    ));
                }
                self.id_of(&group, "group").map(Some)
            }
        }
    }

    fn in_scope(&self, user: &Value) -> bool {
        match (&self.managed_filter, user.as_object()) {
            (None, _) => true,
            (Some(f), Some(u)) => scim_schema::filter::matches(f, u, None),
            (Some(_), None) => false,
        }
    }

    /// The owner's mark of a provider user: its `externalId`, which is ours when it is the one
    /// the spec carries (`attributes`), another owner's when it differs.
    fn mark_of(&self, user: &Value, attributes: Option<&Map<String, Value>>) -> Mark {
        let theirs = user
            .get("externalId")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let ours = attributes
            .and_then(|a| a.get("externalId"))
            .and_then(Value::as_str);
        match (theirs, ours) {
            (None, _) => Mark::None,
            (Some(t), Some(o)) if t == o => Mark::Ours,
            (Some(t), _) => Mark::Other(format!("externalId {t}")),
        }
    }

    /// Refuses a provider user that is protected by its key or its `userName`.
    fn check_not_protected(&self, key: &str, user: Option<&Value>) -> Result<(), ConnectorError> {
        self.ownership.check_not_protected("account", key)?;
        if let Some(name) = user.and_then(|u| u.get("userName")).and_then(Value::as_str) {
            self.ownership.check_not_protected("account", name)?;
        }
        Ok(())
    }

    /// Adopts `existing` under the ownership rules, then brings it to `spec`, enabled.
    async fn adopt(
        &self,
        existing: &Value,
        spec: &AccountSpec,
    ) -> Result<AccountRef, ConnectorError> {
        let key = &spec.account.key;
        self.check_not_protected(key, Some(existing))?;
        self.ownership.may_adopt(
            key,
            self.in_scope(existing),
            &self.mark_of(existing, Some(&spec.attributes)),
        )?;
        self.bring_to(existing, spec, true).await
    }

    /// The provider's id of an existing user after the checks for modifying it (protected,
    /// scope); `None` when it does not exist.
    async fn managed_user_id(
        &self,
        account: &AccountRef,
    ) -> Result<Option<String>, ConnectorError> {
        self.check_not_protected(&account.key, None)?;
        let Some(user) = self.find_user(account, None).await? else {
            return Ok(None);
        };
        self.check_not_protected(&account.key, Some(&user))?;
        self.ownership
            .may_manage(&account.key, self.in_scope(&user), &Mark::None)?;
        let id = self.id_of(&user, "user")?;
        // The account the hub created or adopted is gone and another now carries its name:
        // someone else's account, which disabling, deleting or regranting would hit.
        if let Some(stored) = account.id.as_deref().filter(|s| *s != id) {
            return Err(self.http.error(
                ErrorKind::Refused,
                format!(
                    "account {}: the user the hub manages (id {stored:?}) is gone and the user \
                     with id {id:?} now carries its name; not touching it",
                    account.key
                ),
            ));
        }
        Ok(Some(id))
    }

    /// The User document to POST: the spec's attributes, `schemas` and `userName` filled in.
    fn user_document(&self, spec: &AccountSpec) -> Result<Map<String, Value>, ConnectorError> {
        let mut doc = spec.attributes.clone();
        for read_only in ["id", "meta", "groups"] {
            doc.remove(read_only);
        }
        doc.entry("userName")
            .or_insert_with(|| Value::String(spec.account.key.clone()));
        if !doc.contains_key("schemas") {
            let mut schemas = vec![Value::String(USER_SCHEMA.into())];
            for k in doc.keys() {
                if k.starts_with("urn:") {
                    schemas.push(Value::String(k.clone()));
                }
            }
            doc.insert("schemas".into(), Value::Array(schemas));
        }
        self.settings
            .profile
            .prepare_user(&mut doc)
            .map_err(|m| self.http.error(ErrorKind::Permanent, m))?;
        Ok(doc)
    }

    /// Brings `current` to `spec` (and with `enable`, to `active=true`); returns the account
    /// with its id.
    async fn bring_to(
        &self,
        current: &Value,
        spec: &AccountSpec,
        enable: bool,
    ) -> Result<AccountRef, ConnectorError> {
        let id = resource_id(current).ok_or_else(|| {
            self.http.error(
                ErrorKind::Permanent,
                "provider returned a user without an id",
            )
        })?;
        let mut desired = self.user_document(spec)?;
        if enable {
            desired.insert("active".into(), Value::Bool(true));
        }
        let account = AccountRef::new(spec.account.key.clone()).with_id(id.clone());
        match self.settings.update {
            UpdateMethod::Patch => {
                let ops = diff_ops(current, &desired);
                if ops.is_empty() {
                    return Ok(account);
                }
                self.patch(&["Users", &id], ops).await?;
            }
            UpdateMethod::Put => {
                let mut merged = current.as_object().cloned().unwrap_or_default();
                merged.remove("meta");
                merged.remove("groups");
                let before = merged.clone();
                for (k, v) in desired {
                    if k != "schemas" || !merged.contains_key("schemas") {
                        merged.insert(k, v);
                    }
                }
                if merged == before {
                    return Ok(account);
                }
                let resp = self
                    .call(
                        Method::PUT,
                        self.url(&["Users", &id])?,
                        &[],
                        Some(&Value::Object(merged)),
                    )
                    .await?;
                if !resp.is_success() {
                    return Err(self.fail(&resp));
                }
            }
        }
        Ok(account)
    }

    async fn patch(
        &self,
        segments: &[&str],
        ops: Vec<RawPatchOperation>,
    ) -> Result<HttpResponse, ConnectorError> {
        let body = serde_json::to_value(PatchOpRequest::new(ops)).map_err(|e| {
            self.http
                .error(ErrorKind::Permanent, format!("cannot encode PATCH: {e}"))
        })?;
        let resp = self
            .call(Method::PATCH, self.url(segments)?, &[], Some(&body))
            .await?;
        if resp.is_success() {
            Ok(resp)
        } else {
            Err(self.fail(&resp))
        }
    }

    async fn delete_user(&self, id: &str) -> Result<(), ConnectorError> {
        let resp = self
            .call(Method::DELETE, self.url(&["Users", id])?, &[], None)
            .await?;
        if resp.is_success() || resp.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.fail(&resp))
        }
    }

    async fn entitlements_of(
        &self,
        user: &Value,
        id: &str,
    ) -> Result<Vec<Entitlement>, ConnectorError> {
        let by_name = self.settings.groups_by == GroupRef::DisplayName;
        if let Some(groups) = user.get("groups").and_then(Value::as_array) {
            let mut out: Vec<Entitlement> = groups
                .iter()
                .filter_map(|g| {
                    let key = if by_name { "display" } else { "value" };
                    g.get(key).and_then(Value::as_str)
                })
                .map(|g| Entitlement::new("group", g))
                .collect();
            out.sort();
            return Ok(out);
        }
        if !self.settings.profile.member_filter() {
            return Ok(Vec::new());
        }
        let filter = Filter::Compare {
            path: AttrPath::with_sub("members", "value"),
            op: CompareOp::Eq,
            value: CompValue::Str(id.to_owned()),
        };
        let mut out: Vec<Entitlement> = self
            .search("Groups", &filter)
            .await?
            .iter()
            .filter_map(|g| {
                if by_name {
                    g.get("displayName")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                } else {
                    resource_id(g)
                }
            })
            .map(|g| Entitlement::new("group", g))
            .collect();
        out.sort();
        Ok(out)
    }

    fn state_of(&self, user: &Value, entitlements: Vec<Entitlement>) -> Option<AccountState> {
        let id = resource_id(user)?;
        let mut attributes = user.as_object().cloned().unwrap_or_default();
        for k in ["meta", "schemas", "groups"] {
            attributes.remove(k);
        }
        let key = attributes
            .get("userName")
            .and_then(Value::as_str)
            .unwrap_or(&id)
            .to_owned();
        Some(AccountState {
            account: AccountRef::new(key).with_id(id),
            enabled: user.get("active").and_then(Value::as_bool).unwrap_or(true),
            attributes,
            entitlements,
        })
    }

    fn capabilities_list() -> Vec<Capability> {
        vec![
            Capability::CreateAccount,
            Capability::UpdateAccount,
            Capability::EnableDisable,
            Capability::DeleteAccount,
            Capability::Grant,
            Capability::Revoke,
            Capability::ReadAccount,
            Capability::ListAccounts,
        ]
    }
}

/// What a user lookup asks the provider for.
#[derive(Debug, Clone, Copy)]
enum UserMatch<'a> {
    UserName(&'a str),
    ExternalId(&'a str),
    Either(&'a str, &'a str),
}

impl UserMatch<'_> {
    fn filter(self) -> Filter {
        match self {
            UserMatch::UserName(n) => eq("userName", n),
            UserMatch::ExternalId(e) => eq("externalId", e),
            UserMatch::Either(n, e) => {
                Filter::Or(Box::new(eq("userName", n)), Box::new(eq("externalId", e)))
            }
        }
    }

    /// Whether `user` is what was asked for: `userName` compared case-insensitively (RFC 7643
    /// makes it caseExact=false), `externalId` exactly (caseExact=true).
    fn holds_for(self, user: &Value) -> bool {
        let name = user.get("userName").and_then(Value::as_str);
        let ext = user.get("externalId").and_then(Value::as_str);
        let name_is = |n: &str| name.is_some_and(|u| eq_ci(u, n));
        match self {
            UserMatch::UserName(n) => name_is(n),
            UserMatch::ExternalId(e) => ext == Some(e),
            UserMatch::Either(n, e) => name_is(n) || ext == Some(e),
        }
    }
}

fn eq_ci(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

fn eq(attr: &str, value: &str) -> Filter {
    Filter::Compare {
        path: AttrPath::simple(attr),
        op: CompareOp::Eq,
        value: CompValue::Str(value.to_owned()),
    }
}

fn resource_id(v: &Value) -> Option<String> {
    v.get("id").and_then(Value::as_str).map(str::to_owned)
}

fn replace(path: String, value: Value) -> RawPatchOperation {
    RawPatchOperation {
        op: "replace".into(),
        path: Some(path),
        value: Some(value),
    }
}

/// `replace` operations taking `current` to `desired`: one per changed core attribute, one per
/// changed sub-attribute of an extension (`urn:…:User:employeeNumber`). Attributes the spec does
/// not mention are left alone; `password` (write-only, never returned) is not re-sent.
fn diff_ops(current: &Value, desired: &Map<String, Value>) -> Vec<RawPatchOperation> {
    let mut ops = Vec::new();
    for (k, v) in desired {
        if matches!(
            k.as_str(),
            "schemas" | "id" | "meta" | "groups" | "password"
        ) {
            continue;
        }
        let cur = current.get(k);
        if k.starts_with("urn:") {
            if let Value::Object(ext) = v {
                for (sub, sv) in ext {
                    if cur.and_then(|c| c.get(sub)) != Some(sv) {
                        ops.push(replace(format!("{k}:{sub}"), sv.clone()));
                    }
                }
                continue;
            }
        }
        if cur != Some(v) {
            ops.push(replace(k.clone(), v.clone()));
        }
    }
    ops
}

/// `scimType: detail` from an RFC 7644 error body, Slack's v1 `{"Errors":{"description"}}`, or a
/// body excerpt.
fn scim_error_detail(resp: &HttpResponse) -> String {
    if let Ok(err) = serde_json::from_slice::<ErrorResponse>(&resp.body) {
        let mut out = String::new();
        if let Some(t) = &err.scim_type {
            out.push_str(&format!("{t:?}"));
        }
        if let Some(d) = &err.detail {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(d);
        }
        if !out.is_empty() {
            return out;
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(&resp.body) {
        if let Some(d) = v
            .pointer("/Errors/description")
            .or_else(|| v.pointer("/detail"))
            .and_then(Value::as_str)
        {
            return d.to_owned();
        }
    }
    resp.body_excerpt()
}

fn scim_type_of(resp: &HttpResponse) -> Option<ScimType> {
    serde_json::from_slice::<ErrorResponse>(&resp.body)
        .ok()
        .and_then(|e| e.scim_type)
}

#[async_trait]
impl Connector for ScimConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn excluded(&self, account: &AccountState) -> Option<String> {
        self.ownership.excluded(&account.account.key, true)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            operations: Self::capabilities_list(),
            entitlement_kinds: vec!["group".into()],
        }
    }

    async fn create_or_adopt(&self, spec: &AccountSpec) -> Result<AccountRef, ConnectorError> {
        self.check_not_protected(&spec.account.key, None)?;
        if let Some(existing) = self
            .find_user(&spec.account, Some(&spec.attributes))
            .await?
        {
            return self.adopt(&existing, spec).await;
        }
        // the full desired state: the hub records a created account as enabled
        let mut doc = self.user_document(spec)?;
        doc.insert("active".into(), Value::Bool(true));
        let doc = Value::Object(doc);
        let resp = self
            .call(Method::POST, self.url(&["Users"])?, &[], Some(&doc))
            .await?;
        if resp.is_success() {
            let created = self.json(&resp)?;
            let id = resource_id(&created).ok_or_else(|| {
                self.http
                    .error(ErrorKind::Permanent, "POST /Users: response has no id")
            })?;
            return Ok(AccountRef::new(spec.account.key.clone()).with_id(id));
        }
        let conflict = resp.status == StatusCode::CONFLICT
            || (resp.status == StatusCode::BAD_REQUEST
                && scim_type_of(&resp) == Some(ScimType::Uniqueness));
        if conflict {
            // Created concurrently, or held under the same userName but not found by our
            // match (e.g. a different externalId): look again, by userName last, and adopt.
            let mut existing = self
                .find_user(&spec.account, Some(&spec.attributes))
                .await?;
            if existing.is_none() {
                let user_name = doc
                    .get("userName")
                    .and_then(Value::as_str)
                    .unwrap_or(&spec.account.key);
                existing = self
                    .search_user(&spec.account.key, UserMatch::UserName(user_name))
                    .await?;
            }
            if let Some(existing) = existing {
                return self.adopt(&existing, spec).await;
            }
        }
        Err(self.fail(&resp))
    }

    async fn update(&self, spec: &AccountSpec) -> Result<(), ConnectorError> {
        self.check_not_protected(&spec.account.key, None)?;
        let current = self
            .find_user(&spec.account, Some(&spec.attributes))
            .await?
            .ok_or_else(|| {
                self.http.error(
                    ErrorKind::Permanent,
                    format!("account {} does not exist", spec.account.key),
                )
            })?;
        self.check_not_protected(&spec.account.key, Some(&current))?;
        self.ownership.may_manage(
            &spec.account.key,
            self.in_scope(&current),
            &self.mark_of(&current, Some(&spec.attributes)),
        )?;
        self.bring_to(&current, spec, false).await.map(|_| ())
    }

    async fn set_enabled(&self, account: &AccountRef, enabled: bool) -> Result<(), ConnectorError> {
        let Some(id) = self.managed_user_id(account).await? else {
            if enabled {
                return Err(self.http.error(
                    ErrorKind::Permanent,
                    format!("account {} does not exist", account.key),
                ));
            }
            return Ok(()); // gone is as disabled as it gets
        };
        if !enabled && self.settings.disable == DisableMethod::Delete {
            return self.delete_user(&id).await;
        }
        let op = replace("active".into(), Value::Bool(enabled));
        let body = serde_json::to_value(PatchOpRequest::new(vec![op])).map_err(|e| {
            self.http
                .error(ErrorKind::Permanent, format!("cannot encode PATCH: {e}"))
        })?;
        let resp = self
            .call(Method::PATCH, self.url(&["Users", &id])?, &[], Some(&body))
            .await?;
        // Deleted between lookup and PATCH: as disabled as it gets.
        if resp.is_success() || (!enabled && resp.status == StatusCode::NOT_FOUND) {
            Ok(())
        } else {
            Err(self.fail(&resp))
        }
    }

    async fn delete(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        match self.managed_user_id(account).await? {
            Some(id) => self.delete_user(&id).await,
            None => Ok(()),
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
        let uid = self.managed_user_id(account).await?.ok_or_else(|| {
            self.http.error(
                ErrorKind::Permanent,
                format!("account {} does not exist", account.key),
            )
        })?;
        let op = RawPatchOperation {
            op: "add".into(),
            path: Some("members".into()),
            value: Some(json!([{ "value": uid }])),
        };
        self.patch(&["Groups", &gid], vec![op]).await.map(|_| ())
    }

    async fn revoke(
        &self,
        account: &AccountRef,
        entitlement: &Entitlement,
    ) -> Result<(), ConnectorError> {
        let Some(gid) = self.group_id(entitlement).await? else {
            return Ok(());
        };
        let Some(uid) = self.managed_user_id(account).await? else {
            return Ok(());
        };
        let path = PatchPath {
            attr: AttrPath::simple("members"),
            value_filter: Some(eq("value", &uid)),
            sub_attr: None,
        };
        let op = RawPatchOperation {
            op: "remove".into(),
            path: Some(path.to_string()),
            value: None,
        };
        let body = serde_json::to_value(PatchOpRequest::new(vec![op])).map_err(|e| {
            self.http
                .error(ErrorKind::Permanent, format!("cannot encode PATCH: {e}"))
        })?;
        let resp = self
            .call(
                Method::PATCH,
                self.url(&["Groups", &gid])?,
                &[],
                Some(&body),
            )
            .await?;
        let not_held = resp.status == StatusCode::NOT_FOUND
            || (resp.status == StatusCode::BAD_REQUEST
                && scim_type_of(&resp) == Some(ScimType::NoTarget));
        if resp.is_success() || not_held {
            Ok(())
        } else {
            Err(self.fail(&resp))
        }
    }

    async fn read(&self, account: &AccountRef) -> Result<Option<AccountState>, ConnectorError> {
        let Some(user) = self.find_user(account, None).await? else {
            return Ok(None);
        };
        let id = self.id_of(&user, "user")?;
        let entitlements = self.entitlements_of(&user, &id).await?;
        Ok(self.state_of(&user, entitlements))
    }

    /// Pages by `startIndex`; entitlements come from each user's `groups` attribute only (one
    /// request per page; use [`Connector::read`] for the member-filter fallback).
    async fn list_accounts(&self, page: Option<&str>) -> Result<AccountPage, ConnectorError> {
        let start: u64 = match page {
            None => 1,
            Some(p) => p.parse().ok().filter(|s| *s >= 1).ok_or_else(|| {
                self.http
                    .error(ErrorKind::Permanent, format!("invalid page token {p:?}"))
            })?,
        };
        let query = [
            ("startIndex", start.to_string()),
            ("count", self.page_size().to_string()),
        ];
        let resp = self
            .call(Method::GET, self.url(&["Users"])?, &query, None)
            .await?;
        if !resp.is_success() {
            return Err(self.fail(&resp));
        }
        let list: ListResponse<Value> = serde_json::from_slice(&resp.body).map_err(|e| {
            self.http.error(
                ErrorKind::Permanent,
                format!("GET {}: not a ListResponse: {e}", resp.path),
            )
        })?;
        let n = list.resources.len() as u64;
        let mut accounts = Vec::with_capacity(list.resources.len());
        for user in &list.resources {
            let entitlements = match user.get("groups").and_then(Value::as_array) {
                Some(_) => self.entitlements_of(user, "").await?,
                None => Vec::new(),
            };
            if let Some(state) = self.state_of(user, entitlements) {
                accounts.push(state);
            }
        }
        let next_start = start + n;
        let next = (n > 0 && next_start <= list.total_results).then(|| next_start.to_string());
        Ok(AccountPage { accounts, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_escape_user_input() {
        let f = eq("userName", "a\" or userName pr or \"");
        assert_eq!(f.to_string(), r#"userName eq "a\" or userName pr or \"""#);
        let parsed = scim_schema::filter::parse_filter(&f.to_string()).expect("parses");
        assert_eq!(parsed, f);
    }

    #[test]
    fn member_remove_path_is_printed_by_the_ast() {
        let path = PatchPath {
            attr: AttrPath::simple("members"),
            value_filter: Some(eq("value", "x\"y")),
            sub_attr: None,
        };
        assert_eq!(path.to_string(), r#"members[value eq "x\"y"]"#);
    }

    #[test]
    fn diff_only_changed_attributes() {
        let current = json!({"id": "1", "userName": "a", "displayName": "A",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "x"}});
        let desired = json!({"schemas": [USER_SCHEMA], "userName": "a", "displayName": "B",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "x", "employeeNumber": "7"}});
        let ops = diff_ops(&current, desired.as_object().expect("object"));
        let paths: Vec<_> = ops.iter().filter_map(|o| o.path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                "displayName".to_owned(),
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn github_profile_defaults_roles_and_requires_external_id() {
        let mut doc = json!({"userName": "u", "emails": [{"value": "u@x", "primary": true}]})
            .as_object()
            .cloned()
            .expect("object");
        assert!(ScimProfile::GithubEmu.prepare_user(&mut doc).is_err());
        doc.insert("externalId".into(), json!("e"));
        ScimProfile::GithubEmu.prepare_user(&mut doc).expect("ok");
        assert_eq!(doc["roles"][0]["value"], "user");
        let settings: ScimSettings =
            serde_json::from_value(json!({"base_url": "http://h/scim/v2", "profile": "slack"}))
                .expect("settings");
        assert_eq!(settings.profile, ScimProfile::Slack);
    }
}
