//! Simulation: the exact plan a SCIM write would produce, without committing it.
//!
//! The request runs through the real write path — [`crate::service`] (dialect, PATCH,
//! validation) and the store's write transaction — with a hook that plans exactly as the engine
//! hook does ([`Engine::plan_user`] for a User, [`crate::engine::hook::EngineHook`] for a Group), reads back the
//! outbox rows it wrote, and then fails the transaction on purpose so nothing is committed.
//! So the simulated plan is the real one by construction: same profiles, same diff, same
//! approval requests and the same blast-radius decision; a request the server would refuse
//! (invalid value, uniqueness) is refused here with the same error.
//!
//! `POST /admin/v1/simulate` and `scimhub simulate` both call [`Admin::dry_run`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use scim_schema::dialect::Dialect;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Admin, AdminError, AdminResult};
use crate::engine::hook::EngineHook;
use crate::engine::{Cause, PlanOutcome};
use crate::error::{HubError, HubResult};
use crate::policy::Policy;
use crate::service::{Caller, Schemas};
use crate::store::{outbox, Change, DbConnection, ResourceKind, WriteHook};

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SimulationRequest {
    /// A SCIM request: `{"method": "PATCH", "path": "/Users/ID", "body": {...}}`. The path may
    /// carry the `/scim/v2` prefix. `client` names the SCIM client the write would come from.
    Scim {
        method: String,
        path: String,
        #[serde(default)]
        body: Option<Value>,
        #[serde(default)]
        client: Option<String>,
    },
    /// A user (id or userName) and attribute changes: `{"user": "ada", "set": {"title": "x"}}`;
    /// a `null` value removes the attribute. Runs as a PATCH of `replace`/`remove` operations.
    User {
        user: String,
        set: serde_json::Map<String, Value>,
        #[serde(default)]
        client: Option<String>,
    },
}

/// Why the hook fails the transaction.
const ROLLBACK: &str = "scimhub simulation: rolled back on purpose";

#[derive(Debug, Default)]
struct Captured {
    outcomes: Vec<PlanOutcome>,
    rows: Vec<outbox::OutboxRow>,
    done: bool,
}

/// The dry-run hook: plans like the engine hook, captures, and aborts the transaction.
#[derive(Debug)]
struct CaptureHook {
    inner: EngineHook,
    captured: Arc<Mutex<Captured>>,
}

impl WriteHook for CaptureHook {
    fn on_write(&self, c: &mut DbConnection, change: &Change) -> HubResult<()> {
        let before = outbox::list_ops(c, None, None, 1)?
            .first()
            .map(|r| r.id)
            .unwrap_or(0);
        let outcome = match change.kind {
            ResourceKind::User => Some(self.inner.engine.plan_user(
                c,
                &change.id,
                change.after.as_ref(),
                Cause::Write,
            )?),
            ResourceKind::Group => {
                self.inner.on_write(c, change)?;
                None
            }
        };
        let rows = outbox::list_ops_after(c, before)?;
        let mut cap = self.captured.lock().unwrap_or_else(|p| p.into_inner());
        cap.outcomes.extend(outcome);
        cap.rows.extend(rows);
        cap.done = true;
        // The first change is the request's own; abort before anything commits.
        Err(HubError::Backend(ROLLBACK.into()))
    }
}

impl Admin {
    /// Runs `req` through the real write path and returns the plan it would produce, per user
    /// and connector, without committing anything.
    pub fn dry_run(&self, schemas: &Schemas, req: &SimulationRequest) -> AdminResult<Value> {
        let (method, path, body, client) = match req {
            SimulationRequest::Scim {
                method,
                path,
                body,
                client,
            } => (
                method.to_ascii_uppercase(),
                path.clone(),
                body.clone(),
                client.clone(),
            ),
            SimulationRequest::User { user, set, client } => {
                if set.is_empty() {
                    return Err(AdminError::Invalid("`set` names no attribute".into()));
                }
                let (id, _) = self.find_user(user)?;
                let ops: Vec<Value> = set
                    .iter()
                    .map(|(attr, v)| match v {
                        Value::Null => json!({"op": "remove", "path": attr}),
                        v => json!({"op": "replace", "path": attr, "value": v}),
                    })
                    .collect();
                (
                    "PATCH".to_string(),
                    format!("/Users/{id}"),
                    Some(json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": ops,
                    })),
                    client.clone(),
                )
            }
        };
        let (kind, id) = parse_path(&path)?;
        // A simulation naming its client is held to that client's source-of-truth rules (what
        // would okta's write do?); without one it shows what the change itself does.
        let sources = match &client {
            Some(c) => crate::service::SourceRules::for_client(&self.engine.policy.current(), c),
            None => crate::service::SourceRules::default(),
        };
        let caller = Caller {
            client: client.unwrap_or_else(|| "simulation".into()),
            dialect: Dialect::Strict,
            sources,
            request_id: "simulation".into(),
        };
        let captured = Arc::new(Mutex::new(Captured::default()));
        let store = self.store.clone().with_hook(Arc::new(CaptureHook {
            inner: EngineHook {
                engine: self.engine.clone(),
            },
            captured: captured.clone(),
        }));
        let need_body = || {
            body.clone()
                .ok_or_else(|| AdminError::Invalid(format!("{method} needs a body")))
        };
        let id_or = |what: &str| {
            id.clone()
                .ok_or_else(|| AdminError::Invalid(format!("{what} needs /{}/ID", kind.endpoint())))
        };
        use crate::service;
        let result: Result<(), HubError> = match method.as_str() {
            "POST" if id.is_none() => {
                service::create(&store, schemas, kind, need_body()?, &caller).map(|_| ())
            }
            "PUT" => service::replace(
                &store,
                schemas,
                kind,
                &id_or("PUT")?,
                need_body()?,
                None,
                &caller,
            )
            .map(|_| ()),
            "PATCH" => service::patch(
                &store,
                schemas,
                kind,
                &id_or("PATCH")?,
                need_body()?,
                None,
                &caller,
                service::PatchReply::Minimal,
            )
            .map(|_| ()),
            "DELETE" => service::delete(&store, kind, &id_or("DELETE")?, None, &caller),
            other => {
                return Err(AdminError::Invalid(format!(
                "cannot simulate {other} {path}: use POST /Users, PUT, PATCH or DELETE /Users/ID \
                     (or /Groups)"
            )))
            }
        };
        let cap = std::mem::take(&mut *captured.lock().unwrap_or_else(|p| p.into_inner()));
        match result {
            Err(HubError::Backend(m)) if m == ROLLBACK => {}
            // The errors the real request would get (404, 400 with its scimType, 409 uniqueness).
            Err(e) => return Err(e.into()),
            // The write changed nothing the engine sees (no change recorded).
            Ok(()) if !cap.done => {}
            Ok(()) => {
                return Err(AdminError::Store(HubError::Backend(
                    "simulation committed".into(),
                )))
            }
        }
        Ok(render(&method, &path, cap, &self.engine.policy.current()))
    }
}

/// `/Users`, `/Users/ID`, `/scim/v2/Groups/ID` → kind and id.
fn parse_path(path: &str) -> AdminResult<(ResourceKind, Option<String>)> {
    let p = path.trim();
    let p = p.strip_prefix(crate::service::BASE_PATH).unwrap_or(p);
    let mut parts = p.trim_matches('/').split('/');
    let kind = parts
        .next()
        .and_then(crate::service::kind_of_endpoint)
        .ok_or_else(|| AdminError::Invalid(format!("{path:?} is not a /Users or /Groups path")))?;
    let id = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
    if parts.next().is_some() {
        return Err(AdminError::Invalid(format!(
            "{path:?} has too many segments"
        )));
    }
    Ok((kind, id))
}

/// The simulation output: per user, the event and the operations per connector in execution
/// order (exactly the outbox rows the write would have inserted), plus what the engine decided.
fn render(method: &str, path: &str, cap: Captured, policy: &Policy) -> Value {
    let mut users: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for row in &cap.rows {
        let u = users.entry(row.user_id.clone()).or_default();
        u.entry("event")
            .or_insert_with(|| Value::String(row.event.clone()));
        if row.status == outbox::OutboxStatus::Held {
            u.insert("held".into(), Value::Bool(true));
        }
        let op = serde_json::from_str(&row.op).unwrap_or_else(|_| Value::String(row.op.clone()));
        if let Some(conns) = u
            .entry("connectors")
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            if let Some(list) = conns
                .entry(row.connector.clone())
                .or_insert_with(|| json!([]))
                .as_array_mut()
            {
                list.push(op);
            }
        }
    }
    for o in &cap.outcomes {
        let u = users.entry(o.user_id.clone()).or_default();
        u.insert("event".into(), json!(o.event));
        u.insert("held".into(), Value::Bool(o.hold_id.is_some()));
        u.entry("connectors").or_insert_with(|| json!({}));
        u.insert("profiles".into(), json!(o.desired.profile_names()));
        u.insert("lifecycle".into(), json!(o.desired.lifecycle));
        u.insert("needs_approval".into(), json!(o.desired.needs_approval));
        u.insert("sod".into(), json!(o.desired.sod));
        u.insert("kept".into(), json!(o.desired.kept));
        u.insert("skipped".into(), json!(o.plan.skipped));
        u.insert(
            "kept_for_records".into(),
            json!(o
                .plan
                .kept_for_records
                .iter()
                .map(|(connector, account)| json!({"connector": connector, "account": account}))
                .collect::<Vec<_>>()),
        );
        // Steps a connector cannot do, as the event records them ("not supported by CONNECTOR:
        // STEP"), and whether the policy requires them (`[leaver] required`: an incident).
        u.insert(
            "unsupported".into(),
            json!(o
                .plan
                .unsupported
                .iter()
                .map(|s| json!({
                    "connector": s.connector,
                    "step": s.step,
                    "note": s.note(),
                    "required": o.event.deprovisions() && policy.leaver.requires(s.step),
                }))
                .collect::<Vec<_>>()),
        );
        u.insert("notes".into(), json!(o.desired.notes));
    }
    let users: Vec<Value> = users
        .into_iter()
        .map(|(id, mut u)| {
            u.entry("held").or_insert(Value::Bool(false));
            u.insert("user_id".into(), Value::String(id));
            Value::Object(u)
        })
        .collect();
    json!({
        "committed": false,
        "request": {"method": method, "path": path},
        "users": users,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(matches!(
            parse_path("/scim/v2/Users/abc"),
            Ok((ResourceKind::User, Some(ref id))) if id == "abc"
        ));
        assert!(matches!(
            parse_path("Groups"),
            Ok((ResourceKind::Group, None))
        ));
        assert!(parse_path("/Things/1").is_err());
        assert!(parse_path("/Users/1/x").is_err());
    }

    #[test]
    fn request_shapes() {
        let r: SimulationRequest =
            serde_json::from_value(json!({"method": "DELETE", "path": "/Users/1"})).expect("scim");
        assert!(matches!(r, SimulationRequest::Scim { .. }));
        let r: SimulationRequest =
            serde_json::from_value(json!({"user": "ada", "set": {"title": "x"}})).expect("user");
        assert!(matches!(r, SimulationRequest::User { .. }));
        assert!(serde_json::from_value::<SimulationRequest>(json!({"x": 1})).is_err());
    }
}
