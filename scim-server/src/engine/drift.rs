//! Drift reconciliation, the pure part: one listed account ([`AccountState`], from
//! `Connector::list_accounts`) against what the engine recorded and wants for it ([`Recorded`]:
//! the planned [`AccountRecord`], the user's lifecycle state, the attributes the connector
//! manages), as findings; and, for the findings the policy says to fix, the record to plan from
//! so the ordinary diff queues the correcting operations. No I/O: the runner
//! (`jobs::reconcile`) lists, stores and plans.
//!
//! Finding kinds ([`Kind`]):
//!
//! * `orphan`: an account no user of the engine has;
//! * `departed`: an enabled account of a user who left, expired or whose account is planned
//!   disabled or deleted;
//! * `entitlement_outside`: an entitlement the system shows that the user's profiles do not
//!   give (a manual change, an emergency grant);
//! * `missing_account`: a planned, enabled account the system does not have (or has disabled);
//! * `missing_entitlement`: a planned entitlement the system does not show;
//! * `attribute_drift`: a managed attribute (the connector's `attributes`) whose value on the
//!   system differs from the user's.
//!
//! Protected and out-of-scope accounts (what the connector says about them, see
//! [`connectors::ownership`]) give no finding at all, and an account whose user has operations
//! still to run is left out (its record is in flight).

use std::collections::{BTreeSet, HashMap};

use connectors::{AccountRef, AccountState, Entitlement};
use serde::Serialize;
use serde_json::{json, Value};

use super::desired::Doc;
use super::plan::{AccountRecord, Operation};
use crate::policy::OnLeave;

/// What kind of drift a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Orphan,
    Departed,
    EntitlementOutside,
    MissingAccount,
    MissingEntitlement,
    AttributeDrift,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Orphan,
        Kind::Departed,
        Kind::EntitlementOutside,
        Kind::MissingAccount,
        Kind::MissingEntitlement,
        Kind::AttributeDrift,
    ];

    /// The kind as stored and as the policy names it (`crate::policy::DRIFT_KINDS`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Orphan => "orphan",
            Kind::Departed => "departed",
            Kind::EntitlementOutside => "entitlement_outside",
            Kind::MissingAccount => "missing_account",
            Kind::MissingEntitlement => "missing_entitlement",
            Kind::AttributeDrift => "attribute_drift",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether fixing it takes access away (what the blast-radius guard counts).
    pub fn fix_takes_access(self) -> bool {
        matches!(
            self,
            Kind::Orphan | Kind::Departed | Kind::EntitlementOutside
        )
    }
}

/// One finding about one account (and entitlement).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    /// The account's key on the system.
    pub account: String,
    /// The account's system id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<Entitlement>,
    /// The engine's user, when the account has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// What was seen, for the operator.
    pub detail: Value,
}

impl Finding {
    /// The entitlement part of the finding's key (`""` for the account itself).
    pub fn entitlement_key(&self) -> String {
        self.entitlement
            .as_ref()
            .map(entitlement_key)
            .unwrap_or_default()
    }

    /// The key an exception is recorded under.
    pub fn exception_key(&self) -> (String, String, String) {
        (
            self.kind.as_str().to_string(),
            self.account.clone(),
            self.entitlement_key(),
        )
    }
}

impl Finding {
    /// The detail as stored: what was seen, with the entitlement and the account's system id
    /// (so a later decision on the stored finding can act on it, see [`Finding::from_stored`]).
    pub fn stored_detail(&self) -> Value {
        let mut d = match &self.detail {
            Value::Object(m) => m.clone(),
            other => {
                let mut m = serde_json::Map::new();
                m.insert("seen".into(), other.clone());
                m
            }
        };
        if let Some(e) = &self.entitlement {
            d.insert("entitlement".into(), json!(e));
        }
        if let Some(id) = &self.account_id {
            d.insert("account_id".into(), json!(id));
        }
        Value::Object(d)
    }

    /// A finding from its stored form (`None` for a kind this version does not know).
    pub fn from_stored(
        kind: &str,
        account: &str,
        user_id: Option<&str>,
        detail: &Value,
    ) -> Option<Finding> {
        Some(Finding {
            kind: Kind::parse(kind)?,
            account: account.to_string(),
            account_id: detail
                .get("account_id")
                .and_then(Value::as_str)
                .map(str::to_string),
            entitlement: detail
                .get("entitlement")
                .and_then(|e| serde_json::from_value(e.clone()).ok()),
            user_id: user_id.map(str::to_string),
            detail: detail.clone(),
        })
    }
}

/// `kind:id` or `kind:id:role`.
pub fn entitlement_key(e: &Entitlement) -> String {
    match &e.role {
        Some(r) => format!("{}:{}:{r}", e.kind, e.id),
        None => format!("{}:{}", e.kind, e.id),
    }
}

/// What the engine holds about one account on the connector.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recorded {
    pub user_id: String,
    /// The planned record (after every queued operation).
    pub record: AccountRecord,
    /// `engine_users.state` (`active`, `not_started`, `left`, `expired`); `None` for an
    /// account the engine holds without a user (an orphan it disabled).
    pub user_state: Option<String>,
    /// The user has operations on the connector still to run.
    pub in_flight: bool,
}

/// The engine's records of one connector, looked up by account id or key
/// (case-insensitively); remembers which were listed, so the unlisted ones can be checked
/// for missing accounts after the last page.
#[derive(Debug, Default)]
pub struct Index {
    records: Vec<Recorded>,
    seen: Vec<bool>,
    by_key: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
}

impl Index {
    pub fn new(records: Vec<Recorded>) -> Self {
        let mut by_key = HashMap::with_capacity(records.len());
        let mut by_id = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            if !r.record.key.is_empty() {
                by_key.entry(r.record.key.to_lowercase()).or_insert(i);
            }
            if let Some(id) = &r.record.id {
                by_id.entry(id.clone()).or_insert(i);
            }
        }
        Index {
            seen: vec![false; records.len()],
            records,
            by_key,
            by_id,
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The record of a listed account (by id, else by key), marked as listed.
    pub fn take(&mut self, account: &AccountRef) -> Option<&Recorded> {
        let i = account
            .id
            .as_ref()
            .and_then(|id| self.by_id.get(id))
            .or_else(|| self.by_key.get(&account.key.to_lowercase()))
            .copied()?;
        self.seen[i] = true;
        Some(&self.records[i])
    }

    /// Records no page listed.
    pub fn unlisted(&self) -> impl Iterator<Item = &Recorded> {
        self.records
            .iter()
            .zip(&self.seen)
            .filter(|(_, s)| !**s)
            .map(|(r, _)| r)
    }
}

/// What a run makes of one listed account.
#[derive(Debug, Clone, PartialEq)]
pub enum Assessment {
    /// Protected or out of scope (the reason): never touched, never reported.
    Excluded(String),
    /// Its user's record is in flight: checked on a later run.
    InFlight,
    Findings(Vec<Finding>),
}

/// Compares one listed account with what the engine holds.
///
/// `excluded` is the connector's verdict on the account (protected, out of scope);
/// `recorded` the engine's record of it (`None`: an orphan); `desired_attrs` the user's
/// attributes the connector manages (`None`: not compared); `exceptions` the kept findings
/// (kind, account, entitlement key) in force.
pub fn assess(
    listed: &AccountState,
    excluded: Option<String>,
    recorded: Option<&Recorded>,
    desired_attrs: Option<&Doc>,
    exceptions: &BTreeSet<(String, String, String)>,
) -> Assessment {
    if let Some(reason) = excluded {
        return Assessment::Excluded(reason);
    }
    let key = listed.account.key.clone();
    let finding = |kind, entitlement: Option<Entitlement>, user: Option<&str>, detail| Finding {
        kind,
        account: key.clone(),
        account_id: listed.account.id.clone(),
        entitlement,
        user_id: user.map(str::to_string),
        detail,
    };
    let mut out = Vec::new();
    match recorded {
        None => out.push(finding(
            Kind::Orphan,
            None,
            None,
            json!({"enabled": listed.enabled, "entitlements": listed.entitlements.len()}),
        )),
        Some(r) if r.in_flight => return Assessment::InFlight,
        Some(r) => {
            let user = Some(r.user_id.as_str()).filter(|_| r.user_state.is_some());
            let rec = &r.record;
            let wanted = rec.exists && rec.enabled;
            if !wanted {
                if listed.enabled {
                    let kind = if r.user_state.is_none() {
                        // An orphan the engine disabled earlier, enabled again by hand.
                        Kind::Orphan
                    } else {
                        Kind::Departed
                    };
                    out.push(finding(
                        kind,
                        None,
                        user,
                        json!({
                            "user_state": r.user_state,
                            "planned": if rec.exists { "disabled" } else { "deleted" },
                        }),
                    ));
                }
            } else if !listed.enabled {
                out.push(finding(
                    Kind::MissingAccount,
                    None,
                    user,
                    json!({"reason": "the account is disabled on the system"}),
                ));
            } else {
                let held: BTreeSet<&Entitlement> = listed.entitlements.iter().collect();
                for e in &listed.entitlements {
                    if !rec.entitlements.contains(e) {
                        out.push(finding(
                            Kind::EntitlementOutside,
                            Some(e.clone()),
                            user,
                            json!({"reason": "not given by the user's profiles"}),
                        ));
                    }
                }
                for e in &rec.entitlements {
                    if !held.contains(e) {
                        out.push(finding(
                            Kind::MissingEntitlement,
                            Some(e.clone()),
                            user,
                            json!({"reason": "planned but not held"}),
                        ));
                    }
                }
                if let Some(want) = desired_attrs {
                    let differ = drifted_attributes(want, &listed.attributes);
                    if !differ.is_empty() {
                        out.push(finding(
                            Kind::AttributeDrift,
                            None,
                            user,
                            json!({"attributes": differ}),
                        ));
                    }
                }
            }
        }
    }
    out.retain(|f| !exceptions.contains(&f.exception_key()));
    Assessment::Findings(out)
}

/// The finding about a record no page listed: a planned, enabled account that is missing.
pub fn assess_unlisted(
    r: &Recorded,
    exceptions: &BTreeSet<(String, String, String)>,
) -> Option<Finding> {
    if r.in_flight || !r.record.exists || !r.record.enabled || r.user_state.is_none() {
        return None;
    }
    let f = Finding {
        kind: Kind::MissingAccount,
        account: r.record.key.clone(),
        account_id: r.record.id.clone(),
        entitlement: None,
        user_id: Some(r.user_id.clone()),
        detail: json!({"reason": "the system has no such account"}),
    };
    (!exceptions.contains(&f.exception_key())).then_some(f)
}

/// Managed attributes whose listed value the user's value does not cover, by name. Only
/// attributes both sides have are compared (a system reports what it maps; a user without a
/// value is not drift), and a listed value need only be part of the user's (a system keeps the
/// primary email of several, or a name's parts without `formatted`).
pub fn drifted_attributes(want: &Doc, listed: &Doc) -> Vec<String> {
    let mut out = Vec::new();
    for (name, w) in want {
        let got = listed
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v);
        if let Some(g) = got {
            if !g.is_null() && !w.is_null() && !covers(w, g) {
                out.push(name.clone());
            }
        }
    }
    out
}

/// Whether `want` covers `got`: equal scalars; objects whose common members cover; arrays
/// where each listed element is covered by some wanted one.
fn covers(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            g.iter().all(
                |(k, gv)| match w.iter().find(|(wk, _)| wk.eq_ignore_ascii_case(k)) {
                    Some((_, wv)) => covers(wv, gv),
                    None => true,
                },
            )
        }
        (Value::Array(w), Value::Array(g)) => g.iter().all(|gv| w.iter().any(|wv| covers(wv, gv))),
        (Value::Array(w), g) => w.iter().any(|wv| covers(wv, g)),
        (w, g) => w == g,
    }
}

/// The record to plan from so that the ordinary diff queues the corrections of `fixes` (all
/// about the one account of `rec`): what the system holds, where it differs.
pub fn corrected(rec: &AccountRecord, fixes: &[&Finding]) -> AccountRecord {
    let mut out = rec.clone();
    for f in fixes {
        if out.id.is_none() {
            out.id = f.account_id.clone();
        }
        match (f.kind, &f.entitlement) {
            (Kind::Departed | Kind::Orphan, _) => {
                // Enabled on the system: the diff disables (or deletes) it again.
                out.exists = true;
                out.enabled = true;
            }
            (Kind::EntitlementOutside, Some(e)) => {
                out.entitlements.insert(e.clone());
            }
            (Kind::MissingEntitlement, Some(e)) => {
                out.entitlements.remove(e);
            }
            (Kind::MissingAccount, _) => {
                if f.detail.get("reason").and_then(Value::as_str)
                    == Some("the account is disabled on the system")
                {
                    out.enabled = false;
                } else {
                    out = AccountRecord {
                        key: rec.key.clone(),
                        ..Default::default()
                    };
                }
            }
            (Kind::AttributeDrift, _) => out.attributes_hash = String::new(),
            (_, None) => {}
        }
    }
    out
}

/// The operation that ends an orphan account, per the connector's `on_leave`; and the record
/// the engine keeps of it afterwards (so later runs know it).
pub fn orphan_fix(f: &Finding, on_leave: OnLeave) -> (Operation, AccountRecord) {
    let account = AccountRef {
        key: f.account.clone(),
        id: f.account_id.clone(),
    };
    let rec = AccountRecord {
        exists: on_leave == OnLeave::Disable,
        enabled: false,
        key: f.account.clone(),
        id: f.account_id.clone(),
        ..Default::default()
    };
    let op = match on_leave {
        OnLeave::Disable => Operation::SetEnabled {
            account,
            enabled: false,
        },
        OnLeave::Delete => Operation::Delete { account },
    };
    (op, rec)
}

/// One line saying what fixing `f` plans (a dry run prints it; the real run plans it through
/// the ordinary diff, which may add what the policy's leaver steps add to a disable).
pub fn intended(f: &Finding, on_leave: OnLeave) -> String {
    let e = f
        .entitlement
        .as_ref()
        .map(entitlement_key)
        .unwrap_or_default();
    let end = match on_leave {
        OnLeave::Disable => "set_enabled false",
        OnLeave::Delete => "delete",
    };
    match f.kind {
        Kind::Orphan | Kind::Departed => format!("{end} {}", f.account),
        Kind::EntitlementOutside => format!("revoke {} {e}", f.account),
        Kind::MissingEntitlement => format!("grant {} {e}", f.account),
        Kind::MissingAccount => format!("re-plan {}: create_or_adopt or enable", f.account),
        Kind::AttributeDrift => format!("update {}", f.account),
    }
}

/// The engine's user id under which an orphan's correcting operations are queued (and its
/// record kept): orphans have no user.
pub fn orphan_user_id(connector: &str, key: &str) -> String {
    format!("drift-orphan:{connector}:{}", key.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::Operation;

    fn ent(id: &str) -> Entitlement {
        Entitlement::new("group", id)
    }

    fn listed(key: &str, enabled: bool, ents: &[&str]) -> AccountState {
        AccountState {
            account: AccountRef::new(key).with_id(format!("id-{key}")),
            enabled,
            attributes: serde_json::Map::new(),
            entitlements: ents.iter().map(|e| ent(e)).collect(),
        }
    }

    fn recorded(key: &str, state: &str, exists: bool, enabled: bool, ents: &[&str]) -> Recorded {
        Recorded {
            user_id: format!("u-{key}"),
            record: AccountRecord {
                exists,
                enabled,
                key: key.into(),
                id: None,
                attributes_hash: "h".into(),
                entitlements: ents.iter().map(|e| ent(e)).collect(),
                kept_for_records: false,
            },
            user_state: Some(state.into()),
            in_flight: false,
        }
    }

    fn findings(a: Assessment) -> Vec<(Kind, String)> {
        match a {
            Assessment::Findings(f) => f
                .into_iter()
                .map(|f| (f.kind, f.entitlement_key()))
                .collect(),
            other => panic!("expected findings, got {other:?}"),
        }
    }

    const NONE: &BTreeSet<(String, String, String)> = &BTreeSet::new();

    #[test]
    fn kinds_are_the_policys() {
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, crate::policy::DRIFT_KINDS);
        assert_eq!(Kind::parse("orphan"), Some(Kind::Orphan));
    }

    #[test]
    fn an_account_nobody_has_is_an_orphan() {
        let a = assess(&listed("ghost", true, &["eng"]), None, None, None, NONE);
        assert_eq!(findings(a), vec![(Kind::Orphan, String::new())]);
    }

    #[test]
    fn protected_and_out_of_scope_accounts_give_nothing() {
        let a = assess(
            &listed("Administrator", true, &["admins"]),
            Some("protected (matches \"administrator\")".into()),
            None,
            None,
            NONE,
        );
        assert!(matches!(a, Assessment::Excluded(_)));
        // Even an account the engine knows is not judged once the connector excludes it.
        let r = recorded("ann", "left", true, false, &[]);
        let a = assess(
            &listed("ann", true, &[]),
            Some("outside the managed scope".into()),
            Some(&r),
            None,
            NONE,
        );
        assert!(matches!(a, Assessment::Excluded(_)));
    }

    #[test]
    fn an_enabled_account_of_a_leaver_is_departed() {
        let r = recorded("ann", "left", true, false, &[]);
        let a = assess(&listed("ann", true, &["eng"]), None, Some(&r), None, NONE);
        assert_eq!(findings(a), vec![(Kind::Departed, String::new())]);
        // Disabled as planned: nothing.
        let a = assess(&listed("ann", false, &["eng"]), None, Some(&r), None, NONE);
        assert_eq!(findings(a), vec![]);
        // Planned deleted (on_leave = delete) but still enabled.
        let r = recorded("ann", "left", false, false, &[]);
        let a = assess(&listed("ann", true, &[]), None, Some(&r), None, NONE);
        assert_eq!(findings(a), vec![(Kind::Departed, String::new())]);
    }

    #[test]
    fn extra_and_missing_entitlements_of_an_active_user() {
        let r = recorded("ann", "active", true, true, &["eng", "all"]);
        let a = assess(
            &listed("ANN", true, &["all", "prod-admin"]),
            None,
            Some(&r),
            None,
            NONE,
        );
        assert_eq!(
            findings(a),
            vec![
                (Kind::EntitlementOutside, "group:prod-admin".into()),
                (Kind::MissingEntitlement, "group:eng".into()),
            ]
        );
    }

    #[test]
    fn missing_and_disabled_accounts_of_an_active_user() {
        let r = recorded("ann", "active", true, true, &["eng"]);
        let a = assess(&listed("ann", false, &["eng"]), None, Some(&r), None, NONE);
        assert_eq!(findings(a), vec![(Kind::MissingAccount, String::new())]);
        let f = assess_unlisted(&r, NONE).expect("missing");
        assert_eq!((f.kind, f.account.as_str()), (Kind::MissingAccount, "ann"));
        // A leaver's account that is gone is no finding.
        assert_eq!(
            assess_unlisted(&recorded("bob", "left", true, false, &[]), NONE),
            None
        );
    }

    #[test]
    fn attribute_drift_compares_managed_attributes_both_sides_have() {
        let r = recorded("ann", "active", true, true, &[]);
        let want: Doc = serde_json::from_value(json!({
            "displayName": "Ann Smith",
            "emails": [{"value": "ann@x", "type": "work", "primary": true}, {"value": "a@home"}],
            "name": {"givenName": "Ann", "familyName": "Smith", "formatted": "Ann Smith"},
            "title": "Engineer",
        }))
        .expect("a JSON object");
        let mut l = listed("ann", true, &[]);
        l.attributes = serde_json::from_value(json!({
            "displayName": "Ann Smith",
            "emails": [{"value": "ann@x", "primary": true}],
            "name": {"givenName": "Ann", "familyName": "Smith"},
            "dn": "uid=ann,ou=people",
        }))
        .expect("a JSON object");
        let a = assess(&l, None, Some(&r), Some(&want), NONE);
        assert_eq!(findings(a), vec![]);
        l.attributes
            .insert("displayName".into(), json!("Ann Jones"));
        l.attributes
            .insert("emails".into(), json!([{"value": "ann@elsewhere"}]));
        let a = assess(&l, None, Some(&r), Some(&want), NONE);
        match a {
            Assessment::Findings(f) => {
                assert_eq!(f.len(), 1);
                assert_eq!(f[0].kind, Kind::AttributeDrift);
                assert_eq!(f[0].detail["attributes"], json!(["displayName", "emails"]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_kept_exception_is_not_reported() {
        let r = recorded("ann", "active", true, true, &[]);
        let exceptions: BTreeSet<_> = [(
            "entitlement_outside".to_string(),
            "ann".to_string(),
            "group:break-glass".to_string(),
        )]
        .into();
        let a = assess(
            &listed("ann", true, &["break-glass", "other"]),
            None,
            Some(&r),
            None,
            &exceptions,
        );
        assert_eq!(
            findings(a),
            vec![(Kind::EntitlementOutside, "group:other".into())]
        );
    }

    #[test]
    fn in_flight_users_wait() {
        let mut r = recorded("ann", "left", true, false, &[]);
        r.in_flight = true;
        let a = assess(&listed("ann", true, &[]), None, Some(&r), None, NONE);
        assert_eq!(a, Assessment::InFlight);
        assert_eq!(assess_unlisted(&r, NONE), None);
    }

    #[test]
    fn the_index_finds_by_id_or_key_and_remembers_what_was_listed() {
        let mut a = recorded("ann", "active", true, true, &[]);
        a.record.id = Some("dn-ann".into());
        let b = recorded("bob", "active", true, true, &[]);
        let mut idx = Index::new(vec![a, b]);
        assert!(idx
            .take(&AccountRef::new("renamed").with_id("dn-ann"))
            .is_some());
        assert!(idx.take(&AccountRef::new("nobody")).is_none());
        let left: Vec<_> = idx.unlisted().map(|r| r.record.key.clone()).collect();
        assert_eq!(left, vec!["bob"]);
    }

    #[test]
    fn corrections_make_the_diff_undo_the_drift() {
        let rec = recorded("ann", "active", true, true, &["eng"]).record;
        let finding = |kind, e: Option<&str>, detail| Finding {
            kind,
            account: "ann".into(),
            account_id: Some("7".into()),
            entitlement: e.map(ent),
            user_id: Some("u-ann".into()),
            detail,
        };
        let extra = finding(Kind::EntitlementOutside, Some("admin"), json!({}));
        let missing = finding(Kind::MissingEntitlement, Some("eng"), json!({}));
        let drift = finding(Kind::AttributeDrift, None, json!({}));
        let c = corrected(&rec, &[&extra, &missing, &drift]);
        assert_eq!(c.entitlements, [ent("admin")].into());
        assert_eq!(c.attributes_hash, "");
        assert_eq!(c.id.as_deref(), Some("7"));
        let gone = finding(Kind::MissingAccount, None, json!({"reason": "x"}));
        assert!(!corrected(&rec, &[&gone]).exists);
        let left = AccountRecord {
            exists: true,
            enabled: false,
            key: "ann".into(),
            ..Default::default()
        };
        let departed = finding(Kind::Departed, None, json!({}));
        assert!(corrected(&left, &[&departed]).enabled);
    }

    #[test]
    fn a_stored_finding_reads_back() {
        let f = Finding {
            kind: Kind::EntitlementOutside,
            account: "ann".into(),
            account_id: Some("arn:aws:iam::1:user/ann".into()),
            entitlement: Some(Entitlement::new("policy", "arn:aws:iam::aws:policy/Admin")),
            user_id: Some("u1".into()),
            detail: json!({"reason": "x"}),
        };
        let back =
            Finding::from_stored("entitlement_outside", "ann", Some("u1"), &f.stored_detail())
                .expect("known kind");
        assert_eq!(back.entitlement, f.entitlement);
        assert_eq!(back.account_id, f.account_id);
        assert_eq!(back.entitlement_key(), f.entitlement_key());
    }

    #[test]
    fn orphans_are_disabled_or_deleted_per_on_leave() {
        let f = Finding {
            kind: Kind::Orphan,
            account: "ghost".into(),
            account_id: Some("g1".into()),
            entitlement: None,
            user_id: None,
            detail: json!({}),
        };
        let (op, rec) = orphan_fix(&f, OnLeave::Disable);
        assert!(matches!(op, Operation::SetEnabled { enabled: false, .. }));
        assert!(rec.exists && !rec.enabled);
        let (op, rec) = orphan_fix(&f, OnLeave::Delete);
        assert!(matches!(op, Operation::Delete { .. }));
        assert!(!rec.exists);
    }
}
