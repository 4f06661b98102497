//! Onboarding bursts (`engine_bursts`, `engine_burst_plans`): which joiner plans belong to one
//! bulk onboarding, so that one confirmation goes out when all of them reached a final state
//! (`crate::engine::onboarding`).
//!
//! A burst is one /Bulk request or one roster import run (a *scope*, entered by the code that
//! runs it with [`scope`] on the thread that runs its writes), else the joiners one client sends
//! close together (a *window*: a joiner joins the client's open window burst when its last
//! joiner came at most the policy's `onboarding_window` before).

use std::cell::RefCell;

use chrono::{DateTime, Duration, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{OptionalExtension, Queryable, RunQueryDsl};

use super::sql::{Bind, Sql};
use super::{fmt_ts, parse_ts, DbConnection};
use crate::error::{HubError, HubResult};

/// Where a burst came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BurstSource {
    /// One /Bulk request.
    Bulk,
    /// One `scimhub import` run.
    Import,
    /// One client's joiners close together.
    Window,
}

impl BurstSource {
    pub fn as_str(self) -> &'static str {
        match self {
            BurstSource::Bulk => "bulk",
            BurstSource::Import => "import",
            BurstSource::Window => "window",
        }
    }

    fn from_stored(s: &str) -> HubResult<BurstSource> {
        match s {
            "bulk" => Ok(BurstSource::Bulk),
            "import" => Ok(BurstSource::Import),
            "window" => Ok(BurstSource::Window),
            other => Err(HubError::Backend(format!("unknown burst source {other:?}"))),
        }
    }
}

/// The scope a write runs in: a /Bulk request or an import run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub source: BurstSource,
    /// Unique per request or run (the bulk's request id, the import's run id).
    pub key: String,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// While alive, joiners planned on this thread belong to the burst of its scope.
#[derive(Debug)]
pub struct ScopeGuard {
    previous: Option<Scope>,
}

/// Enters the burst scope `source`/`key` on this thread (until the guard is dropped).
pub fn scope(source: BurstSource, key: &str) -> ScopeGuard {
    let previous = SCOPE.with(|s| {
        s.replace(Some(Scope {
            source,
            key: format!("{}:{key}", source.as_str()),
        }))
    });
    ScopeGuard { previous }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        SCOPE.with(|s| *s.borrow_mut() = previous);
    }
}

/// The scope of this thread, if any.
pub fn current_scope() -> Option<Scope> {
    SCOPE.with(|s| s.borrow().clone())
}

/// A burst as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Burst {
    pub id: String,
    pub source: BurstSource,
    pub client: String,
    pub started: DateTime<Utc>,
    /// When its last joiner was planned.
    pub last_at: DateTime<Utc>,
    /// When its confirmation was queued (or the burst closed without one).
    pub reported: Option<DateTime<Utc>>,
    /// The request or run that scoped it ended (no joiner can join it any more).
    pub sealed: bool,
}

#[derive(Queryable)]
struct BurstRecord {
    id: String,
    source: String,
    client: String,
    started: String,
    last_at: String,
    reported: Option<String>,
    sealed: i64,
}

type BurstSt = (Text, Text, Text, Text, Text, Nullable<Text>, BigInt);

const BURST_COLS: &str =
    "SELECT id, source, client, started, last_at, reported, sealed FROM engine_bursts ";

fn ts(s: &str) -> HubResult<DateTime<Utc>> {
    parse_ts(s).ok_or_else(|| HubError::Backend(format!("bad stored time {s:?}")))
}

impl TryFrom<BurstRecord> for Burst {
    type Error = HubError;
    fn try_from(r: BurstRecord) -> HubResult<Burst> {
        Ok(Burst {
            id: r.id,
            source: BurstSource::from_stored(&r.source)?,
            client: r.client,
            started: ts(&r.started)?,
            last_at: ts(&r.last_at)?,
            reported: r.reported.as_deref().map(ts).transpose()?,
            sealed: r.sealed != 0,
        })
    }
}

/// Records the joiner plan `plan_id` of `user_id`, written by `client`, in its burst: the
/// thread's scope's, else the client's window burst (a new one when its last joiner is older
/// than `window`). Returns the burst's id.
pub fn join(
    c: &mut DbConnection,
    client: &str,
    plan_id: &str,
    user_id: &str,
    window: Duration,
    now: DateTime<Utc>,
) -> HubResult<String> {
    let scope = current_scope();
    // A few turns at most: two writes of one import run join at once on PostgreSQL (its two
    // group-commit writers), and the second's insert of the scope's burst, meeting the first's
    // in the unique index, does nothing and joins that burst on its next turn instead of
    // failing the write with a uniqueness error. A window burst has no such key: a joiner that
    // finds none takes the client's lock (`cluster::lock_client_window`) and looks again,
    // locked, before it opens one; joining an open window takes no lock.
    let mut window_locked = false;
    let mut found = None;
    for _ in 0..4 {
        let open = match &scope {
            Some(s) => find_open_scoped(c, s)?,
            None => find_open_window(c, client, window, now, window_locked)?,
        };
        if let Some(id) = open {
            if touch_open(c, &id, now)? {
                found = Some(id);
                break;
            }
        }
        // PostgreSQL only: SQLite's one writer already keeps a client's joiners in turn.
        if scope.is_none() && !window_locked && matches!(c, DbConnection::Postgresql(_)) {
            super::cluster::lock_client_window(c, client)?;
            window_locked = true;
            continue;
        }
        if let Some(id) = insert_burst(c, scope.as_ref(), client, now)? {
            found = Some(id);
            break;
        }
    }
    let Some(id) = found else {
        return Err(HubError::TxConflict(
            "an onboarding burst was opened and closed meanwhile, again and again".into(),
        ));
    };
    let mut q =
        Sql::<()>::new("INSERT INTO engine_burst_plans (burst_id, plan_id, user_id, at) VALUES (");
    q.text(id.as_str())
        .push(", ")
        .text(plan_id)
        .push(", ")
        .text(user_id)
        .push(", ")
        .text(fmt_ts(now))
        .push(")");
    q.execute(c)?;
    Ok(id)
}

/// The open burst of `scope` (one /Bulk request or import run), if any.
fn find_open_scoped(c: &mut DbConnection, scope: &Scope) -> HubResult<Option<String>> {
    let mut q =
        Sql::<Text>::new("SELECT id FROM engine_bursts WHERE reported IS NULL AND scope_key = ");
    q.text(scope.key.as_str());
    Ok(q.get_result::<String>(c).optional()?)
}

/// The client's newest open window burst, if its last joiner came within `window`. `locked`
/// (once the client's lock is held) reads it `FOR UPDATE` on PostgreSQL: a joiner that moves
/// its `last_at` takes no client lock, and read unlocked, a burst it was just keeping open
/// looked lapsed, so a second burst was opened beside it; locked, the read waits for that
/// joiner's commit and sees its time.
fn find_open_window(
    c: &mut DbConnection,
    client: &str,
    window: Duration,
    now: DateTime<Utc>,
    locked: bool,
) -> HubResult<Option<String>> {
    let mut q = Sql::<(Text, Text)>::new(
        "SELECT id, last_at FROM engine_bursts WHERE reported IS NULL AND source = 'window' \
         AND client = ",
    );
    q.text(client).push(" ORDER BY last_at DESC");
    q.limit(1);
    if locked {
        super::resources::lock_for_write(c, &mut q);
    }
    let newest = q.get_result::<(String, String)>(c).optional()?;
    // Stored timestamps sort as text; an older open window of the client has lapsed if the
    // newest has.
    let since = fmt_ts(now - window);
    Ok(newest.and_then(|(id, last_at)| (last_at >= since).then_some(id)))
}

/// Moves an open burst's `last_at`; false when it was closed since it was read (its
/// confirmation queued), as a plan added to a closed burst would never be reported. The update
/// takes the burst's row lock, which [`lock_open`] takes before the burst is judged, so a
/// joiner and the closing run take turns.
fn touch_open(c: &mut DbConnection, id: &str, now: DateTime<Utc>) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_bursts SET last_at = ");
    q.text(fmt_ts(now))
        .push(" WHERE reported IS NULL AND id = ")
        .text(id);
    Ok(q.execute(c)? == 1)
}

/// A new open burst; `None` when `scope` has one already (another write of the request or run
/// opened it meanwhile).
fn insert_burst(
    c: &mut DbConnection,
    scope: Option<&Scope>,
    client: &str,
    now: DateTime<Utc>,
) -> HubResult<Option<String>> {
    let id = uuid::Uuid::now_v7().to_string();
    let source = scope.map_or(BurstSource::Window, |s| s.source);
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_bursts (id, source, scope_key, client, started, last_at, mailed) \
         VALUES (",
    );
    q.text(id.as_str())
        .push(", ")
        .text(source.as_str())
        .push(", ");
    q.bind(Bind::OptText(scope.map(|s| s.key.clone())))
        .push(", ")
        .text(client)
        .push(", ")
        .text(fmt_ts(now))
        .push(", ")
        .text(fmt_ts(now))
        .push(", 0)");
    if scope.is_some() {
        q.push(" ON CONFLICT (scope_key) WHERE reported IS NULL DO NOTHING");
    }
    Ok((q.execute(c)? == 1).then_some(id))
}

/// Bursts whose confirmation is not queued yet, oldest first.
pub fn open(c: &mut DbConnection) -> HubResult<Vec<Burst>> {
    let mut q = Sql::<BurstSt>::new(BURST_COLS);
    q.push("WHERE reported IS NULL ORDER BY started, id");
    q.load::<BurstRecord>(c)?
        .into_iter()
        .map(Burst::try_from)
        .collect()
}

/// The burst `id` while it is open (not closed yet), its row locked until the transaction ends
/// (PostgreSQL; SQLite has one writer): a joiner's [`join`] waits, so the plans read after it
/// are all the burst will have if the caller closes it.
pub fn lock_open(c: &mut DbConnection, id: &str) -> HubResult<Option<Burst>> {
    let mut q = Sql::<BurstSt>::new(BURST_COLS);
    q.push("WHERE reported IS NULL AND id = ").text(id);
    super::resources::lock_for_write(c, &mut q);
    q.get_result::<BurstRecord>(c)
        .optional()?
        .map(Burst::try_from)
        .transpose()
}

/// One burst.
pub fn get(c: &mut DbConnection, id: &str) -> HubResult<Option<Burst>> {
    let mut q = Sql::<BurstSt>::new(BURST_COLS);
    q.push("WHERE id = ").text(id);
    q.get_result::<BurstRecord>(c)
        .optional()?
        .map(Burst::try_from)
        .transpose()
}

/// A joiner plan of a burst.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct BurstPlan {
    pub plan_id: String,
    pub user_id: String,
}

/// The joiner plans of a burst, in the order they were planned.
pub fn plans(c: &mut DbConnection, burst_id: &str) -> HubResult<Vec<BurstPlan>> {
    let mut q = Sql::<(Text, Text)>::new(
        "SELECT plan_id, user_id FROM engine_burst_plans WHERE burst_id = ",
    );
    q.text(burst_id).push(" ORDER BY at, plan_id");
    Ok(q.load::<BurstPlan>(c)?)
}

/// Closes a burst: its confirmation was queued (`mailed`) or is not to be sent. False when
/// another runner closed it first.
pub fn close(c: &mut DbConnection, id: &str, mailed: bool, now: DateTime<Utc>) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_bursts SET reported = ");
    q.text(fmt_ts(now))
        .push(", mailed = ")
        .int(i64::from(mailed))
        .push(" WHERE reported IS NULL AND id = ")
        .text(id);
    Ok(q.execute(c)? > 0)
}

/// Seals the burst of a request or run that ended (`source`/`key` as given to [`scope`]); none
/// when it planned no joiner.
pub fn seal(c: &mut DbConnection, source: BurstSource, key: &str) -> HubResult<()> {
    let mut q = Sql::<()>::new("UPDATE engine_bursts SET sealed = 1 WHERE scope_key = ");
    q.text(format!("{}:{key}", source.as_str()));
    q.execute(c)?;
    Ok(())
}

/// Whether an operation of one of the burst's plans is still queued or running (the cheap
/// check before reading the whole outcome).
pub fn in_progress(c: &mut DbConnection, burst_id: &str) -> HubResult<bool> {
    let mut q =
        Sql::<Text>::new("SELECT bp.plan_id FROM engine_burst_plans bp WHERE bp.burst_id = ");
    q.text(burst_id).push(
        " AND EXISTS (SELECT 1 FROM engine_outbox o WHERE o.plan_id = bp.plan_id \
         AND o.status IN ('pending', 'running'))",
    );
    q.limit(1);
    Ok(q.get_result::<String>(c).optional()?.is_some())
}

/// Whether a closed burst's confirmation was queued.
pub fn mailed(c: &mut DbConnection, id: &str) -> HubResult<bool> {
    let mut q = Sql::<BigInt>::new("SELECT mailed FROM engine_bursts WHERE id = ");
    q.text(id);
    Ok(q.get_result::<i64>(c).optional()?.unwrap_or(0) != 0)
}
