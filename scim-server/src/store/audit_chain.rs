//! The tamper-evident audit chain over `engine_audit`.
//!
//! # The chain
//!
//! Every entry gets a strictly increasing `seq` (1, 2, 3, … with no gaps) and
//! `hash = hex(SHA-256(canonical form))`, where the canonical form starts with the previous
//! entry's hash (`prev_hash`; the genesis value is 64 `0`s, or a retention checkpoint's hash), so
//! changing, removing, adding or moving any entry breaks every link after it.
//!
//! Appends take the one row of `engine_audit_head` (`SELECT … FOR UPDATE` on PostgreSQL; SQLite's
//! single writer already serialises them), write the entry and move the head, in the caller's
//! transaction: an entry commits or rolls back with the change it records, and concurrent
//! writers take turns instead of forking the chain. The row lock is held from a transaction's
//! first append to its commit, so appends come last in their transactions (the SCIM write's own
//! entry after the engine's plan; the plan's entries after its outbox rows; in a group-commit
//! batch every write's entries after the batch's last write, see [`deferring`]), and the
//! entries of one transaction are contiguous in the chain.
//!
//! # Canonical form (version 1)
//!
//! A byte string: the tag `scimhub-audit-v1,` followed by these fields in this order, each as a
//! netstring (`<decimal byte length>:<UTF-8 bytes>,`):
//!
//! `seq` (decimal, no sign or leading zeros), `prev_hash` (64 lowercase hex digits), `at` (the
//! stored RFC 3339 text: UTC, microseconds, `Z`), `actor`, `user_id`, `connector`, `action`,
//! `outcome`, `detail` (the stored JSON text).
//!
//! An absent `connector` is the single byte `~` instead of a netstring (a netstring starts with
//! a digit, so the two never collide). `detail` is written in canonical JSON (see
//! [`canonical_json`]: object members sorted by key bytes, no insignificant whitespace, strings
//! escaped as serde_json does), and the hash covers the stored text byte for byte, so a verifier
//! needs nothing but the row. Rows written before the chain existed are chained, in id order,
//! when the first store opens after the migration.
//!
//! # Verification
//!
//! [`verify`] walks the chain in `seq` order, a page at a time (bounded memory whatever its
//! length), and reports the first finding: an edited entry (its content no longer hashes to its
//! hash), a deleted one (a gap in `seq`, or later entries renumbered), an inserted one (a row
//! outside the chain, or one whose successor still links past it), a reordered one (stored out
//! of order, or two entries swapped), a truncated tail (the head row or an anchor names a later
//! entry) or an anchor that does not match.
//!
//! Anyone who can write the database can recompute every hash after a change: the chain alone
//! proves only internal consistency. Anchors (the head's `seq:hash`, logged and posted outside
//! the database, see `jobs::audit`) are the outside check: a rewritten or truncated chain no
//! longer contains an anchored `seq:hash`.

use std::cell::RefCell;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Queryable, RunQueryDsl};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::sql::{Bind, Sql};
use super::{fmt_ts, Change, ChangeOp, DbConnection, MemberRemoval, ResourceKind};
use crate::error::{HubError, HubResult};

/// The `prev_hash` of the first entry of a chain that was never pruned.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const TAG: &[u8] = b"scimhub-audit-v1,";
const CHECKPOINT_TAG: &[u8] = b"scimhub-audit-checkpoint-v1,";
/// Rows read per page while walking.
const PAGE: i64 = 2000;

fn netstring(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s.as_bytes());
    out.push(b',');
}

/// The fields an entry's hash covers, as stored.
#[derive(Debug, Clone, Copy)]
pub struct EntryFields<'a> {
    pub seq: i64,
    pub prev_hash: &'a str,
    pub at: &'a str,
    pub actor: &'a str,
    pub user_id: &'a str,
    pub connector: Option<&'a str>,
    pub action: &'a str,
    pub outcome: &'a str,
    pub detail: &'a str,
}

/// The canonical form (version 1, see the module docs).
pub fn canonical(e: &EntryFields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        TAG.len() + 160 + e.actor.len() + e.user_id.len() + e.action.len() + e.detail.len(),
    );
    out.extend_from_slice(TAG);
    netstring(&mut out, &e.seq.to_string());
    netstring(&mut out, e.prev_hash);
    netstring(&mut out, e.at);
    netstring(&mut out, e.actor);
    netstring(&mut out, e.user_id);
    match e.connector {
        Some(c) => netstring(&mut out, c),
        None => out.push(b'~'),
    }
    netstring(&mut out, e.action);
    netstring(&mut out, e.outcome);
    netstring(&mut out, e.detail);
    out
}

/// `hex(SHA-256(canonical(e)))`.
pub fn entry_hash(e: &EntryFields<'_>) -> String {
    hex::encode(Sha256::digest(canonical(e)))
}

/// JSON text with object members sorted by key (UTF-8 bytes) at every depth and no whitespace;
/// strings and numbers as serde_json writes them. The same value always gives the same text.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut members: Vec<(&String, &Value)> = m.iter().collect();
            // Keys are unique, so an unstable sort gives the one order.
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_json_string(s, out),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
    }
}

/// A JSON string literal exactly as serde_json writes it, without building a `Value` for it.
fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    let mut plain = 0;
    for (i, ch) in s.char_indices() {
        let escape = match ch {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{08}' => "\\b",
            '\u{0c}' => "\\f",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{:04x}", ch as u32));
        } else {
            out.push_str(escape);
        }
        plain = i + ch.len_utf8();
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// The chain head: the last entry's `seq` and `hash` (`0` and [`GENESIS`] before the first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

fn lock_head(c: &mut DbConnection) -> HubResult<Head> {
    let sql = match c {
        DbConnection::Postgresql(_) => {
            "SELECT seq, hash FROM engine_audit_head WHERE id = 1 FOR UPDATE"
        }
        DbConnection::Sqlite(_) => "SELECT seq, hash FROM engine_audit_head WHERE id = 1",
    };
    read_head_sql(c, sql)
}

fn read_head_sql(c: &mut DbConnection, sql: &str) -> HubResult<Head> {
    let rows = Sql::<(BigInt, Text)>::new(sql).load::<(i64, String)>(c)?;
    let (seq, hash) = rows
        .into_iter()
        .next()
        .ok_or_else(|| HubError::Backend("the audit chain head row is missing".into()))?;
    Ok(Head { seq, hash })
}

/// The chain head as committed (no lock).
pub fn head(c: &mut DbConnection) -> HubResult<Head> {
    read_head_sql(c, "SELECT seq, hash FROM engine_audit_head WHERE id = 1")
}

fn set_head(c: &mut DbConnection, h: &Head) -> HubResult<()> {
    let mut q = Sql::<()>::new("UPDATE engine_audit_head SET seq = ");
    q.int(h.seq)
        .push(", hash = ")
        .text(h.hash.clone())
        .push(" WHERE id = 1");
    q.execute(c)?;
    Ok(())
}

/// One entry to append; `detail` is written as [`canonical_json`].
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub user_id: &'a str,
    pub connector: Option<&'a str>,
    pub action: &'a str,
    pub outcome: &'a str,
    pub detail: &'a Value,
}

/// Appends `e` to the chain in the caller's transaction; returns its `seq`. Inside a write of
/// a group-commit batch ([`deferring`]) the entry waits for the batch's end instead, and the
/// answer is `None`.
pub fn append(c: &mut DbConnection, e: &NewEntry<'_>) -> HubResult<Option<i64>> {
    let deferred = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(entries) => {
            entries.push(PendingEntry::of(e));
            true
        }
        None => false,
    });
    if deferred {
        return Ok(None);
    }
    append_text(c, &EntryText::of(e)).map(Some)
}

thread_local! {
    /// Entries of the group-commit write running on this thread, while [`deferring`] runs it.
    static DEFERRED: RefCell<Option<Vec<PendingEntry>>> = const { RefCell::new(None) };
}

/// Runs `f` (a write inside a group-commit batch, with its hook) so that every entry it appends
/// waits for the batch's end, and returns them with its result: the batch appends all its
/// writes' entries (each write's in order, the writes in order) after its last write. An append
/// in the middle of a batch would lock the chain head while the batch's later writes still lock
/// rows, the reverse of every other writer's order (rows, then the head), and two transactions
/// taking the two in opposite orders deadlock.
pub(crate) fn deferring<T>(f: impl FnOnce() -> T) -> (T, Vec<PendingEntry>) {
    // Nested, the inner call would take the outer one's entries and leave later ones appended
    // in the middle of the transaction.
    debug_assert!(
        !is_deferring(),
        "audit appends deferred twice on one thread"
    );
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DEFERRED.with(|d| *d.borrow_mut() = None);
        }
    }
    DEFERRED.with(|d| *d.borrow_mut() = Some(Vec::new()));
    let reset = Reset;
    let out = f();
    let entries = DEFERRED.with(|d| d.borrow_mut().take()).unwrap_or_default();
    drop(reset);
    (out, entries)
}

/// Runs `f` in the caller's transaction with its appends held back, then appends them in order:
/// for transactions that lock rows after something they audit (a worker recording an operation
/// and then completing its plan's event, timers firing one after another, a decision that
/// re-plans), so that they take the chain head last, after every row, as the rest of the writers
/// do (the module's first section). Without it such a transaction held the head while it waited
/// for a row another writer held while waiting for the head: PostgreSQL broke the deadlock after
/// `deadlock_timeout`, and every SCIM commit waited for the head meanwhile. Inside a
/// group-commit batch (already held back) it just runs `f`.
pub(crate) fn appending_last<T>(
    c: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> HubResult<T>,
) -> HubResult<T> {
    if is_deferring() {
        return f(c);
    }
    let (out, entries) = deferring(|| f(c));
    let out = out?;
    append_all(c, entries.iter())?;
    Ok(out)
}

/// Whether appends on this thread are being held back ([`deferring`]).
pub(crate) fn is_deferring() -> bool {
    DEFERRED.with(|d| d.borrow().is_some())
}

thread_local! {
    /// Set while [`Store::write_tx_appending_last`](super::Store) runs a write on this thread.
    static APPEND_LAST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with [`appends_last_requested`] true on this thread.
pub(crate) fn requesting_appends_last<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            APPEND_LAST.with(|a| a.set(self.0));
        }
    }
    let _reset = Reset(APPEND_LAST.with(|a| a.replace(true)));
    f()
}

/// Whether the write running on this thread asked for its appends to come after its body and
/// the engine's hook (see `Store::write_body_in`).
pub(crate) fn appends_last_requested() -> bool {
    APPEND_LAST.with(std::cell::Cell::get)
}

/// An entry as it is stored: timestamp and `detail` already in their text forms.
struct EntryText<'a> {
    at: String,
    actor: &'a str,
    user_id: &'a str,
    connector: Option<&'a str>,
    action: &'a str,
    outcome: &'a str,
    detail: std::borrow::Cow<'a, str>,
}

impl<'a> EntryText<'a> {
    fn of(e: &NewEntry<'a>) -> Self {
        EntryText {
            at: fmt_ts(e.at),
            actor: e.actor,
            user_id: e.user_id,
            connector: e.connector,
            action: e.action,
            outcome: e.outcome,
            detail: canonical_json(e.detail).into(),
        }
    }
}

fn append_text(c: &mut DbConnection, e: &EntryText<'_>) -> HubResult<i64> {
    if let DbConnection::Postgresql(_) = c {
        if pg_hashes_in_sql(c)? {
            return append_pg(c, e);
        }
    }
    let head = lock_head(c)?;
    let new_head = insert_entries(c, &head, std::slice::from_ref(e))?;
    let seq = new_head.seq;
    set_head(c, &new_head)?;
    Ok(seq)
}

/// Rows per multi-row INSERT of [`insert_entries`] (ten bound values each, far below SQLite's
/// limit of 32,766).
const INSERT_ROWS: usize = 64;

/// Inserts `entries` as the entries after `head`, in order (not moving the head row); returns
/// the new head. Several rows go in one statement: on SQLite a statement's fixed cost (binding,
/// the statement cache lookup, a VDBE run) is a good part of a small row's.
fn insert_entries(c: &mut DbConnection, head: &Head, entries: &[EntryText<'_>]) -> HubResult<Head> {
    let (inserts, head) = entry_inserts(head, entries);
    for q in inserts {
        q.execute(c)?;
    }
    Ok(head)
}

/// The statements of [`insert_entries`], and the head after them.
fn entry_inserts(head: &Head, entries: &[EntryText<'_>]) -> (Vec<Sql<()>>, Head) {
    let mut head = head.clone();
    let mut inserts = Vec::with_capacity(entries.len().div_ceil(INSERT_ROWS));
    for chunk in entries.chunks(INSERT_ROWS) {
        let mut q = Sql::<()>::new(
            "INSERT INTO engine_audit (seq, at, actor, user_id, connector, action, outcome, \
             detail, prev_hash, hash) VALUES ",
        );
        for (i, e) in chunk.iter().enumerate() {
            let seq = head.seq + 1;
            let hash = entry_hash(&EntryFields {
                seq,
                prev_hash: &head.hash,
                at: &e.at,
                actor: e.actor,
                user_id: e.user_id,
                connector: e.connector,
                action: e.action,
                outcome: e.outcome,
                detail: &e.detail,
            });
            q.push(if i == 0 { "(" } else { ", (" })
                .int(seq)
                .push(", ")
                .text(e.at.as_str())
                .push(", ")
                .text(e.actor)
                .push(", ")
                .text(e.user_id)
                .push(", ")
                .bind(Bind::OptText(e.connector.map(str::to_string)))
                .push(", ")
                .text(e.action)
                .push(", ")
                .text(e.outcome)
                .push(", ")
                .text(&*e.detail)
                .push(", ")
                .text(std::mem::take(&mut head.hash))
                .push(", ")
                .text(hash.as_str())
                .push(")");
            head = Head { seq, hash };
        }
        inserts.push(q);
    }
    (inserts, head)
}

/// Whether PostgreSQL can compute entry hashes itself: its `sha256` sees the text as UTF-8
/// bytes (as [`canonical`] does) only when the database's encoding is UTF8. Asked once per
/// process: a process opens one database.
fn pg_hashes_in_sql(c: &mut DbConnection) -> HubResult<bool> {
    static UTF8: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if let Some(v) = UTF8.get() {
        return Ok(*v);
    }
    let enc = Sql::<Text>::new("SELECT CAST(current_setting('server_encoding') AS TEXT)")
        .get_result::<String>(c)?;
    Ok(*UTF8.get_or_init(|| enc.eq_ignore_ascii_case("UTF8")))
}

/// [`append`] on PostgreSQL in one statement, so one round trip instead of three.
fn append_pg(c: &mut DbConnection, e: &EntryText<'_>) -> HubResult<i64> {
    append_all_pg(c, std::slice::from_ref(e))
}

/// Appends `entries` (at least one) on PostgreSQL in one statement, one round trip where
/// reading the head, inserting and moving the head would take three: it locks and reads the
/// head, chains the entries after it with their hashes computed by the server over the
/// canonical form (netstrings of `octet_length`, the same bytes [`canonical`] hashes; [`verify`]
/// recomputes them in Rust, so a mismatch could not go unnoticed), inserts them and moves the
/// head to the last. Returns the last entry's `seq`.
fn append_all_pg(c: &mut DbConnection, entries: &[EntryText<'_>]) -> HubResult<i64> {
    // Each entry's values are bound once, in row `n` of `v`, and referred to by name.
    let mut q = Sql::<BigInt>::new(
        "WITH RECURSIVE v(n, at, actor, user_id, connector, action, outcome, detail) AS (VALUES ",
    );
    for (n, e) in entries.iter().enumerate() {
        q.push(if n == 0 { "(" } else { ", (" })
            .int(n as i64 + 1)
            .push(", CAST(")
            .text(e.at.as_str())
            .push(" AS TEXT), CAST(")
            .text(e.actor)
            .push(" AS TEXT), CAST(")
            .text(e.user_id)
            .push(" AS TEXT), CAST(")
            .bind(Bind::OptText(e.connector.map(str::to_string)))
            .push(" AS TEXT), CAST(")
            .text(e.action)
            .push(" AS TEXT), CAST(")
            .text(e.outcome)
            .push(" AS TEXT), CAST(")
            .text(&*e.detail)
            .push(" AS TEXT))");
    }
    q.push(
        "), \
         h AS (SELECT seq, hash FROM engine_audit_head WHERE id = 1 FOR UPDATE), \
         chain(n, seq, prev, hash) AS (\
             SELECT CAST(0 AS BIGINT), h.seq, CAST(NULL AS TEXT), h.hash FROM h \
             UNION ALL \
             SELECT v.n, chain.seq + 1, chain.hash, encode(sha256(convert_to('scimhub-audit-v1,' \
               || octet_length((chain.seq + 1)::text) || ':' || (chain.seq + 1)::text || ',' \
               || octet_length(chain.hash) || ':' || chain.hash || ',' \
               || octet_length(v.at) || ':' || v.at || ',' \
               || octet_length(v.actor) || ':' || v.actor || ',' \
               || octet_length(v.user_id) || ':' || v.user_id || ',' \
               || CASE WHEN v.connector IS NULL THEN '~' \
                  ELSE octet_length(v.connector) || ':' || v.connector || ',' END \
               || octet_length(v.action) || ':' || v.action || ',' \
               || octet_length(v.outcome) || ':' || v.outcome || ',' \
               || octet_length(v.detail) || ':' || v.detail || ',', 'UTF8')), 'hex') \
             FROM chain JOIN v ON v.n = chain.n + 1), \
         ins AS (INSERT INTO engine_audit \
               (seq, at, actor, user_id, connector, action, outcome, detail, prev_hash, hash) \
             SELECT chain.seq, v.at, v.actor, v.user_id, v.connector, v.action, v.outcome, \
               v.detail, chain.prev, chain.hash \
             FROM chain JOIN v ON v.n = chain.n) \
         UPDATE engine_audit_head SET seq = last.seq, hash = last.hash \
         FROM (SELECT seq, hash FROM chain ORDER BY n DESC LIMIT 1) AS last \
         WHERE engine_audit_head.id = 1 RETURNING last.seq",
    );
    let rows = q.load::<i64>(c)?;
    rows.into_iter()
        .next()
        .ok_or_else(|| HubError::Backend("the audit chain head row is missing".into()))
}

/// Chains rows written before the chain existed (`seq` NULL), in id order, once: only while
/// the chain has no entry and no checkpoint. Afterwards a row outside the chain is a finding of
/// [`verify`], never adopted. Returns how many rows it chained.
pub fn seal_legacy(c: &mut DbConnection) -> HubResult<u64> {
    use diesel::Connection;
    c.transaction::<_, HubError, _>(|c| {
        let mut head = lock_head(c)?;
        if head.seq != 0 || latest_checkpoint(c)?.is_some() {
            return Ok(0);
        }
        let mut sealed = 0u64;
        loop {
            let mut q = Sql::<ChainRowSql>::new(&format!(
                "SELECT {ROW_COLUMNS} FROM engine_audit WHERE seq IS NULL ORDER BY id"
            ));
            q.limit(PAGE);
            let rows = q.load::<ChainRow>(c)?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let seq = head.seq + 1;
                let hash = entry_hash(&r.fields_as(seq, &head.hash));
                let mut u = Sql::<()>::new("UPDATE engine_audit SET seq = ");
                u.int(seq)
                    .push(", prev_hash = ")
                    .text(head.hash.clone())
                    .push(", hash = ")
                    .text(hash.clone())
                    .push(" WHERE id = ")
                    .int(r.id);
                u.execute(c)?;
                head = Head { seq, hash };
                sealed += 1;
            }
        }
        if sealed > 0 {
            set_head(c, &head)?;
        }
        Ok(sealed)
    })
}

thread_local! {
    static REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// While alive, SCIM writes on this thread are audited with this request id (the service sets
/// it around its store calls, which run on the thread that calls them).
#[derive(Debug)]
pub struct RequestScope {
    previous: Option<String>,
}

/// Enters a [`RequestScope`].
pub fn request_scope(request_id: &str) -> RequestScope {
    let previous = REQUEST_ID.with(|r| r.replace(Some(request_id.to_string())));
    RequestScope { previous }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        REQUEST_ID.with(|r| *r.borrow_mut() = previous);
    }
}

fn current_request_id() -> Option<String> {
    REQUEST_ID.with(|r| r.borrow().clone())
}

/// Attribute names whose values differ between `before` and `after` (extension attributes as
/// `urn:…:attr`), sorted. Names only: values (a password above all) never reach the audit.
fn changed_attributes(before: Option<&super::Doc>, after: Option<&super::Doc>) -> Vec<String> {
    let (b, a) = match (before, after) {
        (Some(b), Some(a)) => (b, a),
        // A create or a delete: every attribute of the one side (the common case, so without
        // looking each key up on the other side).
        (Some(doc), None) | (None, Some(doc)) => {
            let mut keys: Vec<&String> = doc.keys().collect();
            keys.sort();
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                match doc.get(k) {
                    _ if k.eq_ignore_ascii_case("schemas") => {}
                    Some(Value::Object(o)) if k.starts_with("urn:") => {
                        out.extend(o.keys().map(|sub| format!("{k}:{sub}")));
                    }
                    _ => out.push(k.clone()),
                }
            }
            return out;
        }
        (None, None) => return Vec::new(),
    };
    let mut out = Vec::new();
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        if k.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let (x, y) = (b.get(k), a.get(k));
        if x == y {
            continue;
        }
        match (x, y) {
            (Some(Value::Object(xo)), Some(Value::Object(yo))) if k.starts_with("urn:") => {
                for sub in changed_attributes(Some(xo), Some(yo)) {
                    out.push(format!("{k}:{sub}"));
                }
            }
            (None, Some(Value::Object(yo))) if k.starts_with("urn:") => {
                out.extend(yo.keys().map(|sub| format!("{k}:{sub}")));
            }
            (Some(Value::Object(xo)), None) if k.starts_with("urn:") => {
                out.extend(xo.keys().map(|sub| format!("{k}:{sub}")));
            }
            _ => out.push(k.clone()),
        }
    }
    out
}

/// The names [`changed_attributes`] gives for a create or a delete (every attribute of `doc`),
/// written straight into the detail as JSON strings: every SCIM create comes here, and the
/// names need no list of their own.
fn write_every_attribute(doc: &super::Doc, d: &mut String) {
    let mut keys: Vec<&String> = doc.keys().collect();
    keys.sort();
    let mut first = true;
    let mut name = String::new();
    for k in keys {
        if k.eq_ignore_ascii_case("schemas") {
            continue;
        }
        match doc.get(k) {
            Some(Value::Object(o)) if k.starts_with("urn:") => {
                for sub in o.keys() {
                    if !first {
                        d.push(',');
                    }
                    first = false;
                    name.clear();
                    name.push_str(k);
                    name.push(':');
                    name.push_str(sub);
                    write_json_string(&name, d);
                }
            }
            _ => {
                if !first {
                    d.push(',');
                }
                first = false;
                write_json_string(k, d);
            }
        }
    }
}

/// Most member ids listed in one entry; the counts are always complete.
const MEMBERS_LISTED: usize = 100;

/// An entry built now and appended later in the same transaction: a SCIM write's own entry on
/// the group-commit writer waits for the end of its batch ([`append_all`]). `detail` is already
/// canonical JSON.
#[derive(Debug, Clone)]
pub(crate) struct PendingEntry {
    at: DateTime<Utc>,
    actor: String,
    user_id: String,
    connector: Option<String>,
    action: std::borrow::Cow<'static, str>,
    outcome: std::borrow::Cow<'static, str>,
    detail: String,
}

impl PendingEntry {
    fn of(e: &NewEntry<'_>) -> Self {
        PendingEntry {
            at: e.at,
            actor: e.actor.to_string(),
            user_id: e.user_id.to_string(),
            connector: e.connector.map(str::to_string),
            action: e.action.to_string().into(),
            outcome: e.outcome.to_string().into(),
            detail: canonical_json(e.detail),
        }
    }

    fn as_text(&self) -> EntryText<'_> {
        EntryText {
            at: fmt_ts(self.at),
            actor: &self.actor,
            user_id: &self.user_id,
            connector: self.connector.as_deref(),
            action: &self.action,
            outcome: &self.outcome,
            detail: self.detail.as_str().into(),
        }
    }
}

/// Appends the audit entry of one SCIM write (see [`scim_write_entry`]).
pub(crate) fn append_scim_write(
    c: &mut DbConnection,
    change: &Change,
    now: DateTime<Utc>,
) -> HubResult<i64> {
    append_text(c, &scim_write_entry(change, now).as_text())
}

/// Appends `entries` in order, in the caller's transaction. On SQLite the head is read once
/// and written once for all of them: the group-commit writer appends its batch's SCIM write
/// entries here after its last write, so the chain's pages are neither copied into each
/// write's savepoint journal (when the batch is guarded) nor its head row moved once per write.
pub(crate) fn append_all<'a>(
    c: &mut DbConnection,
    entries: impl IntoIterator<Item = &'a PendingEntry>,
) -> HubResult<()> {
    let texts: Vec<EntryText<'_>> = entries.into_iter().map(PendingEntry::as_text).collect();
    if texts.is_empty() {
        return Ok(());
    }
    if let DbConnection::Postgresql(_) = c {
        if texts.len() <= INSERT_ROWS && pg_hashes_in_sql(c)? {
            // A batch's entries in one statement: one round trip where three were.
            return append_all_pg(c, &texts).map(drop);
        }
    }
    let head = lock_head(c)?;
    let (inserts, head) = entry_inserts(&head, &texts);
    if let (DbConnection::Postgresql(_), [insert]) = (&*c, inserts.as_slice()) {
        // Hashed here (a database not in UTF8): the rows and the head's move in one statement.
        let mut q = Sql::<()>::new("WITH ins AS (");
        q.append(insert)
            .push(") UPDATE engine_audit_head SET seq = ")
            .int(head.seq)
            .push(", hash = ")
            .text(head.hash.as_str())
            .push(" WHERE id = 1");
        q.execute(c)?;
        return Ok(());
    }
    for q in inserts {
        q.execute(c)?;
    }
    set_head(c, &head)
}

/// The audit entry of one SCIM write: who (the client: token name or JWT client), which request,
/// which resource, which attributes changed (names only) and which members moved. Built while
/// the write runs (the request id is the calling thread's). Its detail is written directly in
/// canonical form (members sorted by key, see [`canonical_json`]): this runs for every SCIM
/// write, and building a `Value` to sort it cost more than the rest of the entry.
pub(crate) fn scim_write_entry(change: &Change, now: DateTime<Utc>) -> PendingEntry {
    let action = match (change.kind, change.op) {
        (ResourceKind::User, ChangeOp::Create) => "scim.user.create",
        (ResourceKind::User, ChangeOp::Replace) => "scim.user.replace",
        (ResourceKind::User, ChangeOp::Update) => "scim.user.update",
        (ResourceKind::User, ChangeOp::Delete) => "scim.user.delete",
        (ResourceKind::User, ChangeOp::Members) => "scim.user.members",
        (ResourceKind::Group, ChangeOp::Create) => "scim.group.create",
        (ResourceKind::Group, ChangeOp::Replace) => "scim.group.replace",
        (ResourceKind::Group, ChangeOp::Update) => "scim.group.update",
        (ResourceKind::Group, ChangeOp::Delete) => "scim.group.delete",
        (ResourceKind::Group, ChangeOp::Members) => "scim.group.members",
    };
    // Keys in byte order: changed, id, membersAdded, membersRemoved, request, resourceType.
    let mut d = String::with_capacity(160);
    d.push('{');
    if change.op != ChangeOp::Members {
        d.push_str("\"changed\":[");
        match (change.before.as_ref(), change.after.as_ref()) {
            (Some(doc), None) | (None, Some(doc)) => write_every_attribute(doc, &mut d),
            (before, after) => {
                for (i, name) in changed_attributes(before, after).iter().enumerate() {
                    if i > 0 {
                        d.push(',');
                    }
                    write_json_string(name, &mut d);
                }
            }
        }
        d.push_str("],");
    }
    d.push_str("\"id\":");
    write_json_string(&change.id, &mut d);
    let write_ids = |d: &mut String, ids: &mut dyn Iterator<Item = &String>, count: usize| {
        d.push_str("{\"count\":");
        d.push_str(&count.to_string());
        d.push_str(",\"ids\":[");
        for (i, id) in ids.take(MEMBERS_LISTED).enumerate() {
            if i > 0 {
                d.push(',');
            }
            write_json_string(id, d);
        }
        d.push_str("]}");
    };
    if !change.members_added.is_empty() {
        d.push_str(",\"membersAdded\":");
        write_ids(
            &mut d,
            &mut change.members_added.iter(),
            change.members_added.len(),
        );
    }
    match &change.members_removed {
        MemberRemoval::None => {}
        MemberRemoval::All => d.push_str(",\"membersRemoved\":\"all\""),
        MemberRemoval::Ids(ids) => {
            d.push_str(",\"membersRemoved\":");
            write_ids(&mut d, &mut ids.iter(), ids.len());
        }
    }
    d.push_str(",\"request\":");
    match current_request_id() {
        Some(r) => write_json_string(&r, &mut d),
        None => d.push_str("null"),
    }
    d.push_str(",\"resourceType\":");
    write_json_string(change.kind.as_str(), &mut d);
    d.push('}');
    let user_id = match change.kind {
        ResourceKind::User => change.id.as_str(),
        ResourceKind::Group => "",
    };
    PendingEntry {
        at: now,
        actor: change.client.as_deref().unwrap_or("hub").to_string(),
        user_id: user_id.to_string(),
        connector: None,
        action: action.into(),
        outcome: "ok".into(),
        detail: d,
    }
}

// ---- reading the chain -------------------------------------------------------------------

const ROW_COLUMNS: &str =
    "id, seq, at, actor, user_id, connector, action, outcome, detail, prev_hash, hash";

type ChainRowSql = (
    BigInt,
    Nullable<BigInt>,
    Text,
    Text,
    Text,
    Nullable<Text>,
    Text,
    Text,
    Text,
    Nullable<Text>,
    Nullable<Text>,
);

/// An `engine_audit` row as stored, chain columns included.
#[derive(Debug, Clone, PartialEq, Queryable, Serialize)]
pub struct ChainRow {
    #[serde(skip)]
    pub id: i64,
    pub seq: Option<i64>,
    pub at: String,
    pub actor: String,
    pub user_id: String,
    pub connector: Option<String>,
    pub action: String,
    pub outcome: String,
    /// JSON text.
    #[serde(serialize_with = "raw_json")]
    pub detail: String,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

fn raw_json<S: serde::Serializer>(detail: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<Value>(detail) {
        Ok(v) => v.serialize(s),
        Err(_) => s.serialize_str(detail),
    }
}

impl ChainRow {
    fn fields_as<'a>(&'a self, seq: i64, prev_hash: &'a str) -> EntryFields<'a> {
        EntryFields {
            seq,
            prev_hash,
            at: &self.at,
            actor: &self.actor,
            user_id: &self.user_id,
            connector: self.connector.as_deref(),
            action: &self.action,
            outcome: &self.outcome,
            detail: &self.detail,
        }
    }

    /// Whether the row's content hashes to its stored hash when taken as entry `seq`.
    fn hashes_as(&self, seq: i64) -> bool {
        match (&self.prev_hash, &self.hash) {
            (Some(p), Some(h)) => entry_hash(&self.fields_as(seq, p)) == *h,
            _ => false,
        }
    }
}

/// Rows in `seq` order from `after` (exclusive) to `to` (inclusive), a page at a time.
struct Walk<'c> {
    c: &'c mut DbConnection,
    after: i64,
    to: Option<i64>,
    page: std::collections::VecDeque<ChainRow>,
    done: bool,
}

impl<'c> Walk<'c> {
    fn new(c: &'c mut DbConnection, after: i64, to: Option<i64>) -> Self {
        Walk {
            c,
            after,
            to,
            page: Default::default(),
            done: false,
        }
    }

    fn fill(&mut self) -> HubResult<()> {
        if !self.page.is_empty() || self.done {
            return Ok(());
        }
        let mut q = Sql::<ChainRowSql>::new(&format!(
            "SELECT {ROW_COLUMNS} FROM engine_audit WHERE seq > "
        ));
        q.int(self.after);
        // One past `to`, so the entry at `to` has its successor to look at.
        if let Some(to) = self.to {
            q.push(" AND seq <= ").int(to.saturating_add(1));
        }
        q.push(" ORDER BY seq");
        q.limit(PAGE);
        let rows = q.load::<ChainRow>(self.c)?;
        if (rows.len() as i64) < PAGE {
            self.done = true;
        }
        if let Some(last) = rows.last().and_then(|r| r.seq) {
            self.after = last;
        }
        self.page.extend(rows);
        Ok(())
    }

    fn next(&mut self) -> HubResult<Option<ChainRow>> {
        self.fill()?;
        Ok(self.page.pop_front())
    }

    fn peek(&mut self) -> HubResult<Option<&ChainRow>> {
        self.fill()?;
        Ok(self.page.front())
    }
}

// ---- checkpoints and retention -------------------------------------------------------------

/// What a pruned prefix leaves: its last entry's `seq` and `hash`, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Queryable)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    pub at: String,
    /// Entries removed by this pruning.
    pub pruned: i64,
    /// hex HMAC-SHA256 over the checkpoint's canonical form, with `[audit] checkpoint_key`.
    pub mac: String,
}

fn checkpoint_mac(key: &[u8], seq: i64, hash: &str, at: &str, pruned: i64) -> String {
    let mut msg = CHECKPOINT_TAG.to_vec();
    netstring(&mut msg, &seq.to_string());
    netstring(&mut msg, hash);
    netstring(&mut msg, at);
    netstring(&mut msg, &pruned.to_string());
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; keep a deterministic answer rather than panic.
        Err(_) => return String::new(),
    };
    m.update(&msg);
    hex::encode(m.finalize().into_bytes())
}

/// The newest checkpoint (the one verification starts from).
pub fn latest_checkpoint(c: &mut DbConnection) -> HubResult<Option<Checkpoint>> {
    let mut q = Sql::<(BigInt, Text, Text, BigInt, Text)>::new(
        "SELECT seq, hash, at, pruned, mac FROM engine_audit_checkpoints ORDER BY seq DESC",
    );
    q.limit(1);
    Ok(q.load::<Checkpoint>(c)?.into_iter().next())
}

/// Removes the longest prefix of the chain whose entries are all older than `before`, leaving
/// a checkpoint signed with `key`, and records the pruning as an entry. Returns the checkpoint,
/// or `None` when nothing was old enough. Run it in a transaction.
pub fn prune(
    c: &mut DbConnection,
    before: DateTime<Utc>,
    key: &[u8],
    actor: &str,
    now: DateTime<Utc>,
) -> HubResult<Option<Checkpoint>> {
    let head = lock_head(c)?;
    // The first entry that must stay; everything before it goes.
    let mut q = Sql::<Nullable<BigInt>>::new("SELECT MIN(seq) FROM engine_audit WHERE at >= ");
    q.text(fmt_ts(before));
    let keep_from = q.load::<Option<i64>>(c)?.into_iter().next().flatten();
    // Keep the newest entry at least, so the head stays a row one can read.
    let through = keep_from.map_or(head.seq - 1, |k| k - 1).min(head.seq - 1);
    let floor = latest_checkpoint(c)?.map_or(0, |cp| cp.seq);
    if through <= floor {
        return Ok(None);
    }
    let mut q = Sql::<Nullable<Text>>::new("SELECT hash FROM engine_audit WHERE seq = ");
    q.int(through);
    let hash = q
        .load::<Option<String>>(c)?
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| {
            HubError::Backend(format!(
                "audit entry {through} is missing or unchained; run `scimhub audit verify` before pruning"
            ))
        })?;
    let mut d = Sql::<()>::new("DELETE FROM engine_audit WHERE seq <= ");
    d.int(through);
    let pruned = d.execute(c)? as i64;
    let at = fmt_ts(now);
    let cp = Checkpoint {
        mac: checkpoint_mac(key, through, &hash, &at, pruned),
        seq: through,
        hash,
        at,
        pruned,
    };
    let mut i = Sql::<()>::new(
        "INSERT INTO engine_audit_checkpoints (seq, hash, at, pruned, mac) VALUES (",
    );
    i.int(cp.seq)
        .push(", ")
        .text(cp.hash.clone())
        .push(", ")
        .text(cp.at.clone())
        .push(", ")
        .int(cp.pruned)
        .push(", ")
        .text(cp.mac.clone())
        .push(")");
    i.execute(c)?;
    append(
        c,
        &NewEntry {
            at: now,
            actor,
            user_id: "",
            connector: None,
            action: "audit.prune",
            outcome: "ok",
            detail: &serde_json::json!({
                "through": cp.seq,
                "hash": cp.hash,
                "pruned": cp.pruned,
                "before": fmt_ts(before),
            }),
        },
    )?;
    Ok(Some(cp))
}

// ---- verification ---------------------------------------------------------------------------

/// An outside record of the chain head: entry `seq` had `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
}

impl std::str::FromStr for Anchor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (seq, hash) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: an anchor is SEQ:HASH"))?;
        let seq = seq
            .parse::<i64>()
            .map_err(|_| format!("`{s}`: SEQ is not a number"))?;
        let hash = hash.trim().to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{s}`: HASH is 64 hex digits"));
        }
        Ok(Anchor { seq, hash })
    }
}

/// What [`verify`] checks.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// First entry to check (its predecessor's hash is taken as stored).
    pub from: Option<i64>,
    /// Last entry to check.
    pub to: Option<i64>,
    pub anchors: Vec<Anchor>,
    /// `[audit] checkpoint_key`: checks the checkpoint's signature when given.
    pub checkpoint_key: Option<Vec<u8>>,
}

/// The first thing wrong with the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// Entry `seq`'s content no longer hashes to its hash (changed after it was written).
    Edited { seq: i64 },
    /// Entry `seq` was changed and its hash recomputed: its successor no longer links to it.
    EditedRehashed { seq: i64 },
    /// Entries `from..=to` are missing.
    Deleted { from: i64, to: i64 },
    /// Entry `seq` is not part of the chain as written (its successor links past it), or `seq`
    /// is taken twice.
    Inserted { seq: i64 },
    /// A row outside the chain (no `seq` or `hash`): added by hand.
    Unchained { row_id: i64 },
    /// Entry `seq` is stored out of order (swapped with a neighbour, or renumbered).
    Reordered { seq: i64 },
    /// The chain ends at `last` but the head row or an anchor names entry `expected`.
    Truncated { last: i64, expected: i64 },
    /// Entry `seq` hashes to something else than an anchor taken when it was written.
    AnchorMismatch {
        seq: i64,
        anchored: String,
        found: String,
    },
    /// The chain has more entries than the head row records (entries appended by hand).
    AppendedPastHead { head: i64, last: i64 },
    /// The checkpoint's signature does not match (`checkpoint_key`).
    CheckpointForged { seq: i64 },
    /// A checkpoint exists but no key was given to check it. Pruning always signs its
    /// checkpoint, so one that cannot be checked may have been written by hand to start the
    /// walk past rewritten (or deleted) entries, and past the anchors that name them.
    CheckpointUnverifiable { seq: i64 },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Edited { seq } => write!(f, "entry {seq} was edited: its content no longer matches its hash"),
            Finding::EditedRehashed { seq } => write!(
                f,
                "entry {seq} was edited and its hash recomputed: the next entry no longer links to it"
            ),
            Finding::Deleted { from, to } if from == to => write!(f, "entry {from} was deleted"),
            Finding::Deleted { from, to } => write!(f, "entries {from} to {to} were deleted"),
            Finding::Inserted { seq } => write!(f, "entry {seq} was inserted: it is not part of the chain as written"),
            Finding::Unchained { row_id } => {
                write!(f, "row id {row_id} was inserted outside the chain (no seq or hash)")
            }
            Finding::Reordered { seq } => write!(f, "entry {seq} is out of order (entries were reordered)"),
            Finding::Truncated { last, expected } => write!(
                f,
                "the chain was truncated: it ends at entry {last} but entry {expected} was recorded"
            ),
            Finding::AnchorMismatch { seq, anchored, found } => write!(
                f,
                "entry {seq} does not match its anchor (anchored {anchored}, found {found}): the chain was rewritten at or before it"
            ),
            Finding::AppendedPastHead { head, last } => write!(
                f,
                "entries {} to {last} were appended without moving the chain head (head is {head})",
                head + 1
            ),
            Finding::CheckpointForged { seq } => {
                write!(f, "the retention checkpoint at entry {seq} has an invalid signature")
            }
            Finding::CheckpointUnverifiable { seq } => write!(
                f,
                "a retention checkpoint at entry {seq} exists but no [audit] checkpoint_key was \
                 given to check its signature: configure the key that pruning signs with"
            ),
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub checked: u64,
    /// The first and last entries walked.
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub head: Head,
    pub checkpoint: Option<Checkpoint>,
    /// Whether the checkpoint's signature was checked (a key was given).
    pub checkpoint_signature_checked: bool,
    pub anchors_checked: usize,
    /// Anchors of entries at or before a valid checkpoint other than its own entry: pruned,
    /// so nothing is left to check them against.
    pub anchors_pruned: usize,
    /// Anchors of entries kept but outside the range walked (`--from`, `--to`): not checked.
    pub anchors_outside_range: usize,
    pub finding: Option<Finding>,
}

/// Walks the chain (see the module docs) and reports the first finding.
pub fn verify(c: &mut DbConnection, o: &VerifyOptions) -> HubResult<VerifyReport> {
    let head = head(c)?;
    let checkpoint = latest_checkpoint(c)?;
    let mut report = VerifyReport {
        ok: false,
        checked: 0,
        first: None,
        last: None,
        head: head.clone(),
        checkpoint: checkpoint.clone(),
        checkpoint_signature_checked: false,
        anchors_checked: 0,
        anchors_pruned: 0,
        anchors_outside_range: 0,
        finding: None,
    };
    let base = checkpoint.as_ref().map_or(0, |cp| cp.seq);
    // The walk starts at the checkpoint and anchors before it are not checked: only a
    // checkpoint whose signature holds may decide that.
    if let Some(cp) = &checkpoint {
        let Some(key) = &o.checkpoint_key else {
            report.finding = Some(Finding::CheckpointUnverifiable { seq: cp.seq });
            return Ok(report);
        };
        report.checkpoint_signature_checked = true;
        if checkpoint_mac(key, cp.seq, &cp.hash, &cp.at, cp.pruned) != cp.mac {
            report.finding = Some(Finding::CheckpointForged { seq: cp.seq });
            return Ok(report);
        }
    }
    // Where the walk starts: the checkpoint (or genesis), or the entry before `from`.
    let start = o.from.map_or(base, |f| (f - 1).max(base));
    let mut prev = if start == base {
        Head {
            seq: base,
            hash: checkpoint
                .as_ref()
                .map_or_else(|| GENESIS.to_string(), |cp| cp.hash.clone()),
        }
    } else {
        let mut q = Sql::<Nullable<Text>>::new("SELECT hash FROM engine_audit WHERE seq = ");
        q.int(start);
        match q.load::<Option<String>>(c)?.into_iter().next().flatten() {
            Some(hash) => Head { seq: start, hash },
            None => {
                report.finding = Some(Finding::Deleted {
                    from: start,
                    to: start,
                });
                return Ok(report);
            }
        }
    };
    let mut prev_id: Option<i64> = None;
    let mut anchors: std::collections::BTreeMap<i64, String> = std::collections::BTreeMap::new();
    for a in &o.anchors {
        if a.seq == base {
            report.anchors_checked += 1;
            if let Some(cp) = &checkpoint {
                if cp.hash != a.hash {
                    report.finding = Some(Finding::AnchorMismatch {
                        seq: a.seq,
                        anchored: a.hash.clone(),
                        found: cp.hash.clone(),
                    });
                    return Ok(report);
                }
            }
        } else if a.seq < base {
            report.anchors_pruned += 1;
        } else if a.seq == start {
            // The entry the walk starts after: its hash was just read.
            report.anchors_checked += 1;
            if a.hash != prev.hash {
                report.finding = Some(Finding::AnchorMismatch {
                    seq: a.seq,
                    anchored: a.hash.clone(),
                    found: prev.hash.clone(),
                });
                return Ok(report);
            }
        } else if a.seq > start && o.to.is_none_or(|t| a.seq <= t) {
            anchors.insert(a.seq, a.hash.clone());
        } else {
            report.anchors_outside_range += 1;
        }
    }
    let mut walk = Walk::new(c, start, o.to);
    while let Some(cur) = walk.next()? {
        let Some(seq) = cur.seq else { continue };
        if o.to.is_some_and(|t| seq > t) {
            break;
        }
        let finding = check_entry(&prev, prev_id, &cur, seq, walk.peek()?);
        if let Some(f) = finding {
            report.finding = Some(f);
            return Ok(report);
        }
        let hash = cur.hash.clone().unwrap_or_default();
        if let Some(anchored) = anchors.remove(&seq) {
            report.anchors_checked += 1;
            if anchored != hash {
                report.finding = Some(Finding::AnchorMismatch {
                    seq,
                    anchored,
                    found: hash,
                });
                return Ok(report);
            }
        }
        report.checked += 1;
        report.first.get_or_insert(seq);
        report.last = Some(seq);
        prev = Head { seq, hash };
        prev_id = Some(cur.id);
    }
    drop(walk);
    // The tail: anchors past the end, and the head row.
    if let Some((&expected, _)) = anchors.iter().next() {
        report.finding = Some(Finding::Truncated {
            last: prev.seq,
            expected,
        });
        return Ok(report);
    }
    if o.to.is_none() {
        if head.seq > prev.seq {
            report.finding = Some(Finding::Truncated {
                last: prev.seq,
                expected: head.seq,
            });
            return Ok(report);
        }
        if head.seq < prev.seq {
            report.finding = Some(Finding::AppendedPastHead {
                head: head.seq,
                last: prev.seq,
            });
            return Ok(report);
        }
        if head.hash != prev.hash {
            report.finding = Some(Finding::EditedRehashed { seq: prev.seq });
            return Ok(report);
        }
        // Rows added outside the chain.
        let q = Sql::<Nullable<BigInt>>::new(
            "SELECT MIN(id) FROM engine_audit WHERE seq IS NULL OR hash IS NULL OR prev_hash IS NULL",
        );
        if let Some(row_id) = q.load::<Option<i64>>(c)?.into_iter().next().flatten() {
            report.finding = Some(Finding::Unchained { row_id });
            return Ok(report);
        }
    }
    report.ok = true;
    Ok(report)
}

/// The finding at `cur` (entry `seq`), given the verified `prev` and `cur`'s successor.
fn check_entry(
    prev: &Head,
    prev_id: Option<i64>,
    cur: &ChainRow,
    seq: i64,
    next: Option<&ChainRow>,
) -> Option<Finding> {
    if seq == prev.seq {
        return Some(Finding::Inserted { seq });
    }
    if cur.hash.is_none() || cur.prev_hash.is_none() {
        return Some(Finding::Edited { seq });
    }
    if !cur.hashes_as(seq) {
        let next_seq = next.and_then(|n| n.seq);
        // Two neighbours swapped (content moved, seq kept).
        if let (Some(n), Some(ns)) = (next, next_seq) {
            if ns == seq + 1 && cur.hashes_as(seq + 1) && n.hashes_as(seq) {
                return Some(Finding::Reordered { seq });
            }
        }
        // Renumbered down: the entry written as `seq` is gone and later ones moved up.
        if cur.hashes_as(seq + 1) && cur.prev_hash.as_deref() != Some(&prev.hash) {
            return Some(Finding::Deleted { from: seq, to: seq });
        }
        // Renumbered up: `prev` (linked and hashed correctly) was slipped in before it.
        if cur.hashes_as(seq - 1) {
            return Some(Finding::Inserted { seq: seq - 1 });
        }
        return Some(Finding::Edited { seq });
    }
    if prev_id.is_some_and(|p| cur.id < p) {
        return Some(Finding::Reordered { seq });
    }
    if seq > prev.seq + 1 {
        return Some(Finding::Deleted {
            from: prev.seq + 1,
            to: seq - 1,
        });
    }
    if cur.prev_hash.as_deref() != Some(&prev.hash) {
        // The successor links to `prev`: `cur` was slipped in between.
        if next.is_some_and(|n| n.prev_hash.as_deref() == Some(&prev.hash)) {
            return Some(Finding::Inserted { seq });
        }
        return Some(Finding::EditedRehashed { seq: prev.seq });
    }
    None
}

// ---- export -----------------------------------------------------------------------------------

/// Filters of an export or an admin API page.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Entries after this `seq` (the paging cursor).
    pub after_seq: Option<i64>,
    /// Entries up to this `seq`.
    pub to_seq: Option<i64>,
    /// RFC 3339 bounds on `at` (from inclusive, to exclusive).
    pub from_time: Option<DateTime<Utc>>,
    pub to_time: Option<DateTime<Utc>>,
    pub user_id: Option<String>,
    pub actor: Option<String>,
    /// `action`, exactly or as a prefix ending in `.` or `*` (`scim.user.` / `scim.user*`).
    pub action: Option<String>,
    pub connector: Option<String>,
}

/// Up to `limit` chained entries matching `f`, in `seq` order.
pub fn export_page(c: &mut DbConnection, f: &ExportFilter, limit: i64) -> HubResult<Vec<ChainRow>> {
    let mut q = Sql::<ChainRowSql>::new(&format!(
        "SELECT {ROW_COLUMNS} FROM engine_audit WHERE seq > "
    ));
    q.int(f.after_seq.unwrap_or(0));
    if let Some(t) = f.to_seq {
        q.push(" AND seq <= ").int(t);
    }
    if let Some(t) = f.from_time {
        q.push(" AND at >= ").text(fmt_ts(t));
    }
    if let Some(t) = f.to_time {
        q.push(" AND at < ").text(fmt_ts(t));
    }
    if let Some(u) = &f.user_id {
        q.push(" AND user_id = ").text(u.clone());
    }
    if let Some(a) = &f.actor {
        q.push(" AND actor = ").text(a.clone());
    }
    if let Some(a) = &f.action {
        let prefix = match a.strip_suffix('*') {
            Some(p) => Some(p),
            None if a.ends_with('.') => Some(a.as_str()),
            None => None,
        };
        match prefix {
            Some("") => {}
            Some(p) => {
                q.push(" AND substr(action, 1, CAST(")
                    .int(p.chars().count() as i64)
                    .push(" AS INTEGER)) = ")
                    .text(p.to_string());
            }
            None => {
                q.push(" AND action = ").text(a.clone());
            }
        }
    }
    if let Some(k) = &f.connector {
        q.push(" AND connector = ").text(k.clone());
    }
    q.push(" ORDER BY seq");
    q.limit(limit.clamp(1, 10_000));
    Ok(q.load::<ChainRow>(c)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_is_netstrings_in_fixed_order() {
        let e = EntryFields {
            seq: 7,
            prev_hash: GENESIS,
            at: "2026-01-01T00:00:00.000000Z",
            actor: "okta",
            user_id: "u1",
            connector: None,
            action: "scim.user.create",
            outcome: "ok",
            detail: "{}",
        };
        let text = String::from_utf8(canonical(&e)).expect("utf-8");
        assert_eq!(
            text,
            format!(
                "scimhub-audit-v1,1:7,64:{GENESIS},27:2026-01-01T00:00:00.000000Z,4:okta,2:u1,~16:scim.user.create,2:ok,2:{{}},"
            )
        );
        let with = EntryFields {
            connector: Some(""),
            ..e
        };
        assert_ne!(entry_hash(&e), entry_hash(&with));
        // Moving a byte from one field to the next changes the hash.
        let shifted = EntryFields {
            actor: "okt",
            user_id: "au1",
            ..e
        };
        assert_ne!(entry_hash(&e), entry_hash(&shifted));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v = serde_json::json!({"b": 1, "a": {"z": [1, {"y": 2, "x": "é\n"}], "c": null}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":null,"z":[1,{"x":"é\n","y":2}]},"b":1}"#
        );
    }

    #[test]
    fn changed_attributes_names_only() {
        let before = serde_json::json!({"userName": "a", "password": "x", "title": "t",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "d"}});
        let after = serde_json::json!({"userName": "a", "password": "y",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "e"}});
        let (Value::Object(b), Value::Object(a)) = (before, after) else {
            unreachable!()
        };
        assert_eq!(
            changed_attributes(Some(&b), Some(&a)),
            vec![
                "password".to_string(),
                "title".into(),
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department".into()
            ]
        );
    }

    /// The detail of a SCIM write's entry as it was first built (a `Value`, then
    /// [`canonical_json`]): [`scim_write_entry`] writes the same text directly.
    fn detail_as_value(change: &Change, request: Option<&str>) -> String {
        let mut detail = serde_json::json!({
            "resourceType": change.kind.as_str(),
            "id": change.id,
            "request": request,
        });
        if change.op != ChangeOp::Members {
            detail["changed"] = Value::from(changed_attributes(
                change.before.as_ref(),
                change.after.as_ref(),
            ));
        }
        if !change.members_added.is_empty() {
            detail["membersAdded"] = serde_json::json!({
                "count": change.members_added.len(),
                "ids": change.members_added.iter().take(MEMBERS_LISTED).collect::<Vec<_>>(),
            });
        }
        match &change.members_removed {
            MemberRemoval::None => {}
            MemberRemoval::All => detail["membersRemoved"] = Value::from("all"),
            MemberRemoval::Ids(ids) => {
                detail["membersRemoved"] = serde_json::json!({
                    "count": ids.len(),
                    "ids": ids.iter().take(MEMBERS_LISTED).collect::<Vec<_>>(),
                })
            }
        }
        canonical_json(&detail)
    }

    #[test]
    fn scim_write_details_are_the_canonical_json_of_their_value() {
        let doc = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let many: Vec<String> = (0..150).map(|i| format!("m\"{i}\\")).collect();
        let changes = [
            Change {
                op: ChangeOp::Create,
                kind: ResourceKind::User,
                id: "u\u{1}1".into(),
                before: None,
                after: Some(doc(serde_json::json!({"userName": "a", "schemas": [],
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "d"},
                    "émail\n": 1}))),
                members_added: Vec::new(),
                members_removed: MemberRemoval::None,
                client: Some("okta".into()),
            },
            Change {
                op: ChangeOp::Members,
                kind: ResourceKind::Group,
                id: "g1".into(),
                before: None,
                after: None,
                members_added: many.clone(),
                members_removed: MemberRemoval::Ids(vec!["x".into()]),
                client: None,
            },
            Change {
                op: ChangeOp::Replace,
                kind: ResourceKind::Group,
                id: "g2".into(),
                before: Some(doc(serde_json::json!({"displayName": "a"}))),
                after: Some(doc(serde_json::json!({"displayName": "b"}))),
                members_added: vec!["y".into()],
                members_removed: MemberRemoval::All,
                client: None,
            },
            Change {
                op: ChangeOp::Delete,
                kind: ResourceKind::User,
                id: "u2".into(),
                before: Some(doc(serde_json::json!({"userName": "a"}))),
                after: None,
                members_added: Vec::new(),
                members_removed: MemberRemoval::Ids(many),
                client: None,
            },
            // Two extensions with their attributes out of order, an empty one, "SCHEMAS" in
            // another case, a non-object under a URN.
            Change {
                op: ChangeOp::Create,
                kind: ResourceKind::User,
                id: "u3".into(),
                before: None,
                after: Some(doc(serde_json::json!({"SCHEMAS": [], "zeta": true,
                    "urn:b:User": {"z": 1, "a\"q": 2, "m": 3},
                    "urn:a:User": {"y": 1, "b": 2},
                    "urn:c:User": {},
                    "urn:d:scalar": "x",
                    "Alpha": null}))),
                members_added: Vec::new(),
                members_removed: MemberRemoval::None,
                client: None,
            },
        ];
        let now = Utc::now();
        for change in &changes {
            for request in [None, Some("req-\"1\"")] {
                let _scope = request.map(request_scope);
                let entry = scim_write_entry(change, now);
                assert_eq!(entry.detail, detail_as_value(change, request));
                let kind = change.kind.as_str().to_ascii_lowercase();
                assert!(entry.action.starts_with(&format!("scim.{kind}.")));
            }
        }
    }

    #[test]
    fn anchors_parse() {
        let a: Anchor = format!("12:{}", "A".repeat(64)).parse().expect("anchor");
        assert_eq!(a.seq, 12);
        assert_eq!(a.hash, "a".repeat(64));
        assert!("12".parse::<Anchor>().is_err());
        assert!("x:ab".parse::<Anchor>().is_err());
    }
}
