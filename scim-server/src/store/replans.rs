//! Durable re-plans (`engine_replan_users`): the users a large group change re-plans in the
//! background, keyed by the change's staging hold ([`super::holds::HoldStatus::Staging`]). The
//! SCIM write only records who to plan; a runner plans them in batches, each batch deleting the
//! rows of the users it planned in the transaction that planned them, so a crash repeats at
//! most the batch that did not commit and no user is planned twice.

use diesel::sql_types::{BigInt, Text};
use diesel::{OptionalExtension, RunQueryDsl};

use super::sql::Sql;
use super::DbConnection;
use crate::error::HubResult;

/// Records `users` to re-plan under `hold_id`.
pub fn enqueue(c: &mut DbConnection, hold_id: &str, users: &[String]) -> HubResult<()> {
    // In chunks: SQLite binds at most 32,766 parameters per statement.
    for chunk in users.chunks(1000) {
        let mut q = Sql::<()>::new("INSERT INTO engine_replan_users (hold_id, user_id) VALUES ");
        for (i, u) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.push("(")
                .text(hold_id)
                .push(", ")
                .text(u.as_str())
                .push(")");
        }
        q.push(" ON CONFLICT DO NOTHING");
        q.execute(c)?;
    }
    Ok(())
}

/// Records every user the engine knows to re-plan under `hold_id`, in one statement (a group
/// deleted or emptied: its former members are no longer stored); returns how many.
pub fn enqueue_all(c: &mut DbConnection, hold_id: &str) -> HubResult<usize> {
    let mut q = Sql::<()>::new("INSERT INTO engine_replan_users (hold_id, user_id) SELECT ");
    // `WHERE` before `ON CONFLICT`: SQLite would read `ON` as a join constraint.
    q.text(hold_id)
        .push(", user_id FROM engine_users WHERE 1 = 1 ON CONFLICT DO NOTHING");
    Ok(q.execute(c)?)
}

/// The oldest re-plan with users left (its staging hold's id).
pub fn next(c: &mut DbConnection) -> HubResult<Option<String>> {
    let q = Sql::<Text>::new(
        "SELECT r.hold_id FROM engine_replan_users r JOIN engine_holds h ON h.id = r.hold_id \
         WHERE h.status = 'staging' ORDER BY h.created, h.id LIMIT 1",
    );
    Ok(q.get_result::<String>(c).optional()?)
}

/// The next `limit` users of re-plan `hold_id`, in user id order.
pub fn batch(c: &mut DbConnection, hold_id: &str, limit: i64) -> HubResult<Vec<String>> {
    let mut q = Sql::<Text>::new("SELECT user_id FROM engine_replan_users WHERE hold_id = ");
    q.text(hold_id).push(" ORDER BY user_id").limit(limit);
    Ok(q.load::<String>(c)?)
}

/// `users` of re-plan `hold_id` are planned.
pub fn done(c: &mut DbConnection, hold_id: &str, users: &[String]) -> HubResult<()> {
    for chunk in users.chunks(1000) {
        let mut q = Sql::<()>::new("DELETE FROM engine_replan_users WHERE hold_id = ");
        q.text(hold_id)
            .push(" AND user_id IN (")
            .text_list(chunk.iter().map(String::as_str))
            .push(")");
        q.execute(c)?;
    }
    Ok(())
}

/// How many users of re-plan `hold_id` are left.
pub fn remaining(c: &mut DbConnection, hold_id: &str) -> HubResult<i64> {
    let mut q = Sql::<BigInt>::new("SELECT COUNT(*) FROM engine_replan_users WHERE hold_id = ");
    q.text(hold_id);
    Ok(q.get_result::<i64>(c)?)
}

/// How many users the engine knows (who a group deleted or emptied re-plans).
pub fn known_users(c: &mut DbConnection) -> HubResult<i64> {
    let q = Sql::<BigInt>::new("SELECT COUNT(*) FROM engine_users");
    Ok(q.get_result::<i64>(c)?)
}
