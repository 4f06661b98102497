//! The diesel store: SCIM resources, group memberships, API tokens and the lifecycle engine's
//! tables, on SQLite or PostgreSQL. One module per table family:
//!
//! | module | holds |
//! |---|---|
//! | `resources` | resource CRUD through the one write path |
//! | `columns` | indexed columns extracted from a document, case folding |
//! | `assemble` | a row as read, and the response document built from it |
//! | `members` | group membership (`group_members`), member deltas |
//! | `users` | User lookups by id or userName, a user's groups |
//! | `filter_sql` | a filter as a SQL condition (a `FilterFold`), the columns it can use |
//! | `search` | running a search: push-down, in-memory rest, sorting, paging, cursors |
//! | `in_memory_filter` | what search cannot push down, evaluated in memory |
//! | `tokens` | API tokens |
//! | [`engine_state`] | the engine's per-user state and planned/actual accounts |
//! | [`outbox`] | the operation queue: enqueue, claim, finish, retry, park, list |
//! | [`events`], [`holds`], [`audit`], [`incidents`] | engine events, blast-radius holds, the audit trail, incidents |
//! | [`approvals`] | approval requests and overrides |
//! | [`timers`], [`notifications`] | durable timers, the notification outbox |
//!
//! # Shape
//!
//! * A resource is one `resources` row: its JSON document (`doc`, without `id`, `meta`, Group
//!   `members` and User `groups`) plus indexed columns for what uniqueness and filters need
//!   (`user_name_folded`, `display_name_folded`, `external_id` + `external_id_client`, `active`,
//!   `created`, `last_modified`, `version`, enterprise `employeeNumber` and `manager.value`).
//!   `resource_values` holds the values of multi-valued attributes used by filters (`emails`).
//! * Group membership lives in `group_members`, one row per member, never as an array that is
//!   rewritten: adding one member to a group of 100,000 costs what it costs for a group of 10.
//!   A User's `groups` (direct and indirect through nested groups) is computed on read by one
//!   recursive query.
//! * `meta.version` is a counter; its weak ETag is `W/"<version>"` ([`etag`]).
//! * Filters are pushed down to SQL where the attribute has a column (`search`); the rest is
//!   evaluated in memory over the candidate set the pushed-down part narrows, in batches.
//! * Rows are read into named structs (diesel `Queryable`), never tuples read by position;
//!   statuses and kinds stored as text are enums whose text is fixed in one place (`text_enum`).
//!
//! # Connections
//!
//! SQLite runs with WAL and one writer: writes go through a separate pool of exactly one
//! connection (so concurrent writes queue instead of failing with "database is locked"), reads
//! through a pool of several. PostgreSQL uses one pool for both, each connection with the
//! session settings of [`PgSession`] (statement timeout), tested on checkout only when it has
//! not answered for a second (`conn::Liveness`). A pool timeout is
//! [`HubError::Unavailable`] (503). On PostgreSQL the SCIM writes go through
//! [`Store::write_tx_retry`], which re-runs a transaction aborted by a serialization failure or
//! deadlock or by a connection lost before COMMIT; a connection lost during COMMIT is
//! [`HubError::OutcomeUnknown`].
//!
//! # The write seam (for the lifecycle engine)
//!
//! Every write — create, replace, update, delete, member delta — runs through one internal
//! function, `Store::write_tx`, which opens the write transaction, lets the operation do its
//! work and record a [`Change`] (resource type, id, the document before and after, members
//! added and removed), then hands each change to the optional [`WriteHook`] **inside the same
//! transaction**, before commit. The engine implements `WriteHook`: it computes the desired
//! state and writes its plan (outbox operations, approvals, timers, audit entries) with the same
//! connection, so a SCIM write and its plan commit or roll back together. A hook error aborts
//! the write. The engine-table functions therefore take a `&mut DbConnection` rather than the
//! `Store`: they run inside the caller's transaction.
//!
//! # Errors
//!
//! Every operation returns [`HubError`]; diesel and r2d2 errors are mapped once, in
//! [`crate::error::map_diesel`].

// SCIM resources.
mod assemble;
mod columns;
mod filter_sql;
mod in_memory_filter;
mod members;
mod resources;
mod search;
mod users;

// API tokens.
mod tokens;

// Connections, the write path and its SQLite helpers.
mod batch;
mod checkpoint;
mod conn;
mod local_reader;
mod pg_ranks;
mod pg_reader;
mod ranks;
mod schema;
mod sql;
mod text_enum;
mod type_counts;
mod write_hook;

// Lifecycle engine tables (see `crate::engine`), one module per table family.
pub mod approvals;
pub mod audit;
pub mod audit_chain;
pub mod bursts;
pub mod certification;
pub mod cluster;
pub mod connector_health;
pub mod drift;
pub mod engine_state;
pub mod events;
pub mod grants;
pub mod holds;
pub mod incidents;
pub mod maintenance;
pub mod metrics;
pub mod notifications;
pub mod outbox;
pub mod policy_applied;
pub mod replans;
pub mod report_archives;
pub mod roster;
pub mod timers;
pub mod verifications;

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;
use std::time::Duration;

use crate::error::{HubError, HubResult};
use chrono::{DateTime, SecondsFormat, Utc};
use diesel::migration::MigrationVersion;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use serde_json::{Map, Value};

pub use assemble::LoadedResource;
pub use conn::{ConnectionManager, DbConnection, DbUrl, MultiBackend, PgSession};
pub use members::{direct_members, parse_members, DirectMember, MemberRow};
pub use search::{Page, SearchQuery, BOUNDED_MAX_MEMBERS, BOUNDED_MAX_OFFSET};
pub use tokens::ApiToken;
pub(crate) use type_counts::{OtherWriters, TypeCounts};
pub use users::GroupRef;
pub use write_hook::{Change, ChangeOp, WriteHook};

pub(crate) use resources::{load_row, load_row_for_write, lock_users_to_plan, user_row_to_plan};
pub(crate) use users::{find_user_row, find_user_row_by_name, load_groups};

/// Migrations, embedded at build time, one folder per backend.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// A JSON object: a SCIM resource.
pub type Doc = Map<String, Value>;

/// The resource types the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }

    /// "User" or "Group", case-insensitively.
    pub fn parse(s: &str) -> Option<ResourceKind> {
        if s.eq_ignore_ascii_case("User") {
            Some(ResourceKind::User)
        } else if s.eq_ignore_ascii_case("Group") {
            Some(ResourceKind::Group)
        } else {
            None
        }
    }

    /// The endpoint segment: "Users" or "Groups".
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }

    /// The SQL literal for this type. Safe to inline: it is one of two constants, and inlining
    /// lets SQLite use the partial unique index on group display names.
    pub(crate) fn sql_literal(self) -> &'static str {
        match self {
            ResourceKind::User => "'User'",
            ResourceKind::Group => "'Group'",
        }
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource as stored, with its document assembled for the response: `id`, the stored
/// attributes, `meta` (`resourceType`, `created`, `lastModified`, `version`, and `location` when
/// the store knows the base URL) and, when requested, Group `members` or User `groups`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub kind: ResourceKind,
    pub id: String,
    pub version: i64,
    pub created: DateTime<Utc>,
    pub last_modified: DateTime<Utc>,
    pub doc: Doc,
    /// [`groups_digest`] of the User `groups` the document carries, if any.
    pub groups_digest: Option<u64>,
}

impl StoredResource {
    /// The weak ETag of this representation ([`resource_etag`]).
    pub fn etag(&self) -> String {
        resource_etag(self.version, self.groups_digest)
    }
}

/// A digest of a User's `groups` as returned (id, display name, direct or not, in order), or
/// `None` when there are none. A User's version counts changes to the User itself; its groups
/// change with other resources (a Group's members, a rename, a nested group), so the ETag
/// carries this digest beside the version: a client revalidating with `If-None-Match` then sees
/// a membership change. FNV-1a, so the tag is the same on every node and release.
pub fn groups_digest(groups: Option<&[GroupRef]>) -> Option<u64> {
    let groups = groups.filter(|g| !g.is_empty())?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for g in groups {
        eat(g.group_id.as_bytes());
        eat(&[0, u8::from(g.direct), u8::from(g.display.is_some())]);
        eat(g.display.as_deref().unwrap_or("").as_bytes());
        eat(&[0]);
    }
    Some(h)
}

/// The weak ETag of a representation: `W/"<version>"`, or `W/"<version>.<digest>"` for a User
/// returned with groups ([`groups_digest`]). Preconditions on writes compare the version part
/// only ([`if_match_ok`]): `groups` is read-only, so a write cannot undo a membership change.
pub fn resource_etag(version: i64, groups_digest: Option<u64>) -> String {
    match groups_digest {
        None => etag(version),
        Some(d) => format!("W/\"{version}.{d:016x}\""),
    }
}

/// The weak ETag of `version`: `W/"<version>"`.
pub fn etag(version: i64) -> String {
    // Every resource response carries one; `format!` costs several times this.
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(version);
    let mut tag = String::with_capacity(digits.len() + 4);
    tag.push_str("W/\"");
    tag.push_str(digits);
    tag.push('"');
    tag
}

/// One member to add to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    pub value: String,
    /// "User" or "Group" as sent by the client; the store records the member's real type.
    pub member_type: Option<String>,
    pub display: Option<String>,
}

impl NewMember {
    pub fn new(value: impl Into<String>) -> Self {
        NewMember {
            value: value.into(),
            member_type: None,
            display: None,
        }
    }
}

/// Which members a delta removes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MemberRemoval {
    #[default]
    None,
    /// Every member (PATCH `remove` of `members` without a filter, or `replace` of `members`).
    All,
    Ids(Vec<String>),
}

/// The result of a membership change: the group's meta after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDeltaOutcome {
    pub version: i64,
    pub last_modified: DateTime<Utc>,
    /// Whether any row changed (when not, version and lastModified stay as they were).
    pub changed: bool,
}

/// Pool and document settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Reader connections (SQLite) or all connections (PostgreSQL).
    pub pool_size: u32,
    /// How long a request waits for a connection before [`HubError::Unavailable`].
    pub connection_timeout: Duration,
    /// Base URL of the SCIM endpoint (e.g. `https://hub.example.com/scim/v2`); when set,
    /// documents carry `meta.location` and `$ref`s.
    pub base_url: Option<String>,
    /// Connections kept open while idle. A server keeps one warm; a short-lived command
    /// (`migrate`, `token issue`) wants none, because r2d2 replenishes idle connections on its
    /// own threads and a connection still being opened while the process exits crashed libpq.
    pub min_idle: u32,
    /// PostgreSQL session settings (statement timeout and others) of every pooled connection.
    pub pg: PgSession,
    /// How often a PostgreSQL write transaction that can be re-run is tried in all, when it
    /// fails with a serialization failure or deadlock (SQLSTATE 40001, 40P01) or loses its
    /// connection before COMMIT (see [`Store::write_tx_retry`]). At least 1.
    pub write_attempts: u32,
    /// Let threads read with connections of their own: on SQLite files any thread that opts in
    /// ([`Store::read_here`]), on PostgreSQL the async workers' point reads
    /// ([`Store::get_loaded_on_worker`]).
    pub worker_readers: bool,
    /// SQLite files: a thread's own reader keeps its read transaction (its snapshot) between
    /// reads for at most this long while this process commits nothing, which spares SQLite's
    /// lock and unlock of each read (see `local_reader`). What another process commits on the
    /// file is seen this much later at most. Zero: every read its own transaction.
    pub reader_snapshot: Duration,
    /// Single-resource SCIM writes share transactions when they arrive together (group commit,
    /// see [`batch`]) on a SQLite file or PostgreSQL; `false` runs each in its own.
    pub group_commit: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pool_size: 8,
            // Short: a request that cannot get a connection is answered 503 with Retry-After
            // rather than held until the client's own timeout.
            connection_timeout: Duration::from_secs(5),
            base_url: None,
            min_idle: 1,
            pg: PgSession::default(),
            write_attempts: 4,
            worker_readers: true,
            reader_snapshot: Duration::from_millis(5),
            group_commit: true,
        }
    }
}

type Pool = r2d2::Pool<ConnectionManager>;
type PooledConn = r2d2::PooledConnection<ConnectionManager>;

/// A reader connection: from the pool, or the calling thread's own (see [`local_reader`]).
pub(crate) enum ReadConn {
    Pooled(PooledConn),
    Local(local_reader::LocalConn),
}

impl std::ops::Deref for ReadConn {
    type Target = DbConnection;
    fn deref(&self) -> &DbConnection {
        match self {
            ReadConn::Pooled(c) => c,
            ReadConn::Local(c) => c,
        }
    }
}

impl std::ops::DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut DbConnection {
        match self {
            ReadConn::Pooled(c) => c,
            ReadConn::Local(c) => c,
        }
    }
}

/// The store. Cheap to clone; all methods block (call them from `web::block` or a blocking
/// thread pool).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    read: Pool,
    write: Pool,
    url: DbUrl,
    base_url: Option<String>,
    hook: Option<Arc<dyn WriteHook>>,
    clock: fn() -> DateTime<Utc>,
    /// Tries per re-runnable PostgreSQL write ([`StoreOptions::write_attempts`]).
    write_attempts: u32,
    /// The pooled PostgreSQL connections' session settings.
    pg: PgSession,
    /// `None` on PostgreSQL: other processes may write there, so it always counts.
    type_counts: Option<Arc<TypeCounts>>,
    /// `None` on PostgreSQL, for the same reason (see [`ranks`]).
    id_ranks: Option<Arc<ranks::IdRanks>>,
    /// PostgreSQL's id ranks, checked against the database on every use (see [`pg_ranks`]).
    pg_ranks: Option<Arc<pg_ranks::PgIdRanks>>,
    /// SQLite: other processes' creates and deletes, which drop the two caches above.
    other_writers: Option<Arc<OtherWriters>>,
    /// Whether single-resource writes go through the group-commit writer
    /// ([`Store::batches_writes`]).
    group_commit: bool,
    /// The group-commit writer thread, started by the first [`Store::submit_write`].
    writer: Arc<std::sync::OnceLock<batch::WriteQueue>>,
    /// The background WAL checkpointer (SQLite files only), started by the first commit.
    checkpointer: Arc<std::sync::OnceLock<checkpoint::Checkpointer>>,
    /// SQLite files: this store's thread-owned readers ([`Store::read_here`]).
    local_readers: Option<Arc<local_reader::LocalReaders>>,
    /// PostgreSQL: the async workers' own reader connections ([`pg_reader`]).
    pg_readers: Option<Arc<pg_reader::PgReaders>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("sqlite", &self.inner.url.is_sqlite())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database at `url` with default options and runs pending migrations.
    pub fn open(url: &str) -> HubResult<Store> {
        Store::open_with(url, StoreOptions::default())
    }

    /// Opens the database at `url` and runs pending migrations.
    pub fn open_with(url: &str, options: StoreOptions) -> HubResult<Store> {
        let url = DbUrl::parse(url)?;
        let build = |size: u32| {
            r2d2::Pool::builder()
                .max_size(size.max(1))
                // A SQLite connection cannot go stale, and the check costs a parsed `SELECT 1` per
                // checkout; a PostgreSQL connection can (server restart, idle timeout).
                .test_on_check_out(!url.is_sqlite())
                .min_idle(Some(options.min_idle.min(size.max(1))))
                .connection_timeout(options.connection_timeout)
                .build(ConnectionManager::with_session(url.clone(), options.pg))
                .map_err(|e| HubError::Unavailable(e.to_string()))
        };
        let (read, write) = match &url {
            DbUrl::Postgres(_) => {
                let pool = build(options.pool_size)?;
                (pool.clone(), pool)
            }
            // One private database: reads and writes share its one connection.
            DbUrl::SqliteMemory => {
                let pool = build(1)?;
                (pool.clone(), pool)
            }
            DbUrl::SqliteFile(_) => {
                // The writer first, so the file exists and is in WAL mode before readers open it.
                let write = build(1)?;
                drop(write.get()?);
                (build(options.pool_size)?, write)
            }
        };
        let local_readers =
            (options.worker_readers && matches!(url, DbUrl::SqliteFile(_))).then(|| {
                Arc::new(local_reader::LocalReaders::new(
                    url.clone(),
                    local_reader::ReaderOptions {
                        snapshot_for: options.reader_snapshot,
                    },
                ))
            });
        let pg_readers = match &url {
            DbUrl::Postgres(u) if options.worker_readers => {
                match pg_reader::PgReaders::new(u, &options.pg) {
                    Ok(r) => Some(Arc::new(r)),
                    Err(why) => {
                        tracing::info!(%why, "PostgreSQL reads all go through the pool");
                        None
                    }
                }
            }
            _ => None,
        };
        let type_counts = url.is_sqlite().then(Arc::default);
        let id_ranks = url.is_sqlite().then(Arc::default);
        let pg_ranks = (!url.is_sqlite()).then(Arc::default);
        let other_writers = url.is_sqlite().then(|| Arc::new(OtherWriters::new()));
        // In-memory SQLite shares its one connection with readers.
        let group_commit = options.group_commit && !matches!(url, DbUrl::SqliteMemory);
        let store = Store {
            inner: Arc::new(Inner {
                read,
                write,
                url,
                base_url: options
                    .base_url
                    .map(|b| b.trim_end_matches('/').to_string()),
                hook: None,
                clock: Utc::now,
                write_attempts: options.write_attempts.max(1),
                pg: options.pg,
                type_counts,
                id_ranks,
                pg_ranks,
                other_writers,
                group_commit,
                writer: Arc::default(),
                checkpointer: Arc::default(),
                local_readers,
                pg_readers,
            }),
        };
        store.migrate()?;
        // Entries written before the chain existed join it once (see `audit_chain`).
        audit_chain::seal_legacy(&mut *store.inner.write.get()?)?;
        Ok(store)
    }

    /// Installs the write hook (see the module docs). Call before sharing the store.
    pub fn with_hook(self, hook: Arc<dyn WriteHook>) -> Store {
        self.rebuild(|inner| inner.hook = Some(hook))
    }

    /// Replaces the clock used for `meta.created`/`lastModified` and token timestamps (tests).
    pub fn with_clock(self, clock: fn() -> DateTime<Utc>) -> Store {
        self.rebuild(|inner| inner.clock = clock)
    }

    fn rebuild(self, f: impl FnOnce(&mut Inner)) -> Store {
        let mut inner = Inner {
            read: self.inner.read.clone(),
            write: self.inner.write.clone(),
            url: self.inner.url.clone(),
            base_url: self.inner.base_url.clone(),
            hook: self.inner.hook.clone(),
            clock: self.inner.clock,
            write_attempts: self.inner.write_attempts,
            pg: self.inner.pg,
            type_counts: self.inner.type_counts.clone(),
            id_ranks: self.inner.id_ranks.clone(),
            pg_ranks: self.inner.pg_ranks.clone(),
            other_writers: self.inner.other_writers.clone(),
            group_commit: self.inner.group_commit,
            writer: self.inner.writer.clone(),
            checkpointer: self.inner.checkpointer.clone(),
            local_readers: self.inner.local_readers.clone(),
            pg_readers: self.inner.pg_readers.clone(),
        };
        f(&mut inner);
        Store {
            inner: Arc::new(inner),
        }
    }

    /// Runs pending migrations; returns the versions applied.
    pub fn migrate(&self) -> HubResult<Vec<String>> {
        let names =
            |v: Vec<MigrationVersion<'_>>| v.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        if let DbUrl::Postgres(_) = &self.inner.url {
            // A connection of its own without the statement timeout: building an index over a
            // large table may take longer than any request should.
            let unlimited = PgSession {
                connect_timeout: self.inner.pg.connect_timeout,
                ..PgSession::unlimited()
            };
            let mut conn = conn::establish_with(&self.inner.url, &unlimited)
                .map_err(|e| HubError::Unavailable(e.to_string()))?;
            if let DbConnection::Postgresql(c) = &mut conn {
                return c
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(names)
                    .map_err(|e| HubError::Backend(format!("migration failed: {e}")));
            }
        }
        let mut conn = self.inner.write.get()?;
        match &mut *conn {
            DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(names),
            DbConnection::Postgresql(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(names),
        }
        .map_err(|e| HubError::Backend(format!("migration failed: {e}")))
    }

    /// Whether this store runs on SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.inner.url.is_sqlite()
    }

    /// Checks that a connection can be taken and answers (for `/healthz`).
    pub fn ping(&self) -> HubResult<()> {
        use diesel::connection::SimpleConnection;
        self.read_conn()?.batch_execute("SELECT 1")?;
        Ok(())
    }

    /// Runs `f` in a read-only transaction on a reader connection: one consistent snapshot
    /// (`REPEATABLE READ` on PostgreSQL; a read transaction sees one WAL snapshot on SQLite)
    /// that does not wait for or hold the writer. What the reports read through.
    pub fn read_tx<T>(&self, f: impl FnOnce(&mut DbConnection) -> HubResult<T>) -> HubResult<T> {
        let mut pooled = self.read_conn()?;
        let conn: &mut DbConnection = &mut pooled;
        conn.transaction::<T, HubError, _>(|c| {
            if let DbConnection::Postgresql(pg) = c {
                use diesel::connection::SimpleConnection;
                pg.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
            }
            f(c)
        })
    }

    /// A reader connection: inside [`Store::read_here`] the thread's own, else the pool's.
    pub(crate) fn read_conn(&self) -> HubResult<ReadConn> {
        if let Some(local) = self.local_conn() {
            return local;
        }
        Ok(ReadConn::Pooled(self.inner.read.get()?))
    }

    /// A reader connection if one is free now; never waits (r2d2 `try_get`). Always `None` on
    /// PostgreSQL: its point read is a network round trip, and an async worker that waits for
    /// it serves nobody else meanwhile (on one core, one worker: every GET and `eq` lookup ran
    /// one after the other, the hub half idle). There the read goes through the blocking pool.
    pub(crate) fn try_read_conn(&self) -> Option<ReadConn> {
        if !self.is_sqlite() {
            return None;
        }
        match self.local_conn() {
            Some(Ok(c)) => Some(c),
            _ => self.inner.read.try_get().map(ReadConn::Pooled),
        }
    }

    fn local_conn(&self) -> Option<HubResult<ReadConn>> {
        let lent = self.inner.local_readers.as_ref()?.lend()?;
        Some(
            lent.map(ReadConn::Local)
                .map_err(|e| HubError::Unavailable(e.to_string())),
        )
    }

    /// Whether reads can run on the calling thread with a connection of its own
    /// ([`Store::read_here`]): on a SQLite file, whose WAL readers never wait for the writer.
    /// PostgreSQL and in-memory SQLite keep the pool.
    pub fn reads_in_place(&self) -> bool {
        self.inner.local_readers.is_some()
    }

    /// Runs `f` with this thread's own reader connection behind every read it makes (opened on
    /// first use, kept for the thread's life), instead of the pool's: for an async worker, which
    /// then answers a read without a hop to the blocking pool. Writes still take the writer.
    /// Elsewhere than [`Store::reads_in_place`] the reads take the pool as usual.
    pub fn read_here<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        local_reader::opted_in(|| f(self))
    }

    pub(crate) fn type_counts(&self) -> Option<&TypeCounts> {
        self.inner.type_counts.as_deref()
    }

    pub(crate) fn id_ranks(&self) -> Option<&ranks::IdRanks> {
        self.inner.id_ranks.as_deref()
    }

    pub(crate) fn pg_ranks(&self) -> Option<&pg_ranks::PgIdRanks> {
        self.inner.pg_ranks.as_deref()
    }

    /// Drops the SQLite count cache and id ranks when another process (an import beside a
    /// server) created or deleted resources since the last look; call before using either.
    ///
    /// From `c`'s kept snapshot, if it has one: that is at most `reader_snapshot` old, the
    /// staleness allowed for other processes' writes anyway, and renewing it here would cost
    /// every unfiltered list two `fcntl` calls even when the cache answers. A kept snapshot
    /// older than another thread's look reads a smaller sum, which is ignored (the sum only
    /// grows); the caches are filled only from fresh reads.
    pub(crate) fn notice_other_writers(&self, c: &mut DbConnection) -> HubResult<()> {
        if let Some(w) = &self.inner.other_writers {
            if w.changed(c)? {
                if let Some(counts) = &self.inner.type_counts {
                    counts.invalidate();
                }
                if let Some(ranks) = &self.inner.id_ranks {
                    ranks.reset();
                }
            }
        }
        Ok(())
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        (self.inner.clock)()
    }

    /// Runs a single-resource write `f` in a transaction it may share with other writes (group
    /// commit, see [`batch`]); the result arrives once that transaction has committed. Only for
    /// writes whose every read goes through `write_tx`: a shared transaction is invisible to
    /// reader connections until it commits. Only where [`Store::batches_writes`]; elsewhere run
    /// `f` on a blocking thread.
    pub fn submit_write<T, F>(
        &self,
        f: F,
    ) -> HubResult<tokio::sync::oneshot::Receiver<HubResult<T>>>
    where
        T: Send + 'static,
        F: FnMut(&Store) -> HubResult<T> + Send + 'static,
    {
        self.submit_to_writer(batch::Submitted::Write, f)
    }

    /// [`Store::submit_write`] for a SCIM create, which reads nothing before it inserts its
    /// rows: on PostgreSQL its batch may insert them with the other creates' in one statement
    /// (see `batch`).
    pub fn submit_create<T, F>(
        &self,
        f: F,
    ) -> HubResult<tokio::sync::oneshot::Receiver<HubResult<T>>>
    where
        T: Send + 'static,
        F: FnMut(&Store) -> HubResult<T> + Send + 'static,
    {
        self.submit_to_writer(batch::Submitted::Creates, f)
    }

    /// [`Store::submit_write`] for a write that changes User `user_id` (a SCIM PATCH or PUT of
    /// the User) and reads nothing else for change before it: on PostgreSQL its batch may read
    /// and lock the user's row ahead, with those of the other writes of its kind (see `batch`).
    pub fn submit_user_write<T, F>(
        &self,
        user_id: &str,
        f: F,
    ) -> HubResult<tokio::sync::oneshot::Receiver<HubResult<T>>>
    where
        T: Send + 'static,
        F: FnMut(&Store) -> HubResult<T> + Send + 'static,
    {
        self.submit_to_writer(batch::Submitted::ChangesUser(user_id.to_string()), f)
    }

    fn submit_to_writer<T, F>(
        &self,
        what: batch::Submitted,
        f: F,
    ) -> HubResult<tokio::sync::oneshot::Receiver<HubResult<T>>>
    where
        T: Send + 'static,
        F: FnMut(&Store) -> HubResult<T> + Send + 'static,
    {
        if !self.batches_writes() {
            return Err(HubError::Backend(
                "writes are not batched on this store".into(),
            ));
        }
        let queue = started(&self.inner.writer, || {
            let attempts = if self.is_sqlite() {
                1
            } else {
                self.inner.write_attempts
            };
            batch::WriteQueue::start(self.inner.write.clone(), attempts, self.writers())
        })?;
        let store = self.clone();
        let mut f = f;
        Ok(queue.submit(what, move || f(&store)))
    }

    /// Group-commit writer threads. SQLite has one writer. On PostgreSQL a second runs its
    /// batch's statements while the first waits for its COMMIT's WAL flush: PATCH throughput
    /// rose by about 40 % with two, creates stayed as they were, and a third only added
    /// contention (docs/benchmarks.md).
    pub(crate) fn writers(&self) -> usize {
        if self.is_sqlite() {
            1
        } else {
            // Leave the pool at least one connection for everything else.
            (self.inner.write.max_size() as usize)
                .saturating_sub(1)
                .clamp(1, 2)
        }
    }

    /// How deep index pages found their first row on PostgreSQL (ranks checked in the page's
    /// statement, after catching up, or `OFFSET`); `None` on SQLite.
    pub fn pg_deep_page_counts(&self) -> Option<[(&'static str, u64); 3]> {
        self.pg_ranks().map(pg_ranks::PgIdRanks::counts)
    }

    /// How many of the group-commit writer's batches committed `optimistic` (no savepoints)
    /// and `guarded` (a savepoint per write), and how many optimistic runs a failing write
    /// spoiled (`rerun`); `None` before its first write (see [`batch`]).
    pub fn write_batch_counts(&self) -> Option<[(&'static str, u64); 3]> {
        self.inner.writer.get().map(|q| q.stats.counts())
    }

    /// Wakes the background checkpointer (SQLite files; see [`checkpoint`]), starting it on
    /// first use. Without it, SQLite checkpoints inside commits as it always does.
    fn request_checkpoint(&self) {
        let DbUrl::SqliteFile(_) = &self.inner.url else {
            return;
        };
        match started(&self.inner.checkpointer, || {
            checkpoint::Checkpointer::start(self.inner.url.clone())
        }) {
            Ok(cp) => cp.poke(),
            Err(e) => tracing::warn!(error = %e, "no background WAL checkpoints"),
        }
    }

    /// Whether single-resource writes share commits ([`Store::submit_write`]), unless
    /// [`StoreOptions::group_commit`] is off: on a SQLite file, whose one writer serialises them
    /// anyway, and on PostgreSQL, where they are serialised too (each holds the audit chain's
    /// head row through its commit and WAL flush), so that a batch pays one `BEGIN`, one chain
    /// append and one `COMMIT` for all its writes. In-memory SQLite shares its one connection
    /// with readers.
    pub fn batches_writes(&self) -> bool {
        self.inner.group_commit
    }

    /// The one write path: a transaction on the writer connection in which `body` does the work
    /// and records its [`Change`]s, which the hook then sees before commit. On the group-commit
    /// writer thread it runs in the batch's transaction instead (in a savepoint when the batch
    /// is guarded, see [`batch`]), and what follows the commit waits for the batch's. Runs
    /// `body` once; see [`Store::write_tx_retry`].
    pub(crate) fn write_tx<T>(
        &self,
        body: impl FnOnce(&mut DbConnection, &mut Vec<Change>) -> HubResult<T>,
    ) -> HubResult<T> {
        let mut once = Some(body);
        self.write_attempts(1, |c, changes| match once.take() {
            Some(body) => body(c, changes),
            None => Err(HubError::Backend("a write body ran twice".into())),
        })
    }

    /// [`Store::write_tx`] for a `body` that may run more than once: on PostgreSQL, a
    /// transaction that fails with a serialization failure or deadlock (SQLSTATE 40001, 40P01),
    /// or whose connection is lost before COMMIT is sent, certainly did not commit, and is run
    /// again from the start on a fresh connection (up to [`StoreOptions::write_attempts`] in
    /// all). Only for bodies whose every effect is in the transaction: what they read and decide
    /// is read and decided again.
    pub(crate) fn write_tx_retry<T>(
        &self,
        body: impl FnMut(&mut DbConnection, &mut Vec<Change>) -> HubResult<T>,
    ) -> HubResult<T> {
        self.write_attempts(self.inner.write_attempts, body)
    }

    /// [`Store::write_tx_retry`] for a body that locks rows after something it audits (firing
    /// timers, an admin decision that re-plans, a background group-change batch): every audit
    /// entry its body and the engine's hook append is held back to the end of the transaction,
    /// so it takes the chain head after every row, as other writers do (see
    /// `audit_chain::appending_last`).
    pub(crate) fn write_tx_appending_last<T>(
        &self,
        body: impl FnMut(&mut DbConnection, &mut Vec<Change>) -> HubResult<T>,
    ) -> HubResult<T> {
        audit_chain::requesting_appends_last(|| self.write_tx_retry(body))
    }

    fn write_attempts<T>(
        &self,
        attempts: u32,
        mut body: impl FnMut(&mut DbConnection, &mut Vec<Change>) -> HubResult<T>,
    ) -> HubResult<T> {
        if let Some(mut open) = batch::take_open() {
            let out = if open.guarded {
                self.run_write(&mut open.conn, &mut body, true)
            } else {
                // Optimistic: no savepoint. A failure spoils the batch's transaction, which
                // the batch then rolls back and runs again guarded (see `batch`).
                self.write_body_in(&mut open.conn, &mut body, true)
                    .map_err(WriteFailure::NotCommitted)
            };
            if let Err(e) = &out {
                open.failed_writes += 1;
                if !self.is_sqlite()
                    && matches!(e, WriteFailure::NotCommitted(HubError::Unavailable(_)))
                {
                    open.lost_connection = true;
                }
            }
            let out = out.map(|(out, population, changed, audit)| {
                open.effects.push(batch::Effect {
                    store: self.clone(),
                    population,
                    changed,
                    audit,
                });
                out
            });
            batch::restore(open);
            return out.map_err(HubError::from);
        }
        let mut attempt = 1;
        loop {
            let mut conn = self.inner.write.get()?;
            match self.run_write(&mut conn, &mut body, false) {
                Ok((out, population, changed, _)) => {
                    // Committed: the caches hear of it while the writer is still held (so that
                    // a create and a delete of one id reach them in commit order); the hook is
                    // told after the writer is released.
                    self.report_population(&population);
                    drop(conn);
                    self.after_commit(changed);
                    return Ok(out);
                }
                Err(WriteFailure::NotCommitted(e))
                    if attempt < attempts && !self.is_sqlite() && rerunnable(&e) =>
                {
                    drop(conn);
                    tracing::info!(error = %e, attempt, "write transaction not committed; running it again");
                    retry_pause(attempt, &e);
                    attempt += 1;
                }
                Err(WriteFailure::NotCommitted(e)) => return Err(e),
                Err(WriteFailure::CommitUnknown(e)) => {
                    tracing::error!(error = %e, "connection lost during COMMIT: the write may or may not be committed");
                    return Err(HubError::OutcomeUnknown(e.to_string()));
                }
            }
        }
    }

    /// Runs `body` and the hook in a transaction (a savepoint when one is open). Returns the
    /// output, the resources created (`true`) or deleted, whether anything changed, and, when
    /// `in_batch`, the write's audit entries for the batch to append after its last savepoint
    /// (see [`Store::before_batch_commit`]); otherwise they are already appended.
    #[allow(clippy::type_complexity)]
    fn run_write<T>(
        &self,
        conn: &mut DbConnection,
        body: impl FnOnce(&mut DbConnection, &mut Vec<Change>) -> HubResult<T>,
        in_batch: bool,
    ) -> Result<WriteOutcome<T>, WriteFailure> {
        use diesel::connection::TransactionManager;
        type Tm = <DbConnection as Connection>::TransactionManager;
        if let DbConnection::Postgresql(_) = conn {
            let outermost = Tm::transaction_manager_status_mut(conn)
                .transaction_depth()
                .map_err(|e| WriteFailure::NotCommitted(e.into()))?
                .is_none();
            if outermost {
                // By hand rather than `Connection::transaction`, to tell a failed COMMIT (outcome
                // unknown when the connection is lost) from a failure before it (not committed).
                Tm::begin_transaction(conn).map_err(|e| WriteFailure::NotCommitted(e.into()))?;
                let out = match self.write_body_in(conn, body, in_batch) {
                    Ok(out) => out,
                    Err(e) => {
                        // A lost connection fails the ROLLBACK too, which marks the connection
                        // broken: the pool drops it (`ConnectionManager::has_broken`).
                        let _ = Tm::rollback_transaction(conn);
                        return Err(WriteFailure::NotCommitted(e));
                    }
                };
                return match Tm::commit_transaction(conn) {
                    Ok(()) => Ok(out),
                    Err(e) => {
                        let e = HubError::from(e);
                        // A server's answer to COMMIT (a deferred constraint, a serialization
                        // failure) means it did not commit; no answer means nobody knows.
                        if matches!(e, HubError::Unavailable(_)) {
                            Err(WriteFailure::CommitUnknown(e))
                        } else {
                            Err(WriteFailure::NotCommitted(e))
                        }
                    }
                };
            }
        }
        // On SQLite the outermost transaction takes the write lock at BEGIN (see
        // `conn::begin_immediate`); inside someone else's transaction the body runs in a
        // savepoint of it.
        let immediate =
            conn::begin_immediate(conn).map_err(|e| WriteFailure::NotCommitted(e.into()))?;
        // A transaction of its own needs no savepoint: a failure rolls all of it back.
        let out = if immediate {
            self.write_body_in(conn, body, in_batch)
        } else {
            self.run_write_body(conn, body, in_batch)
        };
        if immediate {
            conn::end_immediate(conn, out.is_ok())
                .map_err(|e| WriteFailure::NotCommitted(e.into()))?;
        }
        out.map_err(WriteFailure::NotCommitted)
    }

    fn run_write_body<T>(
        &self,
        conn: &mut DbConnection,
        body: impl FnOnce(&mut DbConnection, &mut Vec<Change>) -> HubResult<T>,
        in_batch: bool,
    ) -> HubResult<WriteOutcome<T>> {
        conn.transaction::<_, HubError, _>(|c| self.write_body_in(c, body, in_batch))
    }

    /// `body`, then the hook and the audit chain, inside the caller's transaction. In a
    /// group-commit batch the write's own audit entries are returned for the batch to append
    /// after its last write (see [`Store::before_batch_commit`]) instead of appended here.
    fn write_body_in<T>(
        &self,
        c: &mut DbConnection,
        body: impl FnOnce(&mut DbConnection, &mut Vec<Change>) -> HubResult<T>,
        in_batch: bool,
    ) -> HubResult<WriteOutcome<T>> {
        let mut changes = Vec::new();
        let run = |c: &mut DbConnection, changes: &mut Vec<Change>| -> HubResult<T> {
            let out = body(c, changes)?;
            if let Some(hook) = &self.inner.hook {
                for change in changes.iter() {
                    hook.on_write(c, change)?;
                }
            }
            Ok(out)
        };
        // In a batch, the entries the body and the engine's plan append wait for the batch's
        // end too (see `audit_chain::deferring`); so do they, to this write's end, when it asked
        // for its appends last (`Store::write_tx_appending_last`).
        let held =
            !in_batch && audit_chain::appends_last_requested() && !audit_chain::is_deferring();
        let (out, mut audit) = if in_batch || held {
            audit_chain::deferring(|| run(c, &mut changes))
        } else {
            (run(c, &mut changes), Vec::new())
        };
        let out = out?;
        // Last, after the engine's plan: an append holds the chain head until commit.
        let now = self.now();
        for change in &changes {
            if in_batch || held {
                audit.push(audit_chain::scim_write_entry(change, now));
            } else {
                audit_chain::append_scim_write(c, change, now)?;
            }
        }
        if held {
            audit_chain::append_all(c, audit.iter())?;
            audit.clear();
        }
        let population: Vec<_> = changes
            .iter()
            .filter(|ch| matches!(ch.op, ChangeOp::Create | ChangeOp::Delete))
            .map(|ch| (ch.kind, ch.id.clone(), ch.op == ChangeOp::Create))
            .collect();
        if let (Some(w), false, false) =
            (&self.inner.other_writers, population.is_empty(), in_batch)
        {
            w.record(c, 1)?;
        }
        Ok((out, population, !changes.is_empty(), audit))
    }

    /// The end of a group-commit batch, after its last write's savepoint and before its commit:
    /// appends the writes' audit entries (in write order) and counts their creates and deletes
    /// for other processes, each once for the whole batch instead of once per write.
    pub(crate) fn before_batch_commit(
        c: &mut DbConnection,
        effects: &[batch::Effect],
    ) -> HubResult<()> {
        audit_chain::append_all(c, effects.iter().flat_map(|e| e.audit.iter()))?;
        let populated = effects.iter().filter(|e| !e.population.is_empty()).count();
        if let (Some(first), true) = (effects.first(), populated > 0) {
            if let Some(w) = &first.store.inner.other_writers {
                w.record(c, populated as i64)?;
            }
        }
        Ok(())
    }

    /// After a commit: tells the in-process caches (SQLite's count cache and id ranks) of the
    /// resources the write created (`true`) or deleted. Called before the writer is released:
    /// two writes' reports then arrive in the order of their commits, which the id ranks need
    /// (a delete reported before the create of the same id would leave a phantom rank).
    pub(super) fn report_population(&self, population: &[(ResourceKind, String, bool)]) {
        if population.is_empty() {
            return;
        }
        if let Some(counts) = &self.inner.type_counts {
            counts.invalidate();
        }
        if let Some(ranks) = &self.inner.id_ranks {
            for (kind, id, created) in population {
                ranks.apply(*kind, id, *created);
            }
        }
    }

    /// What a committed write does once the writer is released: ask for a WAL checkpoint and
    /// tell the hook.
    fn after_commit(&self, changed: bool) {
        if changed {
            self.request_checkpoint();
            if let Some(hook) = &self.inner.hook {
                hook.after_commit();
            }
        }
    }
}

/// How a write transaction failed: certainly not committed (safe to run again), or with its
/// COMMIT unanswered (outcome unknown).
enum WriteFailure {
    NotCommitted(HubError),
    CommitUnknown(HubError),
}

impl From<WriteFailure> for HubError {
    fn from(f: WriteFailure) -> Self {
        match f {
            WriteFailure::NotCommitted(e) => e,
            WriteFailure::CommitUnknown(e) => HubError::OutcomeUnknown(e.to_string()),
        }
    }
}

/// Whether a write that failed before COMMIT is worth running again: a conflict with a
/// concurrent transaction, or a connection lost mid-transaction (the next attempt takes a
/// fresh connection; while the server is down it fails at checkout instead).
fn rerunnable(e: &HubError) -> bool {
    matches!(e, HubError::TxConflict(_) | HubError::Unavailable(_))
}

/// A short, growing, jittered pause before running a conflicting transaction again, so the two
/// that collided do not collide again in lock step. None after a lost connection.
fn retry_pause(attempt: u32, e: &HubError) {
    if !matches!(e, HubError::TxConflict(_)) {
        return;
    }
    use rand::Rng;
    let base_ms = 5u64 << attempt.min(6);
    let ms = rand::thread_rng().gen_range(base_ms / 2..=base_ms);
    std::thread::sleep(Duration::from_millis(ms));
}

/// The value in `cell`, started by `start` on first use, once: concurrent first callers wait
/// for the one that starts it.
fn started<T>(
    cell: &std::sync::OnceLock<T>,
    start: impl FnOnce() -> HubResult<T>,
) -> HubResult<&T> {
    // Starts are serialised: two first writes at once would otherwise each start a writer
    // (or checkpointer) and drop the loser's, whose thread lingered until it noticed.
    static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let _starting = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let _ = cell.set(start()?);
    cell.get()
        .ok_or_else(|| HubError::Backend("a store thread did not start".into()))
}

/// What [`Store::run_write`] returns: the body's output, the resources created (`true`) or
/// deleted, whether anything changed, and the audit entries left for the batch to append.
type WriteOutcome<T> = (
    T,
    Vec<(ResourceKind, String, bool)>,
    bool,
    Vec<audit_chain::PendingEntry>,
);

/// Formats a timestamp the way it is stored: UTC, fixed width, microseconds.
pub(crate) fn fmt_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses a stored or client-supplied RFC 3339 timestamp.
pub(crate) fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether `if_match` (an `If-Match` header value: `*`, or a list of ETags) matches `version`.
pub fn if_match_ok(if_match: Option<&str>, version: i64) -> bool {
    let Some(header) = if_match else { return true };
    header.split(',').map(str::trim).any(|tag| {
        if tag == "*" {
            return true;
        }
        etag_version(tag) == Some(version)
    })
}

/// The version an ETag names: `W/"5"` and `W/"5.<groups digest>"` ([`resource_etag`]) both name
/// 5, and so does the strong `"5"`. Only the digits this server writes: `W/"06"`, `W/"+6"` or
/// a tag missing a quote name none. (A bare `5` is taken, as clients that drop the quotes send.)
pub fn etag_version(tag: &str) -> Option<i64> {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    let tag = match tag.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None if tag.ends_with('"') => return None,
        None => tag,
    };
    let version = tag.split_once('.').map_or(tag, |(v, _)| v);
    let canonical = !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_digit())
        && (version == "0" || !version.starts_with('0'));
    canonical.then(|| version.parse::<i64>().ok()).flatten()
}

pub(crate) fn check_if_match(if_match: Option<&str>, version: i64) -> HubResult<()> {
    if if_match_ok(if_match, version) {
        Ok(())
    } else {
        Err(HubError::PreconditionFailed {
            current_version: version,
        })
    }
}
