//! `scimhub import`: an HR roster (CSV) loaded as SCIM writes of one client.
//!
//! Each row becomes one User write through [`crate::service`] — the same path as a SCIM
//! request: validation, the client's source-of-truth rules, the engine hook and the audit chain
//! all apply, and each row is its own transaction (a refused row writes nothing). A row matches
//! the stored User with its `externalId` (scoped to the client), else its `userName`; it creates
//! one when none matches, else PATCHes the attributes that differ (none: `unchanged`).
//! `--full` then deactivates (PATCH `active=false`) the client's users the roster left out; the
//! engine's blast-radius guard holds their revocations above its threshold as it would for a
//! SCIM client's burst. `--dry-run` runs every write through the store's transaction with a
//! hook that plans like the engine's and then fails it on purpose (as `admin::simulate` does),
//! so nothing commits. On a SQLite file the writes go through the store's group commit, each
//! row validated on this thread while earlier ones are written (`service::prepare_create`).
//! A row whose manager comes later in the file waits for a second pass after the last row.
//! The run's joiners are one onboarding burst (`store::bursts`, sealed when the run ends).

pub mod mapping;
pub mod progress;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use scim_schema::dialect::Dialect;
use scim_schema::schema::core::{ENTERPRISE_USER, USER};
use serde_json::{json, Map, Value};

use crate::engine::hook::EngineHook;
use crate::engine::Engine;
use crate::error::{HubError, HubResult};
use crate::service::{self, Caller, PatchReply, Schemas, SourceRules};
use crate::store::bursts::{self, BurstSource};
use crate::store::{Change, DbConnection, ResourceKind, Store, WriteHook};
use mapping::{ManagerBy, Mapping};

/// Why an import could not run at all (a bad row is reported, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Hub(#[from] HubError),
}

/// What happened to one row (or, with `--full`, one user the roster left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created { id: String },
    Updated { id: String },
    Unchanged { id: String },
    Deactivated { id: String },
    Refused { reason: String },
}

/// One line of the report: the CSV line (0 for a `--full` deactivation), the user, the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowReport {
    pub line: u64,
    pub user: String,
    pub outcome: Outcome,
}

impl std::fmt::Display for RowReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.line == 0 {
            "full".to_string()
        } else {
            format!("line {}", self.line)
        };
        let user = if self.user.is_empty() {
            "-"
        } else {
            &self.user
        };
        match &self.outcome {
            Outcome::Created { id } => write!(f, "{at}: created {user} ({id})"),
            Outcome::Updated { id } => write!(f, "{at}: updated {user} ({id})"),
            Outcome::Unchanged { id } => write!(f, "{at}: unchanged {user} ({id})"),
            Outcome::Deactivated { id } => write!(f, "{at}: deactivated {user} ({id})"),
            Outcome::Refused { reason } => write!(f, "{at}: refused {user}: {reason}"),
        }
    }
}

/// The options of one import.
#[derive(Debug, Clone)]
pub struct Options {
    pub client: String,
    pub mapping: Mapping,
    pub dry_run: bool,
    pub full: bool,
    /// Rows in flight in one group commit (SQLite file only).
    pub window: usize,
}

/// Why the dry-run hook fails the transaction.
const ROLLBACK: &str = "scimhub import --dry-run: rolled back on purpose";

/// The dry-run hook: plans like the engine hook (so a refusal it would raise is raised), then
/// fails the transaction.
#[derive(Debug)]
struct RollbackHook {
    inner: EngineHook,
}

impl WriteHook for RollbackHook {
    fn on_write(&self, c: &mut DbConnection, change: &Change) -> HubResult<()> {
        self.inner.on_write(c, change)?;
        Err(HubError::Backend(ROLLBACK.into()))
    }
}

/// What the import knows of the stored users.
#[derive(Default)]
struct Known {
    docs: HashMap<String, Map<String, Value>>,
    by_external: HashMap<String, String>,
    by_user_name: HashMap<String, String>,
    by_employee_number: HashMap<String, String>,
    by_email: HashMap<String, String>,
    /// Users whose externalId the client set (the candidates of `--full`).
    of_client: Vec<String>,
}

impl Known {
    fn learn(&mut self, id: &str, doc: &Map<String, Value>, client: Option<&str>) {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        if let (Some(x), Some(_)) = (text(doc.get("externalId")), client) {
            self.by_external.insert(x, id.to_string());
        }
        if let Some(u) = text(doc.get("userName")) {
            self.by_user_name.insert(u.to_lowercase(), id.to_string());
        }
        if let Some(e) = doc
            .get(ENTERPRISE_USER)
            .and_then(|e| e.get("employeeNumber"))
        {
            if let Some(n) = e.as_str() {
                self.by_employee_number
                    .insert(n.to_string(), id.to_string());
            }
        }
        for e in doc
            .get("emails")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(v) = e.get("value").and_then(Value::as_str) {
                self.by_email.insert(v.to_lowercase(), id.to_string());
            }
        }
        self.docs.insert(id.to_string(), doc.clone());
    }
}

/// The row's userName, else its externalId, as written in the file (for a refused row).
fn label_of(columns: &[mapping::Column], record: &csv::StringRecord) -> String {
    let cell = |name: &str| {
        columns
            .iter()
            .zip(record.iter())
            .find(|(t, c)| {
                matches!(&t.target, mapping::Target::Attr(p) if p.eq_ignore_ascii_case(name))
                    && !c.trim().is_empty()
            })
            .map(|(_, c)| c.trim().to_string())
    };
    cell("userName")
        .or_else(|| cell("externalId"))
        .unwrap_or_default()
}

/// A row waiting for its manager (named by a later row of the file).
struct Deferred {
    line: u64,
    doc: Map<String, Value>,
    manager: String,
}

impl Deferred {
    /// The keys the row's user will answer to as a manager.
    fn keys(&self, by: ManagerBy) -> Vec<String> {
        match by {
            ManagerBy::EmployeeNumber => self
                .doc
                .get(ENTERPRISE_USER)
                .and_then(|e| e.get("employeeNumber"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .into_iter()
                .collect(),
            ManagerBy::Email => self
                .doc
                .get("emails")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("value").and_then(Value::as_str))
                .map(str::to_lowercase)
                .collect(),
        }
    }
}

/// How a manager cell is looked up: employee numbers as written, emails case-insensitively.
fn manager_key(by: ManagerBy, cell: &str) -> String {
    match by {
        ManagerBy::EmployeeNumber => cell.to_string(),
        ManagerBy::Email => cell.to_lowercase(),
    }
}

/// A write in flight (group commit) and what to record when it lands.
struct Pending {
    line: u64,
    user: String,
    created: bool,
    doc: Map<String, Value>,
    rx: tokio::sync::oneshot::Receiver<HubResult<String>>,
}

/// Runs one import of `rows` (the CSV reader) and hands each row's report to `report` as it is
/// known (in line order), `progress` the rows read so far.
pub fn run<R: std::io::Read>(
    store: &Store,
    engine: &Arc<Engine>,
    schemas: Arc<Schemas>,
    mut rows: csv::Reader<R>,
    opts: &Options,
    report: &mut dyn FnMut(&RowReport),
    progress: &mut dyn FnMut(u64),
) -> Result<(), ImportError> {
    let header: Vec<String> = rows
        .headers()
        .map_err(|e| ImportError::Input(format!("cannot read the header: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    let targets = opts.mapping.targets(&header)?;
    // Paths parsed and typed once per file, not per cell.
    let columns = mapping::columns(&targets, schemas.of(ResourceKind::User))?;
    let manager_by = opts.mapping.manager_by();
    let store = if opts.dry_run {
        store.clone().with_hook(Arc::new(RollbackHook {
            inner: EngineHook {
                engine: engine.clone(),
            },
        }))
    } else {
        crate::engine::hook::install(store.clone(), engine.clone())
    };
    let sources = SourceRules::for_client(&engine.policy.current(), &opts.client);
    let caller = |line: u64| Caller {
        client: opts.client.clone(),
        dialect: Dialect::Strict,
        sources: sources.clone(),
        request_id: format!("import:{}:line{line}", opts.client),
    };

    let mut known = Known::default();
    for u in store.roster_users()? {
        let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(&u.doc) else {
            continue;
        };
        let mine = u.external_id_client == opts.client;
        if mine && doc.get("externalId").is_some() {
            known.of_client.push(u.id.clone());
        }
        known.learn(&u.id, &doc, mine.then_some(opts.client.as_str()));
    }

    let batch = store.batches_writes() && !opts.dry_run;
    // The run's joiners are one onboarding burst (`store::bursts`): the scope is entered here
    // and, for writes on the group-commit writer thread, inside each write.
    let burst = uuid::Uuid::now_v7().to_string();
    let _burst = bursts::scope(BurstSource::Import, &burst);
    let mut pending: Vec<Pending> = Vec::new();
    let mut seen_user_names: HashMap<String, u64> = HashMap::new();
    let mut seen_external: HashMap<String, u64> = HashMap::new();
    // Keys (employee numbers, emails) of rows whose creation is in flight.
    let mut pending_keys: HashSet<String> = HashSet::new();
    let mut in_roster: HashSet<String> = HashSet::new();
    let mut read = 0u64;
    let mut record = csv::StringRecord::new();

    let drain = |pending: &mut Vec<Pending>,
                 known: &mut Known,
                 in_roster: &mut HashSet<String>,
                 report: &mut dyn FnMut(&RowReport)| {
        for p in pending.drain(..) {
            let outcome = match p.rx.blocking_recv() {
                Err(_) => Outcome::Refused {
                    reason: "the write was dropped by an internal error".into(),
                },
                Ok(Err(e)) => Outcome::Refused {
                    reason: e.to_string(),
                },
                Ok(Ok(id)) => {
                    known.learn(&id, &p.doc, Some(""));
                    in_roster.insert(id.clone());
                    if p.created {
                        Outcome::Created { id }
                    } else {
                        Outcome::Updated { id }
                    }
                }
            };
            report(&RowReport {
                line: p.line,
                user: p.user,
                outcome,
            });
        }
    };

    // Rows naming a manager not known when they were read (the manager comes later in the
    // file): written in a second pass after the file's last row.
    let mut deferred: VecDeque<Deferred> = VecDeque::new();
    // The keys the deferred rows' users will answer to, with how many rows carry each.
    let mut deferred_keys: HashMap<String, usize> = HashMap::new();
    let defer = |d: Deferred, queue: &mut VecDeque<Deferred>, keys: &mut HashMap<String, usize>| {
        for k in d.keys(manager_by) {
            *keys.entry(k).or_insert(0) += 1;
        }
        queue.push_back(d);
    };
    let mut second_pass = false;
    // Deferred rows put back in a row without one written in between (ends a manager cycle).
    let mut requeued = 0usize;
    let text =
        |d: &Map<String, Value>, k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);

    loop {
        let (line, mut doc, manager) = if second_pass {
            let Some(d) = deferred.pop_front() else {
                break;
            };
            for k in d.keys(manager_by) {
                if let Some(n) = deferred_keys.get_mut(&k) {
                    *n -= 1;
                    if *n == 0 {
                        deferred_keys.remove(&k);
                    }
                }
            }
            (d.line, d.doc, Some(d.manager))
        } else {
            let line = rows.position().line();
            match rows.read_record(&mut record) {
                Ok(false) => {
                    second_pass = true;
                    drain(&mut pending, &mut known, &mut in_roster, report);
                    pending_keys.clear();
                    continue;
                }
                Ok(true) => {}
                Err(e) => {
                    read += 1;
                    progress(read);
                    let reason = match e.kind() {
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => format!("malformed row: {len} fields, the header has {expected_len}"),
                        _ => format!("malformed row: {e}"),
                    };
                    drain(&mut pending, &mut known, &mut in_roster, report);
                    report(&RowReport {
                        line,
                        user: String::new(),
                        outcome: Outcome::Refused { reason },
                    });
                    continue;
                }
            }
            read += 1;
            progress(read);
            let line = record.position().map(|p| p.line()).unwrap_or(line);
            let (doc, manager) = match mapping::row_doc(&columns, &record) {
                Ok(x) => x,
                Err(reason) => {
                    drain(&mut pending, &mut known, &mut in_roster, report);
                    report(&RowReport {
                        line,
                        user: label_of(&columns, &record),
                        outcome: Outcome::Refused { reason },
                    });
                    continue;
                }
            };
            // Duplicates within the roster: the first row wins.
            let dup = |seen: &HashMap<String, u64>, key: Option<String>, what: &str| {
                key.and_then(|k| seen.get(&k))
                    .map(|first| format!("duplicate {what} (line {first})"))
            };
            let user_key = text(&doc, "userName").map(|u| u.to_lowercase());
            let external_key = text(&doc, "externalId");
            if let Some(reason) = dup(&seen_user_names, user_key.clone(), "userName")
                .or_else(|| dup(&seen_external, external_key.clone(), "externalId"))
            {
                drain(&mut pending, &mut known, &mut in_roster, report);
                report(&RowReport {
                    line,
                    user: text(&doc, "userName").or(external_key).unwrap_or_default(),
                    outcome: Outcome::Refused { reason },
                });
                continue;
            }
            if let Some(u) = user_key {
                seen_user_names.insert(u, line);
            }
            if let Some(x) = external_key {
                seen_external.insert(x, line);
            }
            (line, doc, manager)
        };
        let user_name = text(&doc, "userName");
        let external = text(&doc, "externalId");
        let label = user_name.clone().or(external.clone()).unwrap_or_default();
        let refuse = |reason: String| RowReport {
            line,
            user: label.clone(),
            outcome: Outcome::Refused { reason },
        };
        if let Some(m) = manager {
            let key = manager_key(manager_by, &m);
            if pending_keys.contains(&key) {
                drain(&mut pending, &mut known, &mut in_roster, report);
                pending_keys.clear();
            }
            let found = match manager_by {
                ManagerBy::EmployeeNumber => known.by_employee_number.get(&key),
                ManagerBy::Email => known.by_email.get(&key),
            };
            match found {
                Some(id) => mapping::set_manager(&mut doc, &id.clone()),
                None if !second_pass => {
                    defer(
                        Deferred {
                            line,
                            doc,
                            manager: m,
                        },
                        &mut deferred,
                        &mut deferred_keys,
                    );
                    continue;
                }
                None => {
                    // A row still waiting may create the manager: it goes first, unless every
                    // waiting row was put back since the last write (a cycle).
                    if deferred_keys.contains_key(&key) && requeued < deferred.len() {
                        requeued += 1;
                        defer(
                            Deferred {
                                line,
                                doc,
                                manager: m,
                            },
                            &mut deferred,
                            &mut deferred_keys,
                        );
                        continue;
                    }
                    drain(&mut pending, &mut known, &mut in_roster, report);
                    report(&refuse(format!("unknown manager {m:?}")));
                    continue;
                }
            }
        }
        requeued = 0;
        let existing_id = external
            .as_ref()
            .and_then(|x| known.by_external.get(x))
            .or_else(|| {
                user_name
                    .as_ref()
                    .and_then(|u| known.by_user_name.get(&u.to_lowercase()))
            })
            .cloned();
        let caller = caller(line);
        match existing_id {
            None => {
                if user_name.is_none() {
                    drain(&mut pending, &mut known, &mut in_roster, report);
                    report(&refuse("missing userName".into()));
                    continue;
                }
                let mut body = doc.clone();
                let mut schema_list = vec![json!(USER)];
                for k in doc
                    .keys()
                    .filter(|k| k.to_ascii_lowercase().starts_with("urn:"))
                {
                    schema_list.push(json!(k));
                }
                body.insert("schemas".into(), Value::Array(schema_list));
                for k in [
                    doc.get(ENTERPRISE_USER)
                        .and_then(|e| e.get("employeeNumber"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    text(&doc, "emails").or_else(|| {
                        doc.get("emails")
                            .and_then(Value::as_array)
                            .and_then(|a| a.first())
                            .and_then(|e| e.get("value"))
                            .and_then(Value::as_str)
                            .map(str::to_lowercase)
                    }),
                ]
                .into_iter()
                .flatten()
                {
                    pending_keys.insert(k);
                }
                let body = Value::Object(body);
                if batch {
                    // Validation here, the write on the writer thread: the next row is checked
                    // while the one before is written (`service::create` in its two steps).
                    let prepared = match service::prepare_create(
                        &schemas,
                        ResourceKind::User,
                        body,
                        &caller,
                    ) {
                        Ok(doc) => doc,
                        Err(e) => {
                            drain(&mut pending, &mut known, &mut in_roster, report);
                            report(&refuse(e.to_string()));
                            continue;
                        }
                    };
                    let burst = burst.clone();
                    let rx = store.submit_write(move |s| {
                        let _burst = bursts::scope(BurstSource::Import, &burst);
                        service::create_prepared(s, ResourceKind::User, prepared.clone(), &caller)
                            .map(|r| r.id)
                    })?;
                    pending.push(Pending {
                        line,
                        user: label,
                        created: true,
                        doc,
                        rx,
                    });
                } else {
                    let outcome = match service::create(
                        &store,
                        &schemas,
                        ResourceKind::User,
                        body,
                        &caller,
                    ) {
                        Ok(r) => {
                            known.learn(&r.id, &r.doc, Some(""));
                            in_roster.insert(r.id.clone());
                            Outcome::Created { id: r.id }
                        }
                        Err(HubError::Backend(m)) if m == ROLLBACK => {
                            let id = format!("dry-run:line{line}");
                            known.learn(&id, &doc, Some(""));
                            Outcome::Created { id }
                        }
                        Err(e) => Outcome::Refused {
                            reason: e.to_string(),
                        },
                    };
                    report(&RowReport {
                        line,
                        user: label,
                        outcome,
                    });
                }
            }
            Some(id) => {
                in_roster.insert(id.clone());
                let existing = known.docs.get(&id).cloned().unwrap_or_default();
                let merged = mapping::overlay(&existing, &doc);
                let changed: Map<String, Value> = merged
                    .iter()
                    .filter(|(k, v)| existing.get(*k) != Some(*v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if changed.is_empty() {
                    drain(&mut pending, &mut known, &mut in_roster, report);
                    report(&RowReport {
                        line,
                        user: label,
                        outcome: Outcome::Unchanged { id },
                    });
                    continue;
                }
                let body = json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "value": changed}],
                });
                if batch {
                    // Parsed (and any password hashed) here, not on the writer thread.
                    let prepared =
                        match service::prepare_patch(&schemas, ResourceKind::User, body, &caller) {
                            Ok(p) => p,
                            Err(e) => {
                                drain(&mut pending, &mut known, &mut in_roster, report);
                                report(&refuse(e.to_string()));
                                continue;
                            }
                        };
                    let schemas = schemas.clone();
                    let pid = id.clone();
                    let burst = burst.clone();
                    let rx = store.submit_write(move |s| {
                        let _burst = bursts::scope(BurstSource::Import, &burst);
                        service::patch_prepared(
                            s,
                            &schemas,
                            ResourceKind::User,
                            &pid,
                            &prepared,
                            None,
                            &caller,
                            PatchReply::Minimal,
                        )
                        .map(|_| pid.clone())
                    })?;
                    pending.push(Pending {
                        line,
                        user: label,
                        created: false,
                        doc: merged,
                        rx,
                    });
                } else {
                    let outcome = match service::patch(
                        &store,
                        &schemas,
                        ResourceKind::User,
                        &id,
                        body,
                        None,
                        &caller,
                        PatchReply::Minimal,
                    ) {
                        Ok(_) => Outcome::Updated { id },
                        Err(HubError::Backend(m)) if m == ROLLBACK => Outcome::Updated { id },
                        Err(e) => Outcome::Refused {
                            reason: e.to_string(),
                        },
                    };
                    report(&RowReport {
                        line,
                        user: label,
                        outcome,
                    });
                }
            }
        }
        if pending.len() >= opts.window.max(1) {
            drain(&mut pending, &mut known, &mut in_roster, report);
            pending_keys.clear();
        }
    }
    drain(&mut pending, &mut known, &mut in_roster, report);

    if opts.full {
        for id in &known.of_client {
            if in_roster.contains(id) {
                continue;
            }
            let Some(doc) = known.docs.get(id) else {
                continue;
            };
            if doc.get("active") == Some(&Value::Bool(false)) {
                continue;
            }
            let user = doc
                .get("userName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let body = json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}],
            });
            // A server on the same SQLite file commits between this transaction's read and its
            // write now and then ("database is locked" at once, not after the busy timeout):
            // the row's transaction rolled back whole, so it is tried again.
            let result = retry_when_locked(|| {
                let (schemas, caller, pid, body) =
                    (schemas.clone(), caller(0), id.clone(), body.clone());
                let write = move |s: &Store| {
                    service::patch(
                        s,
                        &schemas,
                        ResourceKind::User,
                        &pid,
                        body.clone(),
                        None,
                        &caller,
                        PatchReply::Minimal,
                    )
                    .map(|_| ())
                };
                // On a SQLite file through the group-commit writer, as the rows were.
                if batch {
                    match store.submit_write(write)?.blocking_recv() {
                        Ok(r) => r,
                        Err(_) => Err(HubError::Backend(
                            "the write was dropped by an internal error".into(),
                        )),
                    }
                } else {
                    write(&store)
                }
            });
            let outcome = match result {
                Ok(_) => Outcome::Deactivated { id: id.clone() },
                Err(HubError::Backend(m)) if m == ROLLBACK => {
                    Outcome::Deactivated { id: id.clone() }
                }
                Err(e) => Outcome::Refused {
                    reason: e.to_string(),
                },
            };
            report(&RowReport {
                line: 0,
                user,
                outcome,
            });
        }
    }
    if !opts.dry_run {
        store.write_tx(|c, _| bursts::seal(c, BurstSource::Import, &burst))?;
    }
    Ok(())
}

/// Runs `write` again (up to 6 tries, 50 ms doubling) while SQLite answers "database is locked"
/// or "busy": another process (a server on the same file) committed between the transaction's
/// read and its write. The failed try rolled back whole, so trying again is safe.
fn retry_when_locked<T>(mut write: impl FnMut() -> HubResult<T>) -> HubResult<T> {
    let mut wait = std::time::Duration::from_millis(50);
    for _ in 0..5 {
        match write() {
            Err(HubError::Unavailable(m)) if m.contains("locked") || m.contains("busy") => {
                std::thread::sleep(wait);
                wait *= 2;
            }
            other => return other,
        }
    }
    write()
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    #[test]
    fn a_locked_database_is_tried_again_and_other_errors_are_not() {
        let mut tries = 0;
        let out = retry_when_locked(|| {
            tries += 1;
            if tries < 3 {
                Err(HubError::Unavailable("database is locked".into()))
            } else {
                Ok(tries)
            }
        });
        assert!(matches!(out, Ok(3)), "{out:?}");
        let mut tries = 0;
        let out: HubResult<()> = retry_when_locked(|| {
            tries += 1;
            Err(HubError::NotFound)
        });
        assert!(matches!(out, Err(HubError::NotFound)));
        assert_eq!(tries, 1);
        // Still locked after every try: the last error is reported.
        let out: HubResult<()> =
            retry_when_locked(|| Err(HubError::Unavailable("database is locked".into())));
        assert!(matches!(out, Err(HubError::Unavailable(_))));
    }
}
