//! Blast-radius holds: a plan that would touch too many accounts waits as a hold until someone
//! confirms it (its operations run) or discards it (they never run and the users' planned state
//! goes back to what the connectors hold).

use serde_json::json;

use super::{in_tx, Admin, AdminError, AdminResult};
use crate::engine::Cause;
use crate::store::{audit, engine_state, holds};

impl Admin {
    pub fn holds(&self, status: Option<&str>) -> AdminResult<Vec<holds::Hold>> {
        // A status no hold can have matches none.
        let status = match status.map(holds::HoldStatus::parse) {
            Some(None) => return Ok(Vec::new()),
            other => other.flatten(),
        };
        Ok(in_tx(&self.store, |c| holds::list(c, status))?)
    }

    /// The hold `id`, pending: 404 when unknown, 409 when already decided.
    pub(super) fn pending_hold(&self, id: &str) -> AdminResult<holds::Hold> {
        let hold = in_tx(&self.store, |c| holds::list(c, None))?
            .into_iter()
            .find(|h| h.id == id)
            .ok_or_else(|| AdminError::NotFound(format!("hold {id}")))?;
        if hold.status == holds::HoldStatus::Staging {
            // Its group change is still being planned: the guard has not decided yet.
            return Err(AdminError::Conflict(format!(
                "hold {id} is still being planned; decide it once it is pending"
            )));
        }
        if hold.status != holds::HoldStatus::Pending {
            return Err(AdminError::Conflict(format!(
                "hold {id} is already {}",
                hold.status
            )));
        }
        Ok(hold)
    }

    /// Confirms a hold: its operations run (they become pending, due now). Returns how many
    /// operations were released.
    pub fn confirm_hold(&self, id: &str, by: &str) -> AdminResult<usize> {
        let hold = self.pending_hold(id)?;
        self.decision_tx(|c| {
            // Read on each run (a re-run after a deadlock decides at its own time).
            let now = self.now();
            // The users' rows before the hold's, in the order a plan takes them (as a discard
            // does): the users planned again below are locked already.
            holds::lock_held_users(c, id)?;
            if !holds::decide(c, id, holds::HoldStatus::Confirmed, by, now)? {
                return Ok(None);
            }
            holds::lock_held_users(c, id)?;
            let to_plan = holds::held_users_with_open_requests(c, id)?;
            let users = holds::release_ops(c, id, holds::HeldOps::Release, now)?;
            // A held plan ended no approval (the hold might have been discarded); now that its
            // operations run, planning these users again ends what their new role no longer
            // asks, before a later move back could find it still approved. Before the audit
            // appends below, which take the chain head.
            for u in &to_plan {
                self.engine.replan(c, u, Cause::Admin)?;
            }
            for u in &users {
                audit::append(
                    c,
                    &audit::AuditEntry {
                        at: now,
                        actor: by,
                        user_id: u,
                        connector: None,
                        action: "hold",
                        outcome: "confirmed",
                        detail: json!({"hold": id}),
                    },
                )?;
            }
            Ok(Some(hold.operations as usize))
        })?
        .ok_or_else(|| AdminError::Conflict(format!("hold {id} was decided concurrently")))
    }

    /// Discards a hold: its operations never run; the users' planned state goes back to what
    /// the connectors hold, so the next change plans them afresh. Returns how many users.
    pub fn discard_hold(&self, id: &str, by: &str) -> AdminResult<usize> {
        self.pending_hold(id)?;
        self.decision_tx(|c| {
            // Read on each run (a re-run after a deadlock decides at its own time).
            let now = self.now();
            holds::lock_held_users(c, id)?;
            if !holds::decide(c, id, holds::HoldStatus::Discarded, by, now)? {
                return Ok(None);
            }
            // A plan that joined the hold between the first lock and the decision (which
            // waited for it) added users: the decided hold's row, locked now, lets no more
            // join, so this second pass locks the final set before their state is reset. (Its
            // order against a plan of one of them is the opposite; PostgreSQL breaks such a
            // deadlock and the decision runs again.)
            holds::lock_held_users(c, id)?;
            let users = holds::release_ops(c, id, holds::HeldOps::Discard, now)?;
            for u in &users {
                for account in engine_state::accounts(c, u)? {
                    let actual = account.actual.unwrap_or_else(|| "{}".into());
                    let planned = keep_records_mark(&account.planned, &actual);
                    engine_state::put_account(c, u, &account.connector, &planned, &actual, now)?;
                }
                if let Some(mut eu) = engine_state::get_user(c, u)? {
                    eu.state = "active".into();
                    eu.updated = now;
                    engine_state::put_user(c, &eu)?;
                }
                audit::append(
                    c,
                    &audit::AuditEntry {
                        at: now,
                        actor: by,
                        user_id: u,
                        connector: None,
                        action: "hold",
                        outcome: "discarded",
                        detail: json!({"hold": id}),
                    },
                )?;
            }
            Ok(Some(users.len()))
        })?
        .ok_or_else(|| AdminError::Conflict(format!("hold {id} was decided concurrently")))
    }
}

/// The planned record a discard resets to: what the system holds (`actual`), still marked as
/// kept for its records when the planned one was, so that no later plan deletes that account
/// before its records are handed over (the mark is the engine's, the system never reports it).
fn keep_records_mark(planned: &str, actual: &str) -> String {
    use crate::engine::plan::AccountRecord;
    let kept = serde_json::from_str::<AccountRecord>(planned).is_ok_and(|p| p.kept_for_records);
    match serde_json::from_str::<AccountRecord>(actual) {
        Ok(mut a) if kept && a.exists => {
            a.kept_for_records = true;
            serde_json::to_string(&a).unwrap_or_else(|_| actual.to_string())
        }
        _ => actual.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::keep_records_mark;

    /// A discard resets the planned record to what the system holds, keeping the engine's
    /// mark of an account kept for its records (and only for an account that exists).
    #[test]
    fn a_discard_keeps_the_records_mark() {
        let kept = r#"{"exists":true,"enabled":false,"key":"dan","kept_for_records":true}"#;
        let actual = r#"{"exists":true,"enabled":false,"key":"dan","attributes_hash":"h"}"#;
        let reset: serde_json::Value =
            serde_json::from_str(&keep_records_mark(kept, actual)).unwrap();
        assert_eq!(reset["kept_for_records"], true);
        assert_eq!(reset["attributes_hash"], "h");
        let plain = r#"{"exists":true,"enabled":false,"key":"dan"}"#;
        assert_eq!(keep_records_mark(plain, actual), actual);
        let gone = r#"{"exists":false,"enabled":false,"key":"dan"}"#;
        assert_eq!(keep_records_mark(kept, gone), gone);
        assert_eq!(keep_records_mark(kept, "{}"), "{}");
    }
}
