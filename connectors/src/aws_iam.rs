//! AWS IAM users through IAM's SigV4-signed query API (`Action=…&Version=2010-05-08`, form-encoded
//! POST, XML responses), without the AWS SDK: `aws-sigv4` signs, [`HttpClient`] sends.
//!
//! - Account: an IAM user named by [`AccountRef::key`] under the configured path, with tags
//!   (`DisplayName`, `Email`, `ExternalId` from the SCIM attributes, plus the configured static
//!   tags, and the owner's mark `managed-by = scimhub:<owner_id>`). Creating a user that exists
//!   (`EntityAlreadyExists`) adopts it only under [`crate::ownership`]'s rules: not protected
//!   (`root` and `protected_accounts`), its path under `managed_path` (default: `path`), no other
//!   owner's `managed-by` tag (unless `adopt = "always"`); adopted users are marked, brought to the
//!   spec and un-suspended. Every operation on an existing user checks the same (protected, scope,
//!   other owner). `id` is the user's ARN.
//! - Entitlements: kind `group` (group name; `AddUserToGroup`/`RemoveUserFromGroup`) and kind
//!   `policy` (managed policy ARN; `AttachUserPolicy`/`DetachUserPolicy`).
//! - Disable: IAM has no disabled state, so disabling revokes every credential (see below) and
//!   tags the user `scimhub:suspended`; enabling removes the tag (credentials are not restored).
//! - Leave ([`Connector::delete`]): revoke credentials, strip access, then `DeleteUser`, or tag as
//!   suspended when [`LeaveMode::TagSuspended`]. The order is the one real IAM enforces
//!   (`DeleteUser` answers `409 DeleteConflict` while any of these remain): access keys
//!   (deactivated, then deleted), login profile, SSH public keys, service-specific credentials,
//!   signing certificates, MFA devices (deactivated; virtual ones deleted), attached managed
//!   policies, inline policies, group memberships, and last the user.
//! - Errors: `Throttling`, `RequestLimitExceeded`, `ServiceUnavailable`, `InternalFailure`,
//!   `ConcurrentModification`, 5xx and transport failures are retryable (with `Retry-After` when
//!   sent); `InvalidClientTokenId`, `SignatureDoesNotMatch`, `AccessDenied` and other 4xx are
//!   permanent; `NoSuchEntity` on anything that removes is success.
//!
//! Status classification, `Retry-After`, timeouts and secret scrubbing are [`HttpClient`]'s; this
//! module adds IAM's retryable error codes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use reqwest::{Method, Url};
use scim_schema::json::primary_email;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::connector::{Capabilities, Capability, Connector};
use crate::error::{ConnectorError, ErrorKind};
use crate::http::{self, HttpClient};
use crate::model::{AccountPage, AccountRef, AccountSpec, AccountState, Entitlement};
use crate::ownership::{default_owner_id, Adopt, Mark, Ownership};
use crate::secret::Secret;

const API_VERSION: &str = "2010-05-08";
/// IAM error codes that mean "try again later" whatever the HTTP status (throttling answers 400).
const RETRYABLE_CODES: [&str; 8] = [
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalFailure",
    "ServiceFailure",
    "ConcurrentModification",
    "RequestExpired",
];
/// The tag that marks a user suspended (disabled or left with [`LeaveMode::TagSuspended`]).
pub const SUSPENDED_TAG: &str = "scimhub:suspended";
/// The tag that carries the owner's mark `scimhub:<owner_id>`.
pub const OWNER_TAG: &str = "managed-by";
/// Users the connector never adopts, modifies, disables or deletes (`protected_accounts` adds
/// to them).
pub const DEFAULT_PROTECTED: &[&str] = &["root"];
/// Tags this connector derives from SCIM attributes (and so may remove when the attribute goes).
const MANAGED_TAGS: [&str; 3] = ["DisplayName", "Email", "ExternalId"];

/// What leaving does after credentials and access are removed (`leave_mode` in the policy:
/// `delete` or `tag_suspended`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveMode {
    /// `DeleteUser`.
    #[default]
    Delete,
    /// Keep the (now powerless) user, tagged [`SUSPENDED_TAG`].
    TagSuspended,
}

/// Settings of one IAM connector instance: the policy's `settings` table for `type = "aws_iam"`
/// (the keys are passed separately, see [`AwsIamConfig::from_settings`]). Every setting has a
/// default ([`AwsIamSettings::default`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsIamSettings {
    pub endpoint: String,
    /// Signing region; IAM is global and signs as `us-east-1`.
    pub region: String,
    /// Path of created users and prefix for listing, e.g. `/scimhub/`.
    pub path: String,
    /// Static tags on every user.
    pub tags: BTreeMap<String, String>,
    /// What `delete` does after stripping credentials and access: `delete` or `tag_suspended`.
    pub leave_mode: LeaveMode,
    pub timeout_ms: u64,
    pub page_size: u32,
    /// `never`, `unowned` (default) or `always` (see [`Adopt`]).
    pub adopt: Adopt,
    /// User names and globs never touched, added to [`DEFAULT_PROTECTED`].
    pub protected_accounts: Vec<String>,
    /// Path prefix of the users the hub manages (default: `path`).
    pub managed_path: Option<String>,
    /// This hub's id in its mark, the tag `managed-by = scimhub:<owner_id>`.
    pub owner_id: String,
}

impl Default for AwsIamSettings {
    fn default() -> Self {
        AwsIamSettings {
            endpoint: "https://iam.amazonaws.com/".into(),
            region: "us-east-1".into(),
            path: "/".into(),
            tags: BTreeMap::new(),
            leave_mode: LeaveMode::Delete,
            timeout_ms: 20_000,
            page_size: 100,
            adopt: Adopt::default(),
            protected_accounts: Vec::new(),
            managed_path: None,
            owner_id: default_owner_id(),
        }
    }
}

/// Everything one IAM connector instance needs: its settings and its keys.
#[derive(Debug, Clone)]
pub struct AwsIamConfig {
    /// Instance name from the policy, used in errors.
    pub name: String,
    /// IAM endpoint, e.g. `https://iam.amazonaws.com/` (or a local stand-in).
    pub endpoint: String,
    /// Signing region; IAM is global and signs as `us-east-1`.
    pub region: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// Path for created users and `PathPrefix` for listing, e.g. `/scimhub/`.
    pub path: String,
    /// Static tags put on every user the connector creates or updates.
    pub tags: BTreeMap<String, String>,
    pub leave_mode: LeaveMode,
    /// Bound on every HTTP call (connect + request + response).
    pub timeout: Duration,
    /// `MaxItems` for list calls.
    pub page_size: u32,
    pub adopt: Adopt,
    pub protected_accounts: Vec<String>,
    /// `None`: `path`.
    pub managed_path: Option<String>,
    pub owner_id: String,
}

impl AwsIamConfig {
    /// The default settings ([`AwsIamSettings::default`]) against `endpoint`.
    pub fn new(
        name: impl Into<String>,
        endpoint: impl Into<String>,
        access_key_id: Secret,
        secret_access_key: Secret,
    ) -> Self {
        let settings = AwsIamSettings {
            endpoint: endpoint.into(),
            ..AwsIamSettings::default()
        };
        AwsIamConfig::from_settings(name, settings, access_key_id, secret_access_key, None)
    }

    /// The instance `name` of the policy: its `settings` plus the keys loaded from its
    /// credentials.
    pub fn from_settings(
        name: impl Into<String>,
        settings: AwsIamSettings,
        access_key_id: Secret,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    ) -> Self {
        AwsIamConfig {
            name: name.into(),
            endpoint: settings.endpoint,
            region: settings.region,
            access_key_id,
            secret_access_key,
            session_token,
            path: settings.path,
            tags: settings.tags,
            leave_mode: settings.leave_mode,
            timeout: Duration::from_millis(settings.timeout_ms),
            page_size: settings.page_size,
            adopt: settings.adopt,
            protected_accounts: settings.protected_accounts,
            managed_path: settings.managed_path,
            owner_id: settings.owner_id,
        }
    }
}

/// The AWS IAM connector. See the module documentation.
pub struct AwsIamConnector {
    cfg: AwsIamConfig,
    ownership: Ownership,
    /// Path prefix of the managed users.
    managed_path: String,
    endpoint: Url,
    http: HttpClient,
}

impl fmt::Debug for AwsIamConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `cfg`'s secrets print as `***`.
        f.debug_struct("AwsIamConnector")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// One `<member>` of a list in an IAM response: child element name → text.
type Member = BTreeMap<String, String>;

/// A parsed IAM error.
#[derive(Debug)]
struct IamError {
    status: u16,
    code: String,
    err: ConnectorError,
}

impl AwsIamConnector {
    pub fn new(cfg: AwsIamConfig) -> Result<Self, ConnectorError> {
        let endpoint = Url::parse(&cfg.endpoint)
            .map_err(|_| ConnectorError::permanent(&cfg.name, "endpoint is not a valid URL"))?;
        let mut http = HttpClient::new(&cfg.name, cfg.timeout)?
            .redacting(&cfg.access_key_id)
            .redacting(&cfg.secret_access_key);
        if let Some(t) = &cfg.session_token {
            http = http.redacting(t);
        }
        Ok(AwsIamConnector {
            ownership: Ownership::new(
                &cfg.name,
                cfg.adopt,
                DEFAULT_PROTECTED,
                &cfg.protected_accounts,
                &cfg.owner_id,
            ),
            managed_path: cfg.managed_path.clone().unwrap_or_else(|| cfg.path.clone()),
            cfg,
            endpoint,
            http,
        })
    }

    /// Calls one IAM action and returns the response body. Public so that tools and tests can
    /// reach IAM actions the connector does not wrap (e.g. to seed fixtures); same signing,
    /// timeout and error classification as the connector's own calls.
    pub async fn call(
        &self,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, ConnectorError> {
        self.call_raw(action, params).await.map_err(|e| e.err)
    }

    async fn call_raw(&self, action: &str, params: &[(&str, &str)]) -> Result<String, IamError> {
        let name = &self.cfg.name;
        let body = form_body(action, params);
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";

        let identity = Credentials::new(
            self.cfg.access_key_id.expose(),
            self.cfg.secret_access_key.expose(),
            self.cfg
                .session_token
                .as_ref()
                .map(|t| t.expose().to_owned()),
            None,
            "scimhub-policy",
        )
        .into();
        let perm = |msg: String| IamError {
            status: 0,
            code: String::new(),
            err: ConnectorError::permanent(name, msg),
        };
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.cfg.region)
            .name("iam")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| perm(format!("signing parameters: {e}")))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            self.cfg.endpoint.as_str(),
            [("content-type", content_type)].into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| perm(format!("signing {action}: {e}")))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| perm(format!("signing {action}: {e}")))?
            .into_parts();

        let mut req = self
            .http
            .request(Method::POST, self.endpoint.clone())
            .header("content-type", content_type)
            .body(body);
        for (h, v) in instructions.headers() {
            req = req.header(h, v);
        }
        let resp = self.http.send(req).await.map_err(|e| IamError {
            status: 0,
            code: String::new(),
            // name the action: every IAM call is `POST /`
            err: ConnectorError {
                message: format!("{action}: {}", e.message),
                ..e
            },
        })?;
        let status = resp.status.as_u16();
        if resp.is_success() {
            return Ok(String::from_utf8_lossy(&resp.body).into_owned());
        }
        let (code, message) = parse_error(&String::from_utf8_lossy(&resp.body));
        let kind = if RETRYABLE_CODES.contains(&code.as_str()) {
            ErrorKind::Retryable
        } else {
            http::classify(resp.status, &resp.headers)
        };
        let text = self.http.scrub(format!(
            "{action}: HTTP {status} {}{}",
            if code.is_empty() {
                "(no error code)"
            } else {
                &code
            },
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        ));
        let text: String = text.chars().take(300).collect();
        let err = self.http.response_error(&resp, kind, text);
        Err(IamError { status, code, err })
    }

    /// Calls a removing action; `NoSuchEntity` (already gone) is success.
    async fn remove(&self, action: &str, params: &[(&str, &str)]) -> Result<(), ConnectorError> {
        match self.call_raw(action, params).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == "NoSuchEntity" || e.status == 404 => Ok(()),
            Err(e) => Err(e.err),
        }
    }

    /// Runs a paginated list action (`Marker`/`IsTruncated`) and returns every `<member>` of
    /// `container`.
    async fn list_all(
        &self,
        action: &str,
        params: &[(&str, &str)],
        container: &str,
    ) -> Result<Vec<Member>, IamError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        let max = self.cfg.page_size.to_string();
        for _ in 0..10_000 {
            let mut p: Vec<(&str, &str)> = params.to_vec();
            p.push(("MaxItems", &max));
            if let Some(m) = &marker {
                p.push(("Marker", m));
            }
            let text = self.call_raw(action, &p).await?;
            let page = parse_list(&text, container).map_err(|m| IamError {
                status: 200,
                code: String::new(),
                err: ConnectorError::permanent(&self.cfg.name, format!("{action}: {m}")),
            })?;
            out.extend(page.members);
            match page.next_marker {
                Some(m) if page.truncated => marker = Some(m),
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    /// Lists a user's items; a missing user lists as nothing.
    async fn list_user_items(
        &self,
        action: &str,
        user: &str,
        container: &str,
    ) -> Result<Vec<Member>, ConnectorError> {
        match self
            .list_all(action, &[("UserName", user)], container)
            .await
        {
            Ok(v) => Ok(v),
            Err(e) if e.code == "NoSuchEntity" => Ok(Vec::new()),
            Err(e) => Err(e.err),
        }
    }

    fn desired_tags(&self, spec: &AccountSpec) -> BTreeMap<String, String> {
        let mut tags = self.cfg.tags.clone();
        let a = &spec.attributes;
        if let Some(v) = a.get("displayName").and_then(Value::as_str) {
            tags.insert("DisplayName".into(), tag_value(v));
        }
        if let Some(v) = primary_email(a) {
            tags.insert("Email".into(), tag_value(v));
        }
        if let Some(v) = a.get("externalId").and_then(Value::as_str) {
            tags.insert("ExternalId".into(), tag_value(v));
        }
        tags.insert(OWNER_TAG.into(), self.ownership.mark.clone());
        tags
    }

    fn in_scope(&self, info: &UserInfo) -> bool {
        info.path.starts_with(&self.managed_path)
    }

    fn mark_of(&self, info: &UserInfo) -> Mark {
        self.ownership
            .mark_of(info.tags.get(OWNER_TAG).map(String::as_str))
    }

    /// The existing user behind `account` after the checks for modifying it (protected, scope,
    /// owner); `None` when it does not exist.
    async fn managed_user(&self, account: &AccountRef) -> Result<Option<UserInfo>, ConnectorError> {
        let user = account.key.as_str();
        self.ownership.check_not_protected("IAM user", user)?;
        let Some(info) = self.get_user(user).await? else {
            return Ok(None);
        };
        self.ownership
            .may_manage(user, self.in_scope(&info), &self.mark_of(&info))?;
        Ok(Some(info))
    }

    async fn get_user(&self, user: &str) -> Result<Option<UserInfo>, ConnectorError> {
        match self.call_raw("GetUser", &[("UserName", user)]).await {
            Ok(text) => parse_user(&text)
                .map(Some)
                .map_err(|m| ConnectorError::permanent(&self.cfg.name, format!("GetUser: {m}"))),
            Err(e) if e.code == "NoSuchEntity" => Ok(None),
            Err(e) => Err(e.err),
        }
    }

    /// `TagUser`; `NoSuchEntity` is returned as the raw error so callers can decide.
    async fn tag_user(&self, user: &str, tags: &BTreeMap<String, String>) -> Result<(), IamError> {
        if tags.is_empty() {
            return Ok(());
        }
        let owned = tag_params(user, tags);
        let p: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.call_raw("TagUser", &p).await.map(|_| ())
    }

    async fn untag_user(&self, user: &str, keys: &[&str]) -> Result<(), ConnectorError> {
        if keys.is_empty() {
            return Ok(());
        }
        let owned: Vec<(String, &str)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (format!("TagKeys.member.{}", i + 1), *k))
            .collect();
        let mut p: Vec<(&str, &str)> = vec![("UserName", user)];
        p.extend(owned.iter().map(|(k, v)| (k.as_str(), *v)));
        self.remove("UntagUser", &p).await
    }

    /// Brings an existing user's path and tags to `spec`.
    async fn converge(&self, info: &UserInfo, spec: &AccountSpec) -> Result<(), ConnectorError> {
        let user = &info.user_name;
        if info.path != self.cfg.path {
            self.call(
                "UpdateUser",
                &[("UserName", user), ("NewPath", &self.cfg.path)],
            )
            .await?;
        }
        let want = self.desired_tags(spec);
        let changed: BTreeMap<String, String> = want
            .iter()
            .filter(|(k, v)| info.tags.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.tag_user(user, &changed).await.map_err(|e| e.err)?;
        let stale: Vec<&str> = MANAGED_TAGS
            .iter()
            .copied()
            .filter(|k| info.tags.contains_key(*k) && !want.contains_key(*k))
            .collect();
        self.untag_user(user, &stale).await
    }

    /// Deactivates then deletes access keys; deletes the login profile, SSH public keys,
    /// service-specific credentials, signing certificates and MFA devices.
    async fn strip_credentials(&self, user: &str) -> Result<(), ConnectorError> {
        let keys = self
            .list_user_items("ListAccessKeys", user, "AccessKeyMetadata")
            .await?;
        for k in &keys {
            if let Some(id) = k.get("AccessKeyId") {
                if k.get("Status").map(String::as_str) != Some("Inactive") {
                    self.remove(
                        "UpdateAccessKey",
                        &[
                            ("UserName", user),
                            ("AccessKeyId", id),
                            ("Status", "Inactive"),
                        ],
                    )
                    .await?;
                }
            }
        }
        for k in &keys {
            if let Some(id) = k.get("AccessKeyId") {
                self.remove(
                    "DeleteAccessKey",
                    &[("UserName", user), ("AccessKeyId", id)],
                )
                .await?;
            }
        }
        self.remove("DeleteLoginProfile", &[("UserName", user)])
            .await?;
        for k in self
            .list_user_items("ListSSHPublicKeys", user, "SSHPublicKeys")
            .await?
        {
            if let Some(id) = k.get("SSHPublicKeyId") {
                self.remove(
                    "DeleteSSHPublicKey",
                    &[("UserName", user), ("SSHPublicKeyId", id)],
                )
                .await?;
            }
        }
        for c in self
            .list_user_items(
                "ListServiceSpecificCredentials",
                user,
                "ServiceSpecificCredentials",
            )
            .await?
        {
            if let Some(id) = c.get("ServiceSpecificCredentialId") {
                self.remove(
                    "DeleteServiceSpecificCredential",
                    &[("UserName", user), ("ServiceSpecificCredentialId", id)],
                )
                .await?;
            }
        }
        for c in self
            .list_user_items("ListSigningCertificates", user, "Certificates")
            .await?
        {
            if let Some(id) = c.get("CertificateId") {
                self.remove(
                    "DeleteSigningCertificate",
                    &[("UserName", user), ("CertificateId", id)],
                )
                .await?;
            }
        }
        for d in self
            .list_user_items("ListMFADevices", user, "MFADevices")
            .await?
        {
            if let Some(serial) = d.get("SerialNumber") {
                self.remove(
                    "DeactivateMFADevice",
                    &[("UserName", user), ("SerialNumber", serial)],
                )
                .await?;
                if serial.starts_with("arn:") && serial.contains(":mfa/") {
                    self.remove("DeleteVirtualMFADevice", &[("SerialNumber", serial)])
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Detaches managed policies, deletes inline policies, removes the user from its groups.
    async fn strip_access(&self, user: &str) -> Result<(), ConnectorError> {
        for p in self
            .list_user_items("ListAttachedUserPolicies", user, "AttachedPolicies")
            .await?
        {
            if let Some(arn) = p.get("PolicyArn") {
                self.remove(
                    "DetachUserPolicy",
                    &[("UserName", user), ("PolicyArn", arn)],
                )
                .await?;
            }
        }
        for p in self
            .list_user_items("ListUserPolicies", user, "PolicyNames")
            .await?
        {
            if let Some(name) = p.get("") {
                self.remove(
                    "DeleteUserPolicy",
                    &[("UserName", user), ("PolicyName", name)],
                )
                .await?;
            }
        }
        for g in self
            .list_user_items("ListGroupsForUser", user, "Groups")
            .await?
        {
            if let Some(name) = g.get("GroupName") {
                self.remove(
                    "RemoveUserFromGroup",
                    &[("UserName", user), ("GroupName", name)],
                )
                .await?;
            }
        }
        Ok(())
    }

    fn check_kind(&self, e: &Entitlement) -> Result<(), ConnectorError> {
        match e.kind.as_str() {
            "group" | "policy" => Ok(()),
            other => Err(ConnectorError::permanent(
                &self.cfg.name,
                format!("unknown entitlement kind {other:?} (IAM knows group, policy)"),
            )),
        }
    }

    fn state_from(&self, info: &UserInfo, entitlements: Vec<Entitlement>) -> AccountState {
        let mut attributes = Map::new();
        attributes.insert("userName".into(), json!(info.user_name));
        if let Some(v) = info.tags.get("DisplayName") {
            attributes.insert("displayName".into(), json!(v));
        }
        if let Some(v) = info.tags.get("Email") {
            attributes.insert("emails".into(), json!([{ "value": v, "primary": true }]));
        }
        if let Some(v) = info.tags.get("ExternalId") {
            attributes.insert("externalId".into(), json!(v));
        }
        attributes.insert("arn".into(), json!(info.arn));
        attributes.insert("userId".into(), json!(info.user_id));
        attributes.insert("path".into(), json!(info.path));
        attributes.insert("tags".into(), json!(info.tags));
        AccountState {
            account: AccountRef::new(info.user_name.clone()).with_id(info.arn.clone()),
            enabled: !info.tags.contains_key(SUSPENDED_TAG),
            attributes,
            entitlements,
        }
    }
}

#[async_trait]
impl Connector for AwsIamConnector {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn excluded(&self, account: &AccountState) -> Option<String> {
        let in_scope = account
            .attributes
            .get("path")
            .and_then(Value::as_str)
            .is_none_or(|p| p.starts_with(&self.managed_path));
        self.ownership.excluded(&account.account.key, in_scope)
    }

    fn lists_entitlements(&self) -> bool {
        false
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
                Capability::RevokeCredentials,
                Capability::ReadAccount,
                Capability::ListAccounts,
            ],
            entitlement_kinds: vec!["group".into(), "policy".into()],
        }
    }

    async fn create_or_adopt(&self, spec: &AccountSpec) -> Result<AccountRef, ConnectorError> {
        let user = spec.account.key.as_str();
        self.ownership.check_not_protected("IAM user", user)?;
        let owned = tag_params(user, &self.desired_tags(spec));
        let mut p: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        p.push(("Path", &self.cfg.path));
        match self.call_raw("CreateUser", &p).await {
            Ok(text) => {
                let info = parse_user(&text).map_err(|m| {
                    ConnectorError::permanent(&self.cfg.name, format!("CreateUser: {m}"))
                })?;
                Ok(AccountRef::new(user).with_id(info.arn))
            }
            Err(e) if e.code == "EntityAlreadyExists" => {
                let info = self.get_user(user).await?.ok_or_else(|| {
                    ConnectorError::retryable(&self.cfg.name, "user vanished while adopting it")
                })?;
                self.ownership
                    .may_adopt(user, self.in_scope(&info), &self.mark_of(&info))?;
                // converge writes the mark with the other tags
                self.converge(&info, spec).await?;
                // the hub records an adopted account as enabled
                if info.tags.contains_key(SUSPENDED_TAG) {
                    self.untag_user(user, &[SUSPENDED_TAG]).await?;
                }
                let arn = if info.path == self.cfg.path {
                    info.arn
                } else {
                    // moved: the ARN names the path
                    self.get_user(user).await?.map_or(info.arn, |i| i.arn)
                };
                Ok(AccountRef::new(user).with_id(arn))
            }
            Err(e) => Err(e.err),
        }
    }

    async fn update(&self, spec: &AccountSpec) -> Result<(), ConnectorError> {
        let info = self.managed_user(&spec.account).await?.ok_or_else(|| {
            ConnectorError::permanent(&self.cfg.name, format!("no IAM user {}", spec.account.key))
        })?;
        self.converge(&info, spec).await
    }

    async fn set_enabled(&self, account: &AccountRef, enabled: bool) -> Result<(), ConnectorError> {
        let user = account.key.as_str();
        self.managed_user(account).await?;
        if enabled {
            return self.untag_user(user, &[SUSPENDED_TAG]).await;
        }
        self.strip_credentials(user).await?;
        match self.tag_user(user, &suspended_tag()).await {
            Err(e) if e.code == "NoSuchEntity" => Err(ConnectorError::permanent(
                &self.cfg.name,
                format!("no IAM user {user}"),
            )),
            other => other.map_err(|e| e.err),
        }
    }

    async fn delete(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        let user = account.key.as_str();
        if self.managed_user(account).await?.is_none() {
            return Ok(());
        }
        self.strip_credentials(user).await?;
        self.strip_access(user).await?;
        match self.cfg.leave_mode {
            LeaveMode::Delete => self.remove("DeleteUser", &[("UserName", user)]).await,
            LeaveMode::TagSuspended => match self.tag_user(user, &suspended_tag()).await {
                Err(e) if e.code == "NoSuchEntity" => Ok(()),
                other => other.map_err(|e| e.err),
            },
        }
    }

    async fn grant(&self, account: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        self.check_kind(e)?;
        self.managed_user(account).await?;
        let user = account.key.as_str();
        if e.kind == "group" {
            self.call(
                "AddUserToGroup",
                &[("UserName", user), ("GroupName", &e.id)],
            )
            .await
            .map(|_| ())
        } else {
            self.call(
                "AttachUserPolicy",
                &[("UserName", user), ("PolicyArn", &e.id)],
            )
            .await
            .map(|_| ())
        }
    }

    async fn revoke(&self, account: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        self.check_kind(e)?;
        if self.managed_user(account).await?.is_none() {
            return Ok(());
        }
        let user = account.key.as_str();
        if e.kind == "group" {
            self.remove(
                "RemoveUserFromGroup",
                &[("UserName", user), ("GroupName", &e.id)],
            )
            .await
        } else {
            self.remove(
                "DetachUserPolicy",
                &[("UserName", user), ("PolicyArn", &e.id)],
            )
            .await
        }
    }

    async fn revoke_credentials(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.managed_user(account).await?;
        self.strip_credentials(&account.key).await
    }

    async fn read(&self, account: &AccountRef) -> Result<Option<AccountState>, ConnectorError> {
        let user = account.key.as_str();
        let Some(info) = self.get_user(user).await? else {
            return Ok(None);
        };
        let mut ents = Vec::new();
        for g in self
            .list_user_items("ListGroupsForUser", user, "Groups")
            .await?
        {
            if let Some(n) = g.get("GroupName") {
                ents.push(Entitlement::new("group", n.clone()));
            }
        }
        for p in self
            .list_user_items("ListAttachedUserPolicies", user, "AttachedPolicies")
            .await?
        {
            if let Some(arn) = p.get("PolicyArn") {
                ents.push(Entitlement::new("policy", arn.clone()));
            }
        }
        let keys = self
            .list_user_items("ListAccessKeys", user, "AccessKeyMetadata")
            .await?;
        let mut state = self.state_from(&info, ents);
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| {
                json!({
                    "id": k.get("AccessKeyId"),
                    "status": k.get("Status"),
                })
            })
            .collect();
        state
            .attributes
            .insert("accessKeys".into(), Value::Array(keys));
        Ok(Some(state))
    }

    /// One `ListUsers` page under the configured path. `enabled` and tags are not part of
    /// `ListUsers`; use [`Connector::read`] for the full state of one account.
    async fn list_accounts(&self, page: Option<&str>) -> Result<AccountPage, ConnectorError> {
        let max = self.cfg.page_size.to_string();
        let mut p: Vec<(&str, &str)> = vec![("PathPrefix", &self.cfg.path), ("MaxItems", &max)];
        if let Some(m) = page {
            p.push(("Marker", m));
        }
        let text = self.call("ListUsers", &p).await?;
        let parsed = parse_list(&text, "Users")
            .map_err(|m| ConnectorError::permanent(&self.cfg.name, format!("ListUsers: {m}")))?;
        let accounts = parsed
            .members
            .iter()
            .filter_map(|m| {
                let info = UserInfo {
                    user_name: m.get("UserName")?.clone(),
                    arn: m.get("Arn").cloned().unwrap_or_default(),
                    user_id: m.get("UserId").cloned().unwrap_or_default(),
                    path: m.get("Path").cloned().unwrap_or_default(),
                    tags: BTreeMap::new(),
                };
                let mut s = self.state_from(&info, Vec::new());
                s.attributes.remove("tags");
                Some(s)
            })
            .collect();
        Ok(AccountPage {
            accounts,
            next: if parsed.truncated {
                parsed.next_marker
            } else {
                None
            },
        })
    }
}

/// The form body, encoded strictly (only `A-Za-z0-9-_.~` left as is, space as `+`): the body's
/// hash is signed, and this is the encoding that IAM and stand-ins which re-encode the parsed
/// form (moto does, like Python's `urlencode`) agree on byte for byte.
fn form_body(action: &str, params: &[(&str, &str)]) -> String {
    fn enc(out: &mut String, s: &str) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    let all = [("Action", action), ("Version", API_VERSION)];
    for (i, (k, v)) in all.iter().chain(params.iter()).enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(&mut out, k);
        out.push('=');
        enc(&mut out, v);
    }
    out
}

fn suspended_tag() -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    t.insert(
        SUSPENDED_TAG.to_owned(),
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    t
}

fn tag_params(user: &str, tags: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut p = vec![("UserName".to_owned(), user.to_owned())];
    for (i, (k, v)) in tags.iter().enumerate() {
        p.push((format!("Tags.member.{}.Key", i + 1), k.clone()));
        p.push((format!("Tags.member.{}.Value", i + 1), v.clone()));
    }
    p
}

/// IAM tag values: at most 256 characters of `[\p{L}\p{Z}\p{N}_.:/=+\-@]`.
fn tag_value(v: &str) -> String {
    v.chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(*c))
        .take(256)
        .collect()
}

#[derive(Debug)]
struct UserInfo {
    user_name: String,
    arn: String,
    user_id: String,
    path: String,
    tags: BTreeMap<String, String>,
}

struct ListPage {
    members: Vec<Member>,
    truncated: bool,
    next_marker: Option<String>,
}

fn local<'a>(n: &roxmltree::Node<'a, 'a>) -> &'a str {
    n.tag_name().name()
}

/// `(Code, Message)` from `<ErrorResponse><Error><Code>…` (or moto's `<Response><Errors>…`).
fn parse_error(text: &str) -> (String, String) {
    let Ok(doc) = roxmltree::Document::parse(text) else {
        return (String::new(), String::new());
    };
    let Some(err) = doc
        .descendants()
        .find(|n| n.is_element() && local(n) == "Error")
    else {
        return (String::new(), String::new());
    };
    let child = |name: &str| {
        err.children()
            .find(|c| c.is_element() && local(c) == name)
            .and_then(|c| c.text())
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    (child("Code"), child("Message"))
}

fn parse_list(text: &str, container: &str) -> Result<ListPage, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("invalid XML: {e}"))?;
    let mut members = Vec::new();
    if let Some(c) = doc
        .descendants()
        .find(|n| n.is_element() && local(n) == container)
    {
        for m in c
            .children()
            .filter(|n| n.is_element() && local(n) == "member")
        {
            let mut map = Member::new();
            let mut has_children = false;
            for f in m.children().filter(roxmltree::Node::is_element) {
                has_children = true;
                map.insert(
                    local(&f).to_owned(),
                    f.text().unwrap_or_default().trim().to_owned(),
                );
            }
            if !has_children {
                map.insert(
                    String::new(),
                    m.text().unwrap_or_default().trim().to_owned(),
                );
            }
            members.push(map);
        }
    }
    let field = |name: &str| {
        doc.descendants()
            .find(|n| n.is_element() && local(n) == name)
            .and_then(|n| n.text())
            .map(|t| t.trim().to_owned())
    };
    Ok(ListPage {
        members,
        truncated: field("IsTruncated").as_deref() == Some("true"),
        next_marker: field("Marker").filter(|m| !m.is_empty()),
    })
}

fn parse_user(text: &str) -> Result<UserInfo, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("invalid XML: {e}"))?;
    let user = doc
        .descendants()
        .find(|n| n.is_element() && local(n) == "User")
        .ok_or("no <User> in the response")?;
    let child = |name: &str| {
        user.children()
            .find(|c| c.is_element() && local(c) == name)
            .and_then(|c| c.text())
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let mut tags = BTreeMap::new();
    if let Some(t) = user
        .children()
        .find(|c| c.is_element() && local(c) == "Tags")
    {
        for m in t
            .children()
            .filter(|n| n.is_element() && local(n) == "member")
        {
            let get = |name: &str| {
                m.children()
                    .find(|c| c.is_element() && local(c) == name)
                    .and_then(|c| c.text())
                    .unwrap_or_default()
                    .to_owned()
            };
            tags.insert(get("Key"), get("Value"));
        }
    }
    let info = UserInfo {
        user_name: child("UserName"),
        arn: child("Arn"),
        user_id: child("UserId"),
        path: child("Path"),
        tags,
    };
    if info.user_name.is_empty() {
        return Err("<User> without <UserName>".into());
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_errors_lists_and_users() {
        let e = r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The user with name x cannot be found.</Message></Error><RequestId>1</RequestId></ErrorResponse>"#;
        assert_eq!(parse_error(e).0, "NoSuchEntity");
        let l = r#"<ListGroupsForUserResponse><ListGroupsForUserResult><Groups><member><GroupName>eng</GroupName><Arn>a</Arn></member></Groups><IsTruncated>true</IsTruncated><Marker>m2</Marker></ListGroupsForUserResult></ListGroupsForUserResponse>"#;
        let p = parse_list(l, "Groups").expect("list");
        assert_eq!(p.members[0]["GroupName"], "eng");
        assert!(p.truncated);
        assert_eq!(p.next_marker.as_deref(), Some("m2"));
        let n = r#"<R><ListUserPoliciesResult><PolicyNames><member>inline1</member></PolicyNames><IsTruncated>false</IsTruncated></ListUserPoliciesResult></R>"#;
        assert_eq!(
            parse_list(n, "PolicyNames").expect("names").members[0][""],
            "inline1"
        );
        let u = r#"<GetUserResponse><GetUserResult><User><Path>/s/</Path><UserName>bob</UserName><UserId>AID</UserId><Arn>arn:aws:iam::1:user/s/bob</Arn><Tags><member><Key>Email</Key><Value>b@x</Value></member></Tags></User></GetUserResult></GetUserResponse>"#;
        let info = parse_user(u).expect("user");
        assert_eq!(info.tags["Email"], "b@x");
        assert_eq!(info.path, "/s/");
    }

    #[test]
    fn retry_after_and_tag_values() {
        assert_eq!(http::parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            http::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(tag_value("Jane <Doe>!"), "Jane Doe");
        assert_eq!(
            form_body("PutUserPolicy", &[("PolicyDocument", "{\"A\": \"s3:*\"} ~")]),
            "Action=PutUserPolicy&Version=2010-05-08&PolicyDocument=%7B%22A%22%3A+%22s3%3A%2A%22%7D+~"
        );
    }

    #[test]
    fn settings_default_to_the_config_defaults_and_reject_unknown_keys() {
        let s: AwsIamSettings = serde_json::from_value(json!({})).expect("all defaults");
        assert_eq!(s, AwsIamSettings::default());
        let c = AwsIamConfig::new("n", s.endpoint.clone(), Secret::new("k"), Secret::new("s"));
        assert_eq!(
            (c.region.as_str(), c.path.as_str(), c.timeout, c.page_size),
            ("us-east-1", "/", Duration::from_secs(20), 100)
        );
        let s: AwsIamSettings =
            serde_json::from_value(json!({"leave_mode": "tag_suspended", "path": "/s/"}))
                .expect("settings");
        assert_eq!(
            (s.leave_mode, s.path.as_str()),
            (LeaveMode::TagSuspended, "/s/")
        );
        let err = serde_json::from_value::<AwsIamSettings>(json!({"regoin": "x"}))
            .expect_err("unknown key");
        assert!(
            err.to_string().starts_with("unknown field `regoin`"),
            "{err}"
        );
    }
}
