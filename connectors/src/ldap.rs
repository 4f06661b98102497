//! LDAP directories: generic LDAP (inetOrgPerson / groupOfNames, e.g. OpenLDAP) and Active
//! Directory, over `ldap3` on rustls.
//!
//! - Transport: LDAPS or StartTLS with certificate verification against a configured CA (PEM
//!   file); plain `ldap://` only when [`LdapTls::PlainInsecure`] is configured explicitly, and
//!   then no password is ever sent in an entry (AD's `unicodePwd` needs an encrypted connection).
//!   One authenticated connection is kept and re-established after a failure; every operation is
//!   bounded by the configured timeout.
//! - Accounts are found by their key (`uid` / `sAMAccountName`) under the search base, so moves
//!   between OUs never lose them; [`AccountRef::id`] is the entry's current DN.
//! - Entitlement kind `group`: a group's `cn` (searched under the groups DN) or its full DN.
//!   Generic groups are `groupOfNames`, which must keep at least one `member`: removing the last
//!   real member puts the configured placeholder member in (one atomic modify), and adding a
//!   real member takes the placeholder out.
//! - Generic disable: move to a disabled OU, or lock with ppolicy's `pwdAccountLockedTime`;
//!   optionally also remove from all groups. Delete removes group memberships, then the entry.
//! - AD: create in an OU with `sAMAccountName`, `userPrincipalName`, `unicodePwd` (over TLS
//!   only; a random password when none is given, or created disabled without password on a plain
//!   connection), enable/disable through `userAccountControl` (512/514 bit `ACCOUNTDISABLE`),
//!   membership through the group's `member`, read back through the user's `memberOf`; on leave
//!   either delete or disable + remove from groups + move to the leavers OU.
//! - Result codes busy (51), unavailable (52) and time limit (3), timeouts and connection loss
//!   are retryable; invalid credentials (49), insufficient access (50) and the rest permanent.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ldap3::controls::{ControlType, PagedResults};
use ldap3::{
    dn_escape, ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope,
    SearchEntry,
};
use scim_schema::json::primary_email;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use crate::connector::{Capabilities, Capability, Connector};
use crate::dn::{self, Dn};
use crate::error::ConnectorError;
use crate::model::{AccountPage, AccountRef, AccountSpec, AccountState, Entitlement};
use crate::ownership::{default_owner_id, Adopt, Mark, Ownership};
use crate::secret::Secret;

/// How the connection is protected (`tls` in the policy: `ldaps`, `starttls` or
/// `plain_insecure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LdapTls {
    /// `ldaps://`, verified against `ca_file`.
    Ldaps,
    /// `ldap://` upgraded with StartTLS, verified against `ca_file`.
    #[serde(rename = "starttls")]
    StartTls,
    /// Plain `ldap://`: only when the policy says so explicitly. Passwords are never sent.
    PlainInsecure,
}

/// How a generic LDAP account is disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisableMethod {
    /// Move the entry under this OU (and back to the users DN on enable).
    MoveToOu(String),
    /// Set ppolicy's `pwdAccountLockedTime: 000001010000Z` (locked until an admin unlocks; needs
    /// the ppolicy overlay with a default policy); enable removes it.
    PpolicyLock,
}

/// Generic LDAP specifics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericLdap {
    pub disable: DisableMethod,
    /// Also remove the account from every group when disabling.
    pub disable_removes_groups: bool,
    /// The `member` value that keeps a `groupOfNames` valid once its last real member is gone.
    pub placeholder_member: String,
}

/// What leaving does in AD (`leave` in the policy: `delete` or `disable_and_move`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdLeave {
    /// Delete the account object.
    Delete,
    /// Disable, remove from groups, move to the leavers OU.
    #[default]
    DisableAndMove,
}

/// Active Directory specifics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveDirectory {
    /// `userPrincipalName` suffix, e.g. `example.com`.
    pub upn_suffix: String,
    /// OU for leavers, e.g. `OU=Leavers,DC=example,DC=com`.
    pub leavers_ou: String,
    pub leave: AdLeave,
}

/// Accounts and groups the connector never adopts, modifies, disables or deletes, whatever the
/// policy says (`protected_accounts` adds to them): AD's built-in accounts and privileged
/// groups, and the usual Unix/LDAP administrators.
pub const DEFAULT_PROTECTED: &[&str] = &[
    "Administrator",
    "krbtgt",
    "Guest",
    "DefaultAccount",
    "WDAGUtilityAccount",
    "root",
    "admin",
    "Administrators",
    "Domain Admins",
    "Enterprise Admins",
    "Schema Admins",
    "Domain Controllers",
    "Read-only Domain Controllers",
    "Enterprise Read-only Domain Controllers",
    "Account Operators",
    "Backup Operators",
    "Server Operators",
    "Print Operators",
    "Group Policy Creator Owners",
    "Key Admins",
    "Enterprise Key Admins",
    "DnsAdmins",
    "Cert Publishers",
];

/// Which accounts the connector may take over and touch (see [`crate::ownership`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapOwnership {
    pub adopt: Adopt,
    /// Added to [`DEFAULT_PROTECTED`]; names or `*`/`?` globs, case-insensitive.
    pub protected_accounts: Vec<String>,
    /// OUs (subtrees) whose accounts the hub manages; empty: `users_dn` plus the disabled OU
    /// (generic `move_to_ou`) or the leavers OU (AD).
    pub managed_ous: Vec<String>,
    /// The attribute that carries the owner's mark `scimhub:<owner_id>`; any other value in it
    /// counts as another owner's mark.
    pub owner_attribute: String,
    pub owner_id: String,
}

impl Default for LdapOwnership {
    fn default() -> Self {
        LdapOwnership {
            adopt: Adopt::default(),
            protected_accounts: Vec::new(),
            managed_ous: Vec::new(),
            owner_attribute: default_owner_attribute(),
            owner_id: default_owner_id(),
        }
    }
}

fn default_owner_attribute() -> String {
    "description".into()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LdapFlavor {
    Generic(GenericLdap),
    ActiveDirectory(ActiveDirectory),
}

/// Settings for one LDAP/AD connector instance.
#[derive(Debug, Clone)]
pub struct LdapConfig {
    pub name: String,
    /// `ldaps://host:636` or `ldap://host:389`.
    pub url: String,
    pub tls: LdapTls,
    /// PEM file with the CA(s) that sign the server's certificate (required for TLS).
    pub ca_file: Option<PathBuf>,
    pub bind_dn: String,
    pub bind_password: Secret,
    /// Where accounts are searched (must cover the users, disabled and leavers OUs).
    pub search_base: String,
    /// Where new accounts are created.
    pub users_dn: String,
    /// Where groups named by `cn` are searched.
    pub groups_dn: String,
    pub timeout: Duration,
    pub page_size: i32,
    pub flavor: LdapFlavor,
    pub ownership: LdapOwnership,
}

fn default_timeout_ms() -> u64 {
    10_000
}
fn default_page_size() -> i32 {
    500
}

/// How a generic LDAP account is disabled, as the policy writes it (`disable`); the OU of
/// `move_to_ou` is the separate `disabled_ou` setting (see [`DisableMethod`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LdapDisable {
    /// Move the entry under `disabled_ou`.
    MoveToOu,
    /// ppolicy `pwdAccountLockedTime`.
    PpolicyLock,
}

/// Settings of one generic LDAP connector instance (inetOrgPerson / groupOfNames): the policy's
/// `settings` table for `type = "ldap"` (the bind password is passed separately, see
/// [`LdapConfig::generic`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSettings {
    pub url: String,
    pub tls: LdapTls,
    pub ca_file: Option<PathBuf>,
    pub bind_dn: String,
    pub search_base: String,
    pub users_dn: String,
    pub groups_dn: String,
    pub disable: LdapDisable,
    /// Required with `disable = "move_to_ou"`.
    pub disabled_ou: Option<String>,
    #[serde(default)]
    pub disable_removes_groups: bool,
    /// The `member` that keeps an emptied groupOfNames valid (default: `bind_dn`).
    pub placeholder_member: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_page_size")]
    pub page_size: i32,
    /// `never`, `unowned` (default) or `always` (see [`Adopt`]).
    #[serde(default)]
    pub adopt: Adopt,
    /// Names and globs never touched, added to [`DEFAULT_PROTECTED`].
    #[serde(default)]
    pub protected_accounts: Vec<String>,
    /// Subtrees the hub manages (default: see [`LdapOwnership::managed_ous`]).
    #[serde(default)]
    pub managed_ous: Vec<String>,
    /// Attribute of the owner's mark (default `description`).
    #[serde(default = "default_owner_attribute")]
    pub owner_attribute: String,
    /// This hub's id in its mark `scimhub:<owner_id>` (default `default`).
    #[serde(default = "default_owner_id")]
    pub owner_id: String,
}

/// Settings of one Active Directory connector instance: the policy's `settings` table for
/// `type = "ad"` (the bind password is passed separately, see [`LdapConfig::active_directory`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdSettings {
    pub url: String,
    pub tls: LdapTls,
    pub ca_file: Option<PathBuf>,
    pub bind_dn: String,
    pub search_base: String,
    pub users_dn: String,
    pub groups_dn: String,
    pub upn_suffix: String,
    pub leavers_ou: String,
    #[serde(default)]
    pub leave: AdLeave,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_page_size")]
    pub page_size: i32,
    /// `never`, `unowned` (default) or `always` (see [`Adopt`]).
    #[serde(default)]
    pub adopt: Adopt,
    /// Names and globs never touched, added to [`DEFAULT_PROTECTED`].
    #[serde(default)]
    pub protected_accounts: Vec<String>,
    /// Subtrees the hub manages (default: see [`LdapOwnership::managed_ous`]).
    #[serde(default)]
    pub managed_ous: Vec<String>,
    /// Attribute of the owner's mark (default `description`).
    #[serde(default = "default_owner_attribute")]
    pub owner_attribute: String,
    /// This hub's id in its mark `scimhub:<owner_id>` (default `default`).
    #[serde(default = "default_owner_id")]
    pub owner_id: String,
}

/// An [`LdapConfig`] from either settings type: both spell the connection settings the same way.
macro_rules! ldap_config {
    ($name:expr, $s:ident, $bind_password:expr, $flavor:expr) => {
        LdapConfig {
            name: $name.into(),
            url: $s.url,
            tls: $s.tls,
            ca_file: $s.ca_file,
            bind_dn: $s.bind_dn,
            bind_password: $bind_password,
            search_base: $s.search_base,
            users_dn: $s.users_dn,
            groups_dn: $s.groups_dn,
            timeout: Duration::from_millis($s.timeout_ms),
            page_size: $s.page_size,
            flavor: $flavor,
            ownership: LdapOwnership {
                adopt: $s.adopt,
                protected_accounts: $s.protected_accounts,
                managed_ous: $s.managed_ous,
                owner_attribute: $s.owner_attribute,
                owner_id: $s.owner_id,
            },
        }
    };
}

impl LdapConfig {
    /// The generic LDAP instance `name` of the policy: its `settings` plus the bind password
    /// loaded from its credentials.
    pub fn generic(name: impl Into<String>, s: LdapSettings, bind_password: Secret) -> Self {
        let disable = match s.disable {
            LdapDisable::MoveToOu => DisableMethod::MoveToOu(s.disabled_ou.unwrap_or_default()),
            LdapDisable::PpolicyLock => DisableMethod::PpolicyLock,
        };
        let flavor = LdapFlavor::Generic(GenericLdap {
            disable,
            disable_removes_groups: s.disable_removes_groups,
            placeholder_member: s.placeholder_member.unwrap_or_else(|| s.bind_dn.clone()),
        });
        ldap_config!(name, s, bind_password, flavor)
    }

    /// The Active Directory instance `name` of the policy: its `settings` plus the bind password
    /// loaded from its credentials.
    pub fn active_directory(name: impl Into<String>, s: AdSettings, bind_password: Secret) -> Self {
        let flavor = LdapFlavor::ActiveDirectory(ActiveDirectory {
            upn_suffix: s.upn_suffix,
            leavers_ou: s.leavers_ou,
            leave: s.leave,
        });
        ldap_config!(name, s, bind_password, flavor)
    }
}

/// The LDAP / AD connector. See the module documentation.
pub struct LdapConnector {
    cfg: LdapConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Mutex<Option<Ldap>>,
    ownership: Ownership,
    /// The managed subtrees, parsed.
    scope: Vec<Dn>,
}

impl fmt::Debug for LdapConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapConnector")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

const UAC_ACCOUNTDISABLE: u32 = 0x2;
const UAC_NORMAL_ACCOUNT: u32 = 0x200;
const PPOLICY_LOCKED: &str = "000001010000Z";

/// Attributes read for an account.
const USER_ATTRS: [&str; 13] = [
    "uid",
    "cn",
    "sn",
    "givenName",
    "displayName",
    "mail",
    "employeeNumber",
    "sAMAccountName",
    "userPrincipalName",
    "userAccountControl",
    "memberOf",
    "pwdAccountLockedTime",
    "objectClass",
];

impl LdapConnector {
    pub fn new(cfg: LdapConfig) -> Result<Self, ConnectorError> {
        let name = cfg.name.clone();
        let perm = |m: String| ConnectorError::permanent(&name, m);
        let lower = cfg.url.to_ascii_lowercase();
        let tls = match cfg.tls {
            LdapTls::Ldaps if !lower.starts_with("ldaps://") => {
                return Err(perm("LDAPS needs an ldaps:// URL".into()))
            }
            LdapTls::StartTls | LdapTls::PlainInsecure if !lower.starts_with("ldap://") => {
                return Err(perm("StartTLS and plain need an ldap:// URL".into()))
            }
            LdapTls::PlainInsecure => None,
            LdapTls::Ldaps | LdapTls::StartTls => {
                let ca = cfg.ca_file.as_ref().ok_or_else(|| {
                    perm("TLS needs ca_file (the CA that signs the server certificate)".into())
                })?;
                Some(tls_config(ca).map_err(perm)?)
            }
        };
        let scope = managed_scope(&cfg).map_err(perm)?;
        let o = &cfg.ownership;
        let ownership = Ownership::new(
            &cfg.name,
            o.adopt,
            DEFAULT_PROTECTED,
            &o.protected_accounts,
            &o.owner_id,
        );
        Ok(LdapConnector {
            cfg,
            tls,
            conn: Mutex::new(None),
            ownership,
            scope,
        })
    }

    /// The attributes read for an account: [`USER_ATTRS`] and the owner attribute.
    fn user_attrs(&self) -> Vec<String> {
        let mut attrs: Vec<String> = USER_ATTRS.iter().map(|a| (*a).to_owned()).collect();
        attrs.push(self.cfg.ownership.owner_attribute.clone());
        attrs
    }

    fn in_scope(&self, entry_dn: &str) -> bool {
        dn::parse(entry_dn).is_ok_and(|d| self.scope.iter().any(|s| d.is_within(s)))
    }

    fn mark_of(&self, entry: &SearchEntry) -> Mark {
        let attr = &self.cfg.ownership.owner_attribute;
        let values = entry
            .attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
            .flat_map(|(_, v)| v.iter().map(String::as_str));
        self.ownership.mark_of(values)
    }

    /// Refuses an entry that is protected by any of its names (key, `cn`, `uid`).
    fn check_entry_not_protected(&self, entry: &SearchEntry) -> Result<(), ConnectorError> {
        for attr in ["sAMAccountName", "uid", "cn"] {
            for v in entry
                .attrs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
                .flat_map(|(_, v)| v.iter())
            {
                self.ownership.check_not_protected("account", v)?;
            }
        }
        Ok(())
    }

    /// The checks before modifying an existing account (see [`Ownership::may_manage`]).
    fn check_manage(&self, key: &str, entry: &SearchEntry) -> Result<(), ConnectorError> {
        self.check_entry_not_protected(entry)?;
        self.ownership
            .may_manage(key, self.in_scope(&entry.dn), &self.mark_of(entry))
    }

    /// Adopts an existing entry if the rules allow it: protected, scope, mark; marks it, brings
    /// it to `spec` and enables it (the hub records an adopted account as enabled).
    async fn adopt(
        &self,
        entry: SearchEntry,
        spec: &AccountSpec,
    ) -> Result<AccountRef, ConnectorError> {
        let key = &spec.account.key;
        self.check_entry_not_protected(&entry)?;
        let needs_mark =
            self.ownership
                .may_adopt(key, self.in_scope(&entry.dn), &self.mark_of(&entry))?;
        self.converge(&entry, spec, needs_mark).await?;
        let dn = self.enable_entry(&entry, true).await?;
        Ok(AccountRef::new(key.clone()).with_id(dn))
    }

    /// Enables or disables one found entry; returns its DN afterwards (a move changes it).
    async fn enable_entry(
        &self,
        entry: &SearchEntry,
        enabled: bool,
    ) -> Result<String, ConnectorError> {
        match &self.cfg.flavor {
            LdapFlavor::ActiveDirectory(_) => {
                self.set_uac(entry, enabled).await?;
                Ok(entry.dn.clone())
            }
            LdapFlavor::Generic(g) => {
                if !enabled && g.disable_removes_groups {
                    self.remove_from_all_groups(entry).await?;
                }
                match &g.disable {
                    DisableMethod::MoveToOu(ou) => {
                        if enabled && self.enabled_of(entry) {
                            return Ok(entry.dn.clone());
                        }
                        let target = if enabled { &self.cfg.users_dn } else { ou };
                        self.move_to(entry, target).await
                    }
                    DisableMethod::PpolicyLock => {
                        if enabled && first(entry, "pwdAccountLockedTime").is_none() {
                            return Ok(entry.dn.clone());
                        }
                        self.ppolicy_lock(&entry.dn, !enabled).await?;
                        Ok(entry.dn.clone())
                    }
                }
            }
        }
    }

    /// Refuses a protected group (by its id and its DN's first value).
    fn check_group_not_protected(
        &self,
        e: &Entitlement,
        group_dn: Option<&str>,
    ) -> Result<(), ConnectorError> {
        let id = dn::parse(&e.id)
            .ok()
            .filter(|_| e.id.contains('='))
            .and_then(|d| d.first_value().map(str::to_owned))
            .unwrap_or_else(|| e.id.clone());
        self.ownership.check_not_protected("group", &id)?;
        if let Some(g) = group_dn {
            self.ownership.check_not_protected("group", &rdn_value(g))?;
        }
        Ok(())
    }

    fn err(&self, op: &str, e: &LdapError) -> ConnectorError {
        let name = &self.cfg.name;
        match e {
            LdapError::LdapResult { result } => {
                let msg = format!("{op}: LDAP result {} {}", result.rc, result.text.trim());
                if matches!(result.rc, 3 | 51 | 52) {
                    ConnectorError::retryable(name, msg)
                } else {
                    ConnectorError::permanent(name, msg)
                }
            }
            LdapError::Timeout { .. } => ConnectorError::retryable(
                name,
                format!("{op}: timed out after {} ms", self.cfg.timeout.as_millis()),
            ),
            LdapError::Rustls { .. }
            | LdapError::UrlParsing { .. }
            | LdapError::UnknownScheme(_) => ConnectorError::permanent(name, format!("{op}: {e}")),
            LdapError::Io { source }
                if source
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
            {
                // certificate verification and other TLS failures will not heal by retrying
                ConnectorError::permanent(name, format!("{op}: TLS: {source}"))
            }
            other => ConnectorError::retryable(name, format!("{op}: {other}")),
        }
    }

    fn timed_out(&self, op: &str) -> ConnectorError {
        ConnectorError::retryable(
            &self.cfg.name,
            format!("{op}: timed out after {} ms", self.cfg.timeout.as_millis()),
        )
    }

    /// The shared, bound connection (connects and binds when there is none).
    async fn ldap(&self) -> Result<Ldap, ConnectorError> {
        let mut guard = self.conn.lock().await;
        if let Some(l) = guard.as_mut() {
            if !l.is_closed() {
                return Ok(l.clone());
            }
        }
        *guard = None;
        let mut settings = LdapConnSettings::new().set_conn_timeout(self.cfg.timeout);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        if self.cfg.tls == LdapTls::StartTls {
            settings = settings.set_starttls(true);
        }
        let connect = async {
            let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url)
                .await
                .map_err(|e| self.err("connect", &e))?;
            tokio::spawn(async move {
                let _ = conn.drive().await;
            });
            ldap.simple_bind(&self.cfg.bind_dn, self.cfg.bind_password.expose())
                .await
                .and_then(|r| r.success())
                .map_err(|e| self.err("bind", &e))?;
            Ok::<Ldap, ConnectorError>(ldap)
        };
        let ldap = tokio::time::timeout(self.cfg.timeout, connect)
            .await
            .map_err(|_| self.timed_out("connect"))??;
        *guard = Some(ldap.clone());
        Ok(ldap)
    }

    async fn reset(&self) {
        if let Some(mut l) = self.conn.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_millis(200), l.unbind()).await;
        }
    }

    /// Runs one operation with the timeout; drops the connection on transport trouble.
    async fn run<T, F, Fut>(&self, op: &str, f: F) -> Result<T, ConnectorError>
    where
        F: FnOnce(Ldap) -> Fut,
        Fut: std::future::Future<Output = Result<T, LdapError>>,
    {
        let ldap = self.ldap().await?;
        match tokio::time::timeout(self.cfg.timeout, f(ldap)).await {
            Err(_) => {
                self.reset().await;
                Err(self.timed_out(op))
            }
            Ok(Err(e)) => {
                if !matches!(e, LdapError::LdapResult { .. }) {
                    self.reset().await;
                }
                Err(self.err(op, &e))
            }
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Runs a write and returns its result code (0 = success) for the caller to interpret.
    async fn write_rc<F, Fut>(&self, op: &str, f: F) -> Result<(u32, String), ConnectorError>
    where
        F: FnOnce(Ldap) -> Fut,
        Fut: std::future::Future<Output = Result<ldap3::LdapResult, LdapError>>,
    {
        let r = self.run(op, f).await?;
        Ok((r.rc, r.text))
    }

    fn rc_err(&self, op: &str, rc: u32, text: &str) -> ConnectorError {
        let msg = format!("{op}: LDAP result {rc} {}", text.trim());
        if matches!(rc, 3 | 51 | 52) {
            ConnectorError::retryable(&self.cfg.name, msg)
        } else {
            ConnectorError::permanent(&self.cfg.name, msg)
        }
    }

    async fn search(
        &self,
        op: &str,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, ConnectorError> {
        let (base, filter) = (base.to_owned(), filter.to_owned());
        let attrs: Vec<String> = attrs.iter().map(|a| (*a).to_owned()).collect();
        let res = self
            .run(op, |mut l| async move {
                l.search(&base, scope, &filter, attrs).await
            })
            .await?;
        if res.1.rc == 32 {
            return Ok(Vec::new());
        }
        if res.1.rc != 0 {
            return Err(self.rc_err(op, res.1.rc, &res.1.text));
        }
        Ok(res.0.into_iter().map(SearchEntry::construct).collect())
    }

    fn is_ad(&self) -> bool {
        matches!(self.cfg.flavor, LdapFlavor::ActiveDirectory(_))
    }

    fn user_filter(&self, key: &str) -> String {
        let k = ldap_escape(key);
        if self.is_ad() {
            format!("(&(objectCategory=person)(objectClass=user)(sAMAccountName={k}))")
        } else {
            format!("(&(objectClass=inetOrgPerson)(uid={k}))")
        }
    }

    fn all_users_filter(&self) -> &'static str {
        if self.is_ad() {
            "(&(objectCategory=person)(objectClass=user))"
        } else {
            "(objectClass=inetOrgPerson)"
        }
    }

    async fn find(&self, key: &str) -> Result<Option<SearchEntry>, ConnectorError> {
        let attrs = self.user_attrs();
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        let mut found = self
            .search(
                "search",
                &self.cfg.search_base,
                Scope::Subtree,
                &self.user_filter(key),
                &attrs,
            )
            .await?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            n => Err(ConnectorError::permanent(
                &self.cfg.name,
                format!("{n} entries match account {key}"),
            )),
        }
    }

    async fn must_find(&self, key: &str) -> Result<SearchEntry, ConnectorError> {
        self.find(key).await?.ok_or_else(|| {
            ConnectorError::permanent(&self.cfg.name, format!("no directory entry for {key}"))
        })
    }

    /// Desired values of the attributes this connector manages, `None` = absent.
    fn desired(&self, spec: &AccountSpec) -> Vec<(&'static str, Option<String>)> {
        let a = &spec.attributes;
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        let key = spec.account.key.clone();
        let given = s(a.get("name").and_then(|n| n.get("givenName")));
        let family = s(a.get("name").and_then(|n| n.get("familyName")));
        let display = s(a.get("displayName"));
        let mail = primary_email(a).map(str::to_owned);
        let mut out = vec![
            ("givenName", given),
            ("displayName", display.clone()),
            ("mail", mail),
        ];
        if self.is_ad() {
            out.push(("sn", family));
            if let LdapFlavor::ActiveDirectory(ad) = &self.cfg.flavor {
                out.push((
                    "userPrincipalName",
                    Some(format!("{key}@{}", ad.upn_suffix)),
                ));
            }
        } else {
            // inetOrgPerson requires cn and sn
            out.push(("sn", Some(family.unwrap_or_else(|| key.clone()))));
            out.push(("cn", Some(display.unwrap_or_else(|| key.clone()))));
            out.push(("employeeNumber", s(a.get("externalId"))));
        }
        out
    }

    /// Brings the entry's attributes to `spec`; with `mark`, also writes this hub's mark.
    async fn converge(
        &self,
        entry: &SearchEntry,
        spec: &AccountSpec,
        mark: bool,
    ) -> Result<(), ConnectorError> {
        let mut mods: Vec<Mod<Vec<u8>>> = Vec::new();
        if mark {
            mods.push(Mod::Replace(
                self.cfg.ownership.owner_attribute.as_bytes().to_vec(),
                set([self.ownership.mark.as_bytes().to_vec()]),
            ));
        }
        // attributes that name the entry (`cn` of `cn=Doe\, John,…`) change only by renaming it
        let naming: Vec<String> = dn::parse(&entry.dn)
            .ok()
            .and_then(|d| d.rdns.first().cloned())
            .map(|r| r.avas.into_iter().map(|a| a.attr).collect())
            .unwrap_or_default();
        for (attr, want) in self.desired(spec) {
            if naming.iter().any(|n| n.eq_ignore_ascii_case(attr)) {
                continue;
            }
            let have = first(entry, attr);
            match (want, have) {
                (Some(w), h) if h.as_deref() != Some(w.as_str()) => {
                    mods.push(Mod::Replace(
                        attr.as_bytes().to_vec(),
                        set([w.into_bytes()]),
                    ));
                }
                (None, Some(_)) => {
                    mods.push(Mod::Replace(attr.as_bytes().to_vec(), HashSet::new()));
                }
                _ => {}
            }
        }
        if mods.is_empty() {
            return Ok(());
        }
        let dn = entry.dn.clone();
        let (rc, text) = self
            .write_rc("modify", |mut l| async move { l.modify(&dn, mods).await })
            .await?;
        if rc != 0 {
            return Err(self.rc_err("modify", rc, &text));
        }
        Ok(())
    }

    /// The DN of the group named by an entitlement (its DN, or its cn under the groups DN).
    async fn group_dn(&self, e: &Entitlement) -> Result<Option<String>, ConnectorError> {
        if e.kind != "group" {
            return Err(ConnectorError::permanent(
                &self.cfg.name,
                format!("unknown entitlement kind {:?} (LDAP knows group)", e.kind),
            ));
        }
        if e.id.contains('=') {
            return Ok(Some(e.id.clone()));
        }
        let id = ldap_escape(&e.id);
        let filter = if self.is_ad() {
            format!("(&(objectClass=group)(|(cn={id})(sAMAccountName={id})))")
        } else {
            format!("(&(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))(cn={id}))")
        };
        let found = self
            .search(
                "group search",
                &self.cfg.groups_dn,
                Scope::Subtree,
                &filter,
                &["cn"],
            )
            .await?;
        Ok(found.into_iter().next().map(|g| g.dn))
    }

    async fn add_member(&self, group: &str, user_dn: &str) -> Result<(), ConnectorError> {
        let (g, u) = (group.to_owned(), user_dn.to_owned());
        let (rc, text) = self
            .write_rc("add member", |mut l| async move {
                l.modify(
                    &g,
                    vec![Mod::Add(b"member".to_vec(), set([u.into_bytes()]))],
                )
                .await
            })
            .await?;
        // 20 attributeOrValueExists: already a member (AD answers 68 entryAlreadyExists)
        if !matches!(rc, 0 | 20 | 68) {
            return Err(self.rc_err("add member", rc, &text));
        }
        if let LdapFlavor::Generic(gen) = &self.cfg.flavor {
            if !gen.placeholder_member.eq_ignore_ascii_case(user_dn) {
                let (g, p) = (group.to_owned(), gen.placeholder_member.clone());
                // 16 noSuchAttribute: the placeholder was not there
                let (rc, text) = self
                    .write_rc("remove placeholder", |mut l| async move {
                        l.modify(
                            &g,
                            vec![Mod::Delete(b"member".to_vec(), set([p.into_bytes()]))],
                        )
                        .await
                    })
                    .await?;
                if !matches!(rc, 0 | 16 | 65) {
                    return Err(self.rc_err("remove placeholder", rc, &text));
                }
            }
        }
        Ok(())
    }

    async fn remove_member(&self, group: &str, user_dn: &str) -> Result<(), ConnectorError> {
        let (g, u) = (group.to_owned(), user_dn.to_owned());
        let (rc, text) = self
            .write_rc("remove member", |mut l| async move {
                l.modify(
                    &g,
                    vec![Mod::Delete(b"member".to_vec(), set([u.into_bytes()]))],
                )
                .await
            })
            .await?;
        match rc {
            // gone already: not a member (16), no such group (32)
            0 | 16 | 32 => Ok(()),
            // AD answers 53 unwillingToPerform ("member already deleted") for a non-member:
            // success when the group indeed does not list the user
            53 if !self.is_member(group, user_dn).await? => Ok(()),
            // 65 objectClassViolation: the last member of a groupOfNames; swap in the
            // placeholder in one modify
            65 => {
                let LdapFlavor::Generic(gen) = &self.cfg.flavor else {
                    return Err(self.rc_err("remove member", rc, &text));
                };
                let (g, u, p) = (
                    group.to_owned(),
                    user_dn.to_owned(),
                    gen.placeholder_member.clone(),
                );
                let (rc, text) = self
                    .write_rc("remove last member", |mut l| async move {
                        l.modify(
                            &g,
                            vec![
                                Mod::Add(b"member".to_vec(), set([p.into_bytes()])),
                                Mod::Delete(b"member".to_vec(), set([u.into_bytes()])),
                            ],
                        )
                        .await
                    })
                    .await?;
                if matches!(rc, 0 | 16) {
                    Ok(())
                } else {
                    Err(self.rc_err("remove last member", rc, &text))
                }
            }
            _ => Err(self.rc_err("remove member", rc, &text)),
        }
    }

    async fn is_member(&self, group: &str, user_dn: &str) -> Result<bool, ConnectorError> {
        let filter = format!("(member={})", ldap_escape(user_dn));
        let found = self
            .search("member check", group, Scope::Base, &filter, &["cn"])
            .await?;
        Ok(!found.is_empty())
    }

    /// DNs of the groups that list `user_dn` as a member.
    async fn groups_of(&self, entry: &SearchEntry) -> Result<Vec<String>, ConnectorError> {
        if self.is_ad() {
            return Ok(entry.attrs.get("memberOf").cloned().unwrap_or_default());
        }
        let filter = format!(
            "(&(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))(member={}))",
            ldap_escape(&entry.dn)
        );
        let found = self
            .search(
                "group search",
                &self.cfg.groups_dn,
                Scope::Subtree,
                &filter,
                &["cn"],
            )
            .await?;
        Ok(found.into_iter().map(|g| g.dn).collect())
    }

    async fn remove_from_all_groups(&self, entry: &SearchEntry) -> Result<(), ConnectorError> {
        for g in self.groups_of(entry).await? {
            self.remove_member(&g, &entry.dn).await?;
        }
        Ok(())
    }

    async fn move_to(&self, entry: &SearchEntry, parent: &str) -> Result<String, ConnectorError> {
        let bad = |e: dn::DnError| ConnectorError::permanent(&self.cfg.name, e.to_string());
        let current = dn::parse(&entry.dn).map_err(bad)?;
        let target = dn::parse(parent).map_err(bad)?;
        if current.is_child_of(&target) {
            return Ok(entry.dn.clone());
        }
        let Some((rdn, _)) = current.split_first() else {
            return Err(ConnectorError::permanent(
                &self.cfg.name,
                "cannot move the root DN",
            ));
        };
        let rdn = rdn.to_owned();
        let (rc, text) = self.move_rc(&entry.dn, &rdn, parent).await?;
        // Another leaver with the same CN is there already (result 68): this one moves in
        // under `<cn> (<account name>)`, as a second account with a taken CN is created.
        let unique = first(entry, "sAMAccountName").or_else(|| first(entry, "uid"));
        let named_by_cn = rdn
            .split_once('=')
            .is_some_and(|(a, _)| a.trim().eq_ignore_ascii_case("cn"));
        if let (68, Some(unique), true) = (rc, unique, named_by_cn) {
            let rdn = format!(
                "CN={} ({})",
                dn_escape(rdn_value(&entry.dn)),
                dn_escape(&unique)
            );
            let (rc, text) = self.move_rc(&entry.dn, &rdn, parent).await?;
            if rc != 0 {
                return Err(self.rc_err("move", rc, &text));
            }
            return Ok(format!("{rdn},{parent}"));
        }
        if rc != 0 {
            return Err(self.rc_err("move", rc, &text));
        }
        Ok(format!("{rdn},{parent}"))
    }

    fn enabled_of(&self, entry: &SearchEntry) -> bool {
        match &self.cfg.flavor {
            LdapFlavor::ActiveDirectory(_) => first(entry, "userAccountControl")
                .and_then(|v| v.parse::<u32>().ok())
                .map(|uac| uac & UAC_ACCOUNTDISABLE == 0)
                .unwrap_or(true),
            LdapFlavor::Generic(g) => match &g.disable {
                DisableMethod::MoveToOu(ou) => !dn_under(&entry.dn, ou),
                DisableMethod::PpolicyLock => first(entry, "pwdAccountLockedTime").is_none(),
            },
        }
    }

    fn state_of(&self, entry: &SearchEntry, groups: &[String]) -> AccountState {
        let key = if self.is_ad() {
            first(entry, "sAMAccountName")
        } else {
            first(entry, "uid")
        }
        .unwrap_or_default();
        let mut attributes = Map::new();
        attributes.insert("userName".into(), json!(key));
        let mut name = Map::new();
        if let Some(v) = first(entry, "givenName") {
            name.insert("givenName".into(), json!(v));
        }
        if let Some(v) = first(entry, "sn") {
            name.insert("familyName".into(), json!(v));
        }
        if !name.is_empty() {
            attributes.insert("name".into(), Value::Object(name));
        }
        if let Some(v) = first(entry, "displayName") {
            attributes.insert("displayName".into(), json!(v));
        }
        if let Some(v) = first(entry, "mail") {
            attributes.insert("emails".into(), json!([{ "value": v, "primary": true }]));
        }
        if let Some(v) = first(entry, "employeeNumber") {
            attributes.insert("externalId".into(), json!(v));
        }
        attributes.insert("dn".into(), json!(entry.dn));
        for a in [
            "cn",
            "userPrincipalName",
            "userAccountControl",
            "pwdAccountLockedTime",
        ] {
            if let Some(v) = first(entry, a) {
                attributes.insert(a.into(), json!(v));
            }
        }
        AccountState {
            account: AccountRef::new(key).with_id(entry.dn.clone()),
            enabled: self.enabled_of(entry),
            attributes,
            entitlements: groups
                .iter()
                .map(|g| Entitlement::new("group", rdn_value(g)))
                .collect(),
        }
    }

    async fn create_generic(&self, spec: &AccountSpec) -> Result<String, ConnectorError> {
        let key = &spec.account.key;
        let dn = format!("uid={},{}", dn_escape(key.as_str()), self.cfg.users_dn);
        let mut attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
            (
                b"objectClass".to_vec(),
                set(["top", "person", "organizationalPerson", "inetOrgPerson"]
                    .map(|s| s.as_bytes().to_vec())),
            ),
            (b"uid".to_vec(), set([key.as_bytes().to_vec()])),
            self.mark_attr(),
        ];
        for (attr, want) in self.desired(spec) {
            if let Some(w) = want {
                attrs.push((attr.as_bytes().to_vec(), set([w.into_bytes()])));
            }
        }
        if let (Some(pw), false) = (password_of(spec), self.cfg.tls == LdapTls::PlainInsecure) {
            attrs.push((b"userPassword".to_vec(), set([pw.into_bytes()])));
        }
        self.add_entry(&dn, attrs).await?;
        Ok(dn)
    }

    async fn create_ad(&self, spec: &AccountSpec) -> Result<String, ConnectorError> {
        let key = &spec.account.key;
        let display = spec
            .attributes
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or(key);
        let dn = format!("CN={},{}", dn_escape(display), self.cfg.users_dn);
        let mut attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
            (
                b"objectClass".to_vec(),
                set(["top", "person", "organizationalPerson", "user"]
                    .map(|s| s.as_bytes().to_vec())),
            ),
            (b"sAMAccountName".to_vec(), set([key.as_bytes().to_vec()])),
            self.mark_attr(),
        ];
        for (attr, want) in self.desired(spec) {
            if let Some(w) = want {
                attrs.push((attr.as_bytes().to_vec(), set([w.into_bytes()])));
            }
        }
        let can_send_password = self.cfg.tls != LdapTls::PlainInsecure;
        let uac = if can_send_password {
            let pw = password_of(spec)
                .map_or_else(random_password, Ok)
                .map_err(|e| ConnectorError::permanent(&self.cfg.name, e))?;
            attrs.push((b"unicodePwd".to_vec(), set([unicode_pwd(&pw)])));
            UAC_NORMAL_ACCOUNT
        } else {
            // no password over a plain connection: create disabled (AD refuses an enabled
            // account without a password that meets the policy)
            UAC_NORMAL_ACCOUNT | UAC_ACCOUNTDISABLE
        };
        attrs.push((
            b"userAccountControl".to_vec(),
            set([uac.to_string().into_bytes()]),
        ));
        // Two people may share a display name, but a CN is unique in its container (result 68,
        // entryAlreadyExists): the second is named `<display> (<sAMAccountName>)`, which the
        // domain-unique sAMAccountName keeps unique. (The caller found no entry of this
        // sAMAccountName, so the one holding the CN is someone else's.)
        let (rc, text) = self.add_rc(&dn, attrs.clone()).await?;
        match rc {
            0 => Ok(dn),
            68 if display != key.as_str() => {
                let dn = format!(
                    "CN={} ({}),{}",
                    dn_escape(display),
                    dn_escape(key),
                    self.cfg.users_dn
                );
                self.add_entry(&dn, attrs).await?;
                Ok(dn)
            }
            _ => Err(self.rc_err("add", rc, &text)),
        }
    }

    /// This hub's owner mark, for a new entry.
    fn mark_attr(&self) -> (Vec<u8>, HashSet<Vec<u8>>) {
        (
            self.cfg.ownership.owner_attribute.as_bytes().to_vec(),
            set([self.ownership.mark.as_bytes().to_vec()]),
        )
    }

    async fn add_entry(
        &self,
        dn: &str,
        attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)>,
    ) -> Result<(), ConnectorError> {
        match self.add_rc(dn, attrs).await? {
            (0, _) => Ok(()),
            (rc, text) => Err(self.rc_err("add", rc, &text)),
        }
    }

    /// Adds `dn`; the LDAP result code and text, for a caller that handles some itself.
    async fn add_rc(
        &self,
        dn: &str,
        attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)>,
    ) -> Result<(u32, String), ConnectorError> {
        let d = dn.to_owned();
        self.write_rc("add", |mut l| async move { l.add(&d, attrs).await })
            .await
    }

    /// Moves `dn` under `parent` as `rdn`; the LDAP result code and text.
    async fn move_rc(
        &self,
        dn: &str,
        rdn: &str,
        parent: &str,
    ) -> Result<(u32, String), ConnectorError> {
        let (dn, rdn, parent) = (dn.to_owned(), rdn.to_owned(), parent.to_owned());
        self.write_rc("move", |mut l| async move {
            l.modifydn(&dn, &rdn, true, Some(&parent)).await
        })
        .await
    }

    async fn set_uac(&self, entry: &SearchEntry, enabled: bool) -> Result<(), ConnectorError> {
        let uac = first(entry, "userAccountControl")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(UAC_NORMAL_ACCOUNT);
        let want = if enabled {
            uac & !UAC_ACCOUNTDISABLE
        } else {
            uac | UAC_ACCOUNTDISABLE
        };
        if want == uac {
            return Ok(());
        }
        let dn = entry.dn.clone();
        let (rc, text) = self
            .write_rc("userAccountControl", |mut l| async move {
                l.modify(
                    &dn,
                    vec![Mod::Replace(
                        b"userAccountControl".to_vec(),
                        set([want.to_string().into_bytes()]),
                    )],
                )
                .await
            })
            .await?;
        if rc != 0 {
            return Err(self.rc_err("userAccountControl", rc, &text));
        }
        Ok(())
    }

    async fn ppolicy_lock(&self, dn: &str, lock: bool) -> Result<(), ConnectorError> {
        let d = dn.to_owned();
        let values = if lock {
            set([PPOLICY_LOCKED.as_bytes().to_vec()])
        } else {
            HashSet::new()
        };
        let (rc, text) = self
            .write_rc("pwdAccountLockedTime", |mut l| async move {
                l.modify(
                    &d,
                    vec![Mod::Replace(b"pwdAccountLockedTime".to_vec(), values)],
                )
                .await
            })
            .await?;
        // 16: unlocking what is not locked
        if !matches!(rc, 0 | 16) {
            return Err(self.rc_err("pwdAccountLockedTime", rc, &text));
        }
        Ok(())
    }

    async fn delete_entry(&self, dn: &str) -> Result<(), ConnectorError> {
        let d = dn.to_owned();
        let (rc, text) = self
            .write_rc("delete", |mut l| async move { l.delete(&d).await })
            .await?;
        if !matches!(rc, 0 | 32) {
            return Err(self.rc_err("delete", rc, &text));
        }
        Ok(())
    }
}

#[async_trait]
impl Connector for LdapConnector {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn excluded(&self, account: &AccountState) -> Option<String> {
        let dn = account.account.id.as_deref().unwrap_or_default();
        let in_scope = dn.is_empty() || self.in_scope(dn);
        self.ownership
            .excluded(&account.account.key, in_scope)
            .or_else(|| {
                account
                    .attributes
                    .get("cn")
                    .and_then(Value::as_str)
                    .and_then(|cn| self.ownership.excluded(cn, true))
            })
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
                Capability::ReadAccount,
                Capability::ListAccounts,
            ],
            entitlement_kinds: vec!["group".into()],
        }
    }

    async fn create_or_adopt(&self, spec: &AccountSpec) -> Result<AccountRef, ConnectorError> {
        let key = &spec.account.key;
        self.ownership.check_not_protected("account", key)?;
        if let Some(entry) = self.find(key).await? {
            return self.adopt(entry, spec).await;
        }
        let dn = if self.is_ad() {
            self.create_ad(spec).await
        } else {
            self.create_generic(spec).await
        };
        match dn {
            Ok(dn) => Ok(AccountRef::new(key.clone()).with_id(dn)),
            // created concurrently (68 entryAlreadyExists): adopt it under the same rules
            Err(e) if e.message.contains("LDAP result 68") => {
                let entry = self.must_find(key).await?;
                self.adopt(entry, spec).await
            }
            Err(e) => Err(e),
        }
    }

    async fn update(&self, spec: &AccountSpec) -> Result<(), ConnectorError> {
        let key = &spec.account.key;
        self.ownership.check_not_protected("account", key)?;
        let entry = self.must_find(key).await?;
        self.check_manage(key, &entry)?;
        self.converge(&entry, spec, false).await
    }

    async fn set_enabled(&self, account: &AccountRef, enabled: bool) -> Result<(), ConnectorError> {
        self.ownership
            .check_not_protected("account", &account.key)?;
        let entry = self.must_find(&account.key).await?;
        self.check_manage(&account.key, &entry)?;
        self.enable_entry(&entry, enabled).await.map(|_| ())
    }

    async fn delete(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.ownership
            .check_not_protected("account", &account.key)?;
        let Some(entry) = self.find(&account.key).await? else {
            return Ok(());
        };
        self.check_manage(&account.key, &entry)?;
        match &self.cfg.flavor {
            LdapFlavor::ActiveDirectory(ad) if ad.leave == AdLeave::DisableAndMove => {
                self.set_uac(&entry, false).await?;
                self.remove_from_all_groups(&entry).await?;
                self.move_to(&entry, &ad.leavers_ou).await.map(|_| ())
            }
            _ => {
                self.remove_from_all_groups(&entry).await?;
                self.delete_entry(&entry.dn).await
            }
        }
    }

    async fn grant(&self, account: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        self.ownership
            .check_not_protected("account", &account.key)?;
        self.check_group_not_protected(e, None)?;
        let group = self.group_dn(e).await?.ok_or_else(|| {
            ConnectorError::permanent(&self.cfg.name, format!("no group {}", e.id))
        })?;
        self.check_group_not_protected(e, Some(&group))?;
        let entry = self.must_find(&account.key).await?;
        self.check_manage(&account.key, &entry)?;
        self.add_member(&group, &entry.dn).await
    }

    async fn revoke(&self, account: &AccountRef, e: &Entitlement) -> Result<(), ConnectorError> {
        self.ownership
            .check_not_protected("account", &account.key)?;
        self.check_group_not_protected(e, None)?;
        let Some(group) = self.group_dn(e).await? else {
            return Ok(());
        };
        self.check_group_not_protected(e, Some(&group))?;
        let Some(entry) = self.find(&account.key).await? else {
            return Ok(());
        };
        self.check_manage(&account.key, &entry)?;
        self.remove_member(&group, &entry.dn).await
    }

    async fn read(&self, account: &AccountRef) -> Result<Option<AccountState>, ConnectorError> {
        let Some(entry) = self.find(&account.key).await? else {
            return Ok(None);
        };
        let groups = self.groups_of(&entry).await?;
        Ok(Some(self.state_of(&entry, &groups)))
    }

    /// One page of a paged-results search (RFC 2696). The token is the server's cookie, which
    /// belongs to the connection: if the connection was replaced between pages the server
    /// rejects it and the listing must restart from the first page.
    async fn list_accounts(&self, page: Option<&str>) -> Result<AccountPage, ConnectorError> {
        let cookie = match page {
            Some(p) => hex::decode(p)
                .map_err(|_| ConnectorError::permanent(&self.cfg.name, "invalid page token"))?,
            None => Vec::new(),
        };
        let size = self.cfg.page_size;
        let base = self.cfg.search_base.clone();
        let filter = self.all_users_filter().to_owned();
        let attrs = self.user_attrs();
        let res = self
            .run("paged search", |mut l| async move {
                l.with_controls(PagedResults { size, cookie })
                    .search(&base, Scope::Subtree, &filter, attrs)
                    .await
            })
            .await?;
        let (entries, result) = (res.0, res.1);
        if result.rc != 0 {
            return Err(self.rc_err("paged search", result.rc, &result.text));
        }
        let mut next = None;
        for ctrl in &result.ctrls {
            if let ldap3::controls::Control(Some(ControlType::PagedResults), raw) = ctrl {
                let pr: PagedResults = raw.parse();
                if !pr.cookie.is_empty() {
                    next = Some(hex::encode(&pr.cookie));
                }
            }
        }
        let mut accounts = Vec::new();
        for e in entries.into_iter().map(SearchEntry::construct) {
            let groups = self.groups_of(&e).await?;
            accounts.push(self.state_of(&e, &groups));
        }
        Ok(AccountPage { accounts, next })
    }
}

fn tls_config(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("cannot read CA file {}: {e}", ca.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("bad certificate in {}: {e}", ca.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("unusable CA certificate in {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("no certificate in CA file {}", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

fn set<const N: usize>(v: [Vec<u8>; N]) -> HashSet<Vec<u8>> {
    v.into_iter().collect()
}

fn first(entry: &SearchEntry, attr: &str) -> Option<String> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first().cloned())
}

/// Checks what the policy checker cannot see in the types: `managed_ous` are DNs and cover
/// `users_dn`, and the owner attribute is named.
pub fn check_ownership(cfg: &LdapConfig) -> Result<(), String> {
    if cfg.ownership.owner_attribute.trim().is_empty() {
        return Err("owner_attribute must not be empty".into());
    }
    managed_scope(cfg).map(|_| ())
}

/// The managed subtrees of `cfg`, parsed; `users_dn` must lie within them.
fn managed_scope(cfg: &LdapConfig) -> Result<Vec<Dn>, String> {
    let mut ous = cfg.ownership.managed_ous.clone();
    if ous.is_empty() {
        ous.push(cfg.users_dn.clone());
        match &cfg.flavor {
            LdapFlavor::Generic(GenericLdap {
                disable: DisableMethod::MoveToOu(ou),
                ..
            }) => ous.push(ou.clone()),
            // whatever `leave` says now: leavers moved there earlier stay the hub's
            LdapFlavor::ActiveDirectory(ad) => ous.push(ad.leavers_ou.clone()),
            _ => {}
        }
    }
    let scope = ous
        .iter()
        .map(|o| dn::parse(o).map_err(|e| format!("managed_ous: {e}")))
        .collect::<Result<Vec<Dn>, String>>()?;
    let users = dn::parse(&cfg.users_dn).map_err(|e| format!("users_dn: {e}"))?;
    if !scope.iter().any(|s| users.is_within(s)) {
        return Err(format!(
            "users_dn {:?} is outside managed_ous: the hub could not manage what it creates",
            cfg.users_dn
        ));
    }
    Ok(scope)
}

fn dn_under(dn: &str, parent: &str) -> bool {
    match (dn::parse(dn), dn::parse(parent)) {
        (Ok(d), Ok(p)) => d.rdns.len() > p.rdns.len() && d.is_within(&p),
        _ => false,
    }
}

/// `CN=Engineering,OU=Groups,…` → `Engineering`; `CN=Doe\, John,…` → `Doe, John`.
fn rdn_value(dn: &str) -> String {
    dn::parse(dn)
        .ok()
        .and_then(|d| d.first_value().map(str::to_owned))
        .unwrap_or_else(|| dn.to_owned())
}

/// A password from the spec (SCIM `password`), if any.
fn password_of(spec: &AccountSpec) -> Option<String> {
    spec.attributes
        .get("password")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// AD's `unicodePwd`: the password in double quotes, UTF-16LE.
fn unicode_pwd(pw: &str) -> Vec<u8> {
    format!("\"{pw}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// A random 32-character password meeting AD complexity (upper, lower, digit, symbol).
fn random_password() -> Result<String, String> {
    use std::io::Read;
    let mut bytes = [0u8; 28];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("no randomness for an initial password: {e}"))?;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut pw: String = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    pw.push_str("Aa1!");
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(unicode_pwd("a"), vec![b'"', 0, b'a', 0, b'"', 0]);
        assert_eq!(rdn_value("CN=Engineering,OU=Groups,DC=x"), "Engineering");
        assert_eq!(rdn_value(r"CN=Doe\, John,OU=People,DC=x"), "Doe, John");
        assert!(dn_under("uid=a,ou=Disabled,dc=x", "ou=disabled,dc=x"));
        assert!(dn_under(
            r"cn=Doe\, John,ou=Disabled,dc=x",
            "ou=disabled,dc=x"
        ));
        assert!(!dn_under(
            r"cn=x\,ou=Disabled,dc=x",
            "ou=disabled,dc=x,dc=y"
        ));
        let pw = random_password().expect("pw");
        assert_eq!(pw.len(), 32);
    }

    #[test]
    fn settings_build_configs_with_their_defaults() {
        let generic: LdapSettings = serde_json::from_value(json!({
            "url": "ldap://h", "tls": "starttls", "ca_file": "/ca.pem", "bind_dn": "cn=admin",
            "search_base": "dc=x", "users_dn": "ou=p,dc=x", "groups_dn": "ou=g,dc=x",
            "disable": "move_to_ou", "disabled_ou": "ou=off,dc=x"
        }))
        .expect("generic settings");
        let c = LdapConfig::generic("dir", generic, Secret::new("pw"));
        assert_eq!(
            (c.tls, c.timeout, c.page_size),
            (LdapTls::StartTls, Duration::from_secs(10), 500)
        );
        assert_eq!(
            c.flavor,
            LdapFlavor::Generic(GenericLdap {
                disable: DisableMethod::MoveToOu("ou=off,dc=x".into()),
                disable_removes_groups: false,
                placeholder_member: "cn=admin".into(),
            })
        );
        let ad: AdSettings = serde_json::from_value(json!({
            "url": "ldaps://dc", "tls": "ldaps", "ca_file": "/ca.pem", "bind_dn": "cn=a",
            "search_base": "dc=x", "users_dn": "ou=p,dc=x", "groups_dn": "ou=g,dc=x",
            "upn_suffix": "x.com", "leavers_ou": "ou=l,dc=x"
        }))
        .expect("ad settings");
        let c = LdapConfig::active_directory("ad", ad, Secret::new("pw"));
        assert!(matches!(
            c.flavor,
            LdapFlavor::ActiveDirectory(ActiveDirectory {
                leave: AdLeave::DisableAndMove,
                ..
            })
        ));
        let err = serde_json::from_value::<LdapTls>(json!("start_tls")).expect_err("spelling");
        assert!(err.to_string().contains("starttls"), "{err}");
    }
}
