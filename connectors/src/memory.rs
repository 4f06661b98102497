//! An in-memory downstream system: for tests, simulations and `scimhub demo`.
//!
//! It supports every [`Capability`] and any entitlement kind, keeps its accounts in memory (and,
//! when given a file, mirrors them to it after every change so a test can read the state of a
//! process it killed), and records one [`Effect`] per call that *changed* something: running an
//! operation twice leaves one effect, which is how tests prove idempotency. Faults can be
//! injected ([`MemoryConnector::fail_next`]) and calls slowed down ([`MemoryConnector::with_delay`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    AccountPage, AccountRef, AccountSpec, AccountState, Capabilities, Capability, Connector,
    ConnectorError, Entitlement,
};

/// One account as the memory system holds it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MemoryAccount {
    pub id: String,
    pub enabled: bool,
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub entitlements: BTreeSet<Entitlement>,
    /// Live sessions (revoke_sessions empties it).
    pub sessions: u32,
    /// Live credentials (revoke_credentials empties it).
    pub credentials: u32,
    /// Records owned (transfer_ownership moves them to the target's key).
    pub owned: Vec<String>,
}

/// A state change made by a call (no-op calls record nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    pub op: String,
    pub key: String,
    pub detail: String,
}

/// The whole state, as mirrored to the file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MemoryState {
    pub accounts: BTreeMap<String, MemoryAccount>,
    pub effects: Vec<Effect>,
    /// Every call, effective or not.
    pub calls: u64,
}

#[derive(Debug, Default)]
struct Inner {
    state: MemoryState,
    faults: VecDeque<ConnectorError>,
    next_id: u64,
}

/// Settings of one memory connector instance: the policy's `settings` table for
/// `type = "memory"`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySettings {
    /// A JSON file the state is mirrored to (and read back from at start).
    pub file: Option<PathBuf>,
    /// Delay added to every call, in milliseconds (simulates a slow downstream).
    #[serde(default)]
    pub delay_ms: u64,
}

/// The in-memory connector. Clones share state.
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    name: String,
    inner: Arc<Mutex<Inner>>,
    file: Option<PathBuf>,
    delay: Duration,
}

impl MemoryConnector {
    pub fn new(name: impl Into<String>) -> Self {
        MemoryConnector {
            name: name.into(),
            inner: Arc::default(),
            file: None,
            delay: Duration::ZERO,
        }
    }

    /// A connector named `name` configured by the policy's `settings`.
    pub fn from_settings(name: impl Into<String>, settings: MemorySettings) -> Self {
        let mut m = MemoryConnector::new(name);
        if let Some(file) = settings.file {
            m = m.with_file(file);
        }
        if settings.delay_ms > 0 {
            m = m.with_delay(Duration::from_millis(settings.delay_ms));
        }
        m
    }

    /// Mirrors the state to `file` (JSON) after every call; loads it first if it exists.
    pub fn with_file(mut self, file: impl Into<PathBuf>) -> Self {
        let file = file.into();
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Ok(state) = serde_json::from_str::<MemoryState>(&text) {
                let mut inner = self.lock();
                inner.next_id = state.accounts.len() as u64 + state.effects.len() as u64;
                inner.state = state;
            }
        }
        self.file = Some(file);
        self
    }

    /// Sleeps this long in every call (to widen crash windows and measure latency).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The next calls fail with these errors, in order.
    pub fn fail_next(&self, errors: impl IntoIterator<Item = ConnectorError>) {
        self.lock().faults.extend(errors);
    }

    pub fn state(&self) -> MemoryState {
        self.lock().state.clone()
    }

    pub fn account(&self, key: &str) -> Option<MemoryAccount> {
        self.lock().state.accounts.get(key).cloned()
    }

    /// Effects recorded so far.
    pub fn effects(&self) -> Vec<Effect> {
        self.lock().state.effects.clone()
    }

    /// Gives an account sessions and credentials (as if the person had logged in and made keys).
    pub fn simulate_usage(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(a) = inner.state.accounts.get_mut(key) {
            a.sessions += 1;
            a.credentials += 1;
            a.owned.push(format!("doc-{}", a.owned.len() + 1));
        }
        self.persist(&inner);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mirrors `inner` to the file. Called with the state lock held, so concurrent calls write
    /// and rename in the order their changes happened (an older copy never overwrites a newer
    /// one, and no two writers share the temporary file).
    fn persist(&self, inner: &Inner) {
        let Some(file) = &self.file else { return };
        let text = match serde_json::to_string_pretty(&inner.state) {
            Ok(t) => t,
            Err(_) => return,
        };
        let tmp = file.with_extension("tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, file);
        }
    }

    /// Runs one call: delay, fault injection, the change, the mirror.
    async fn call<T>(
        &self,
        f: impl FnOnce(&mut Inner, &str) -> Result<T, ConnectorError>,
    ) -> Result<T, ConnectorError> {
        if !self.delay.is_zero() {
            tokio_free_sleep(self.delay).await;
        }
        let mut inner = self.lock();
        inner.state.calls += 1;
        if let Some(e) = inner.faults.pop_front() {
            return Err(e);
        }
        let out = f(&mut inner, &self.name);
        self.persist(&inner);
        out
    }
}

/// Sleeps without tying this crate to an async runtime: a helper thread wakes the future.
async fn tokio_free_sleep(d: Duration) {
    let (tx, rx) = futures_channel();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        tx.wake();
    });
    rx.await
}

/// A one-shot wake-up usable from any thread.
fn futures_channel() -> (Waker, Sleep) {
    let shared = Arc::new(Mutex::new((false, None::<std::task::Waker>)));
    (Waker(shared.clone()), Sleep(shared))
}

type Shared = Arc<Mutex<(bool, Option<std::task::Waker>)>>;

struct Waker(Shared);

impl Waker {
    fn wake(self) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = true;
        if let Some(w) = g.1.take() {
            w.wake();
        }
    }
}

struct Sleep(Shared);

impl std::future::Future for Sleep {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 {
            std::task::Poll::Ready(())
        } else {
            g.1 = Some(cx.waker().clone());
            std::task::Poll::Pending
        }
    }
}

fn effect(inner: &mut Inner, op: &str, key: &str, detail: impl Into<String>) {
    inner.state.effects.push(Effect {
        op: op.into(),
        key: key.into(),
        detail: detail.into(),
    });
}

fn ent_text(e: &Entitlement) -> String {
    match &e.role {
        Some(r) => format!("{}:{}:{}", e.kind, e.id, r),
        None => format!("{}:{}", e.kind, e.id),
    }
}

fn find<'a>(inner: &'a mut Inner, account: &AccountRef) -> Option<&'a mut MemoryAccount> {
    inner.state.accounts.get_mut(&account.key)
}

fn missing(name: &str, account: &AccountRef) -> ConnectorError {
    ConnectorError::permanent(name, format!("no account {}", account.key))
}

#[async_trait]
impl Connector for MemoryConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        use Capability::*;
        Capabilities {
            operations: vec![
                CreateAccount,
                UpdateAccount,
                EnableDisable,
                DeleteAccount,
                Grant,
                Revoke,
                RevokeSessions,
                RevokeCredentials,
                TransferOwnership,
                ReadAccount,
                ListAccounts,
            ],
            entitlement_kinds: vec![],
        }
    }

    async fn create_or_adopt(&self, spec: &AccountSpec) -> Result<AccountRef, ConnectorError> {
        self.call(|inner, _| {
            let key = spec.account.key.clone();
            if let Some(a) = inner.state.accounts.get_mut(&key) {
                let id = a.id.clone();
                if a.attributes != spec.attributes {
                    a.attributes = spec.attributes.clone();
                    effect(inner, "update", &key, "adopted");
                }
                return Ok(AccountRef::new(key).with_id(id));
            }
            inner.next_id += 1;
            let id = format!("m{}", inner.next_id);
            inner.state.accounts.insert(
                key.clone(),
                MemoryAccount {
                    id: id.clone(),
                    enabled: true,
                    attributes: spec.attributes.clone(),
                    ..Default::default()
                },
            );
            effect(inner, "create", &key, id.clone());
            Ok(AccountRef::new(key).with_id(id))
        })
        .await
    }

    async fn update(&self, spec: &AccountSpec) -> Result<(), ConnectorError> {
        self.call(|inner, name| {
            let key = spec.account.key.clone();
            let a = find(inner, &spec.account).ok_or_else(|| missing(name, &spec.account))?;
            if a.attributes != spec.attributes {
                a.attributes = spec.attributes.clone();
                effect(inner, "update", &key, "");
            }
            Ok(())
        })
        .await
    }

    async fn set_enabled(&self, account: &AccountRef, enabled: bool) -> Result<(), ConnectorError> {
        self.call(|inner, name| {
            let a = find(inner, account).ok_or_else(|| missing(name, account))?;
            if a.enabled != enabled {
                a.enabled = enabled;
                let op = if enabled { "enable" } else { "disable" };
                effect(inner, op, &account.key, "");
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.call(|inner, _| {
            if inner.state.accounts.remove(&account.key).is_some() {
                effect(inner, "delete", &account.key, "");
            }
            Ok(())
        })
        .await
    }

    async fn grant(
        &self,
        account: &AccountRef,
        entitlement: &Entitlement,
    ) -> Result<(), ConnectorError> {
        self.call(|inner, name| {
            let a = find(inner, account).ok_or_else(|| missing(name, account))?;
            if a.entitlements.insert(entitlement.clone()) {
                effect(inner, "grant", &account.key, ent_text(entitlement));
            }
            Ok(())
        })
        .await
    }

    async fn revoke(
        &self,
        account: &AccountRef,
        entitlement: &Entitlement,
    ) -> Result<(), ConnectorError> {
        self.call(|inner, _| {
            let removed = match find(inner, account) {
                Some(a) => a.entitlements.remove(entitlement),
                None => false,
            };
            if removed {
                effect(inner, "revoke", &account.key, ent_text(entitlement));
            }
            Ok(())
        })
        .await
    }

    async fn revoke_sessions(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.call(|inner, _| {
            let n = find(inner, account).map(|a| std::mem::take(&mut a.sessions));
            if let Some(n @ 1..) = n {
                effect(inner, "revoke_sessions", &account.key, n.to_string());
            }
            Ok(())
        })
        .await
    }

    async fn revoke_credentials(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.call(|inner, _| {
            let n = find(inner, account).map(|a| std::mem::take(&mut a.credentials));
            if let Some(n @ 1..) = n {
                effect(inner, "revoke_credentials", &account.key, n.to_string());
            }
            Ok(())
        })
        .await
    }

    async fn transfer_ownership(
        &self,
        account: &AccountRef,
        to: &AccountRef,
    ) -> Result<(), ConnectorError> {
        self.call(|inner, name| {
            let owned = match find(inner, account) {
                Some(a) => std::mem::take(&mut a.owned),
                None => return Ok(()),
            };
            if owned.is_empty() {
                return Ok(());
            }
            let target = find(inner, to).ok_or_else(|| missing(name, to))?;
            let n = owned.len();
            target.owned.extend(owned);
            effect(
                inner,
                "transfer",
                &account.key,
                format!("{n} to {}", to.key),
            );
            Ok(())
        })
        .await
    }

    async fn read(&self, account: &AccountRef) -> Result<Option<AccountState>, ConnectorError> {
        self.call(|inner, _| {
            Ok(inner
                .state
                .accounts
                .get(&account.key)
                .map(|a| state_of(&account.key, a)))
        })
        .await
    }

    /// Pages of [`LIST_PAGE`] accounts in key order; the page token is the last key listed.
    async fn list_accounts(&self, page: Option<&str>) -> Result<AccountPage, ConnectorError> {
        let after = page.map(str::to_string);
        self.call(move |inner, _| {
            use std::ops::Bound;
            let from = match &after {
                Some(k) => Bound::Excluded(k.clone()),
                None => Bound::Unbounded,
            };
            let mut range = inner.state.accounts.range((from, Bound::Unbounded));
            let accounts: Vec<AccountState> = range
                .by_ref()
                .take(LIST_PAGE)
                .map(|(k, a)| state_of(k, a))
                .collect();
            let next = match range.next() {
                Some(_) => accounts.last().map(|a| a.account.key.clone()),
                None => None,
            };
            Ok(AccountPage { accounts, next })
        })
        .await
    }
}

/// Accounts per page of `list_accounts`.
pub const LIST_PAGE: usize = 500;

fn state_of(key: &str, a: &MemoryAccount) -> AccountState {
    AccountState {
        account: AccountRef::new(key).with_id(a.id.clone()),
        enabled: a.enabled,
        attributes: a.attributes.clone(),
        entitlements: a.entitlements.iter().cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        // A minimal executor: the connector's futures only wait on the delay thread.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn list_accounts_pages_in_key_order() {
        let c = MemoryConnector::new("m");
        for i in 0..(LIST_PAGE * 2 + 3) {
            let spec = AccountSpec {
                account: AccountRef::new(format!("u{i:05}")),
                attributes: serde_json::Map::new(),
            };
            block(c.create_or_adopt(&spec)).expect("create");
        }
        let mut keys = Vec::new();
        let mut page: Option<String> = None;
        let mut pages = 0;
        loop {
            let p = block(c.list_accounts(page.as_deref())).expect("list");
            pages += 1;
            keys.extend(p.accounts.into_iter().map(|a| a.account.key));
            match p.next {
                Some(n) => page = Some(n),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(keys.len(), LIST_PAGE * 2 + 3);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn operations_are_idempotent() {
        let m = MemoryConnector::new("app");
        let spec = AccountSpec {
            account: AccountRef::new("ada"),
            attributes: Default::default(),
        };
        let r1 = block(m.create_or_adopt(&spec)).expect("create");
        let r2 = block(m.create_or_adopt(&spec)).expect("adopt");
        assert_eq!(r1, r2);
        let e = Entitlement::new("group", "eng");
        block(m.grant(&r1, &e)).expect("grant");
        block(m.grant(&r1, &e)).expect("grant again");
        block(m.revoke(&r1, &e)).expect("revoke");
        block(m.revoke(&r1, &e)).expect("revoke again");
        block(m.set_enabled(&r1, false)).expect("disable");
        block(m.set_enabled(&r1, false)).expect("disable again");
        let ops: Vec<_> = m.effects().into_iter().map(|e| e.op).collect();
        assert_eq!(ops, vec!["create", "grant", "revoke", "disable"]);
    }

    #[test]
    fn faults_and_file_mirror() {
        let dir = std::env::temp_dir().join(format!("scimhub-mem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("app.json");
        let _ = std::fs::remove_file(&file);
        let m = MemoryConnector::new("app")
            .with_file(&file)
            .with_delay(Duration::from_millis(2));
        m.fail_next([ConnectorError::retryable("app", "busy")]);
        let spec = AccountSpec {
            account: AccountRef::new("ada"),
            attributes: Default::default(),
        };
        assert!(block(m.create_or_adopt(&spec)).is_err());
        block(m.create_or_adopt(&spec)).expect("create");
        let again = MemoryConnector::new("app").with_file(&file);
        assert!(again.account("ada").is_some());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn settings_configure_file_and_delay() {
        let s: MemorySettings = serde_json::from_value(serde_json::json!({})).expect("defaults");
        assert_eq!(s, MemorySettings::default());
        let s: MemorySettings =
            serde_json::from_value(serde_json::json!({"delay_ms": 5})).expect("settings");
        let m = MemoryConnector::from_settings("mem", s);
        assert_eq!((m.name(), m.delay), ("mem", Duration::from_millis(5)));
        assert!(
            serde_json::from_value::<MemorySettings>(serde_json::json!({"dely_ms": 5})).is_err()
        );
    }
}
