//! PostgreSQL point reads on the async worker itself.
//!
//! Through the pool, a PostgreSQL read is handed to the blocking pool (a semaphore, a futex wake
//! each way) and a libpq round trip made there; a worker that waited for the round trip itself
//! would serve nobody meanwhile. Here each actix worker thread keeps one connection of its own,
//! opened on first use with tokio-postgres, and awaits the answer: no hop, and the worker serves
//! other requests while PostgreSQL works. Reads issued while earlier ones are in flight are
//! pipelined on that connection, so under load one `send` carries several requests' statements
//! and one `recv` brings several answers.
//!
//! The statements are the diesel path's own ([`Sql`], rendered by [`Sql::to_postgres`]), so
//! both paths read the same rows. Only statements whose work the page bounds run here (a slow one
//! would hold up every read pipelined behind it): a lookup that needs a `COUNT(*)` goes to the
//! pool. Every write, and every read not offered here, keeps the pool.
//!
//! The connection is opened from the same URL as the pool's, but by tokio-postgres rather than
//! libpq; where the two could connect differently the readers stay off and reads use the pool
//! ([`PgReaders::new`] says why in the log): libpq-only URL options (`sslrootcert`,
//! `sslmode=verify-full`, …), libpq environment variables, a `~/.pgpass` or
//! `~/.postgresql/root.crt` libpq would use. `sslmode=prefer`/`require` encrypt without
//! checking the server's certificate, as libpq does in those modes. A connection that cannot
//! be opened sends the read to the pool; one refused for a reason that does not pass by itself
//! (authentication, TLS, configuration) turns the readers off for a minute, with a warning.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use super::assemble::{LoadedResource, ResourceRow};
use super::conn::PgSession;
use super::search::{self, Page, SearchQuery};
use super::sql::{Bind, Sql};
use super::users::{self, AncestorRecord, UserRowWithMembership};
use super::{ResourceKind, Store};
use crate::error::{HubError, HubResult};
use scim_schema::schema::ResourceSchema;

/// Stores whose connection one thread keeps; beyond it the oldest is closed. A server has one
/// store; tests open many on one thread.
const STORES_PER_THREAD: usize = 4;

/// Prepared statements kept per connection; the statements read here are a handful of texts.
const STATEMENTS_PER_CONN: usize = 64;

/// libpq environment variables that change how it connects and that tokio-postgres ignores.
/// `PGPASSWORD` is taken over; `PGHOST`, `PGPORT`, `PGUSER` and `PGDATABASE` matter only when
/// the URL leaves them out, and the readers need the URL to name host and user anyway.
const LIBPQ_ONLY_ENV: &[&str] = &[
    "PGHOSTADDR",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGPASSFILE",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGSSLNEGOTIATION",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCERTMODE",
    "PGSSLROOTCERT",
    "PGSSLCRL",
    "PGSSLCRLDIR",
    "PGSSLSNI",
    "PGSSLMINPROTOCOLVERSION",
    "PGSSLMAXPROTOCOLVERSION",
    "PGREQUIREPEER",
    "PGREQUIREAUTH",
    "PGCHANNELBINDING",
    "PGGSSENCMODE",
    "PGKRBSRVNAME",
    "PGGSSLIB",
    "PGGSSDELEGATION",
    "PGCONNECT_TIMEOUT",
    "PGCLIENTENCODING",
    "PGDATESTYLE",
    "PGTZ",
    "PGGEQO",
    "PGTARGETSESSIONATTRS",
    "PGLOADBALANCEHOSTS",
    "PGSYSCONFDIR",
];

/// A store's per-worker PostgreSQL readers: how to open one, and whether they are on.
pub(crate) struct PgReaders {
    /// Keys this store's connections in each thread's list.
    id: u64,
    config: tokio_postgres::Config,
    /// The session settings the pool's connections get (`statement_timeout`, …).
    setup: String,
    /// Longest a read waits for its answer before it is answered 503 and its connection
    /// replaced: the statement timeout (which PostgreSQL enforces) plus the connect timeout, so
    /// only a connection that stopped answering (a vanished primary) reaches it.
    read_timeout: Duration,
    tls: MakeRustls,
    /// `config` without TLS, tried first while `plain_first` holds: a database on this machine
    /// that the URL says nothing about TLS for, as the pool connects with `sslmode=allow`
    /// ([`super::conn::plain_first`]). tokio-postgres has no `allow`: where the plain
    /// connection is refused, the same attempt goes on with `config`, and so do all later ones.
    plain: Option<tokio_postgres::Config>,
    plain_first: AtomicBool,
    /// Longest opening a connection (TCP, TLS, authentication, session settings) may take.
    connect_budget: Duration,
    /// After a connection could not be opened, no other is tried before this (milliseconds
    /// since `born`): the reads that arrive meanwhile go straight to the pool instead of each
    /// waiting for its own failed attempt.
    connect_after_ms: AtomicU64,
    /// Until when the readers are off (milliseconds since `born`; 0: on): a refusal turns them
    /// off for [`OFF_FOR`], after which they try to connect again.
    off_until_ms: AtomicU64,
    born: Instant,
    /// Whether the last refusal was logged at WARN (once per run of refusals).
    warned: AtomicBool,
}

/// How long the readers stay off after PostgreSQL refused their connection.
const OFF_FOR: Duration = Duration::from_secs(60);

/// How long after a failed connection attempt the next is made.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Why no connection was opened.
enum ConnectFailure {
    /// An attempt failed a moment ago ([`RECONNECT_AFTER`]).
    Backoff,
    /// The start-up took longer than the connect budget.
    TimedOut,
    Postgres(tokio_postgres::Error),
}

/// One thread's connection for one store, shared by the reads in flight on that thread.
struct WorkerConn {
    client: Client,
    statements: RefCell<HashMap<String, Statement>>,
}

/// Where a thread's connection is, or is being, opened: the first read opens it and the reads
/// that arrive meanwhile wait for the same one.
type Slot = Rc<tokio::sync::OnceCell<Rc<WorkerConn>>>;

thread_local! {
    static CONNS: RefCell<Vec<(u64, Slot)>> = const { RefCell::new(Vec::new()) };
}

/// Why a read did not happen here.
pub(crate) enum ReadError {
    /// Not here: no connection could be opened now, or the read turned out to need work whose
    /// length is not bounded (a `COUNT(*)`), which would hold up the reads pipelined behind it.
    /// The read goes to the pool.
    Elsewhere,
    /// The read failed; its error is the answer.
    Failed(HubError),
}

impl PgReaders {
    /// Readers for the PostgreSQL `url`, or why they stay off (the pool then serves every read).
    pub(crate) fn new(url: &str, pg: &PgSession) -> Result<PgReaders, String> {
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(name) = LIBPQ_ONLY_ENV.iter().find(|n| env(n).is_some()) {
            return Err(format!(
                "the environment sets {name}, which libpq reads and the async client does not"
            ));
        }
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("the URL has an option the async client does not take: {e}"))?;
        if config.get_hosts().is_empty() {
            return Err("the URL names no host".into());
        }
        if config.get_user().is_none() {
            return Err("the URL names no user".into());
        }
        if config.get_ports().is_empty() && env("PGPORT").is_some() {
            return Err("the URL names no port and the environment sets PGPORT".into());
        }
        if config.get_dbname().is_none() && env("PGDATABASE").is_some() {
            return Err("the URL names no database and the environment sets PGDATABASE".into());
        }
        // Where libpq looks for `.pgpass` and `.postgresql/`: HOME, else the password database's
        // entry for this user, which is what `home_dir` answers too.
        let home = std::env::home_dir()
            .filter(|h| !h.as_os_str().is_empty())
            .ok_or("no home directory, so libpq's ~/.pgpass and ~/.postgresql cannot be checked")?;
        if config.get_password().is_none() {
            match std::env::var("PGPASSWORD") {
                Ok(p) if !p.is_empty() => {
                    config.password(p);
                }
                _ => {
                    if home.join(".pgpass").exists() {
                        return Err("libpq may take the password from ~/.pgpass".into());
                    }
                }
            }
        }
        if config.get_ssl_mode() != SslMode::Disable && home.join(".postgresql/root.crt").exists() {
            return Err(
                "~/.postgresql/root.crt exists, with which libpq checks the server's certificate"
                    .into(),
            );
        }
        if config.get_connect_timeout().is_none() && !pg.connect_timeout.is_zero() {
            config.connect_timeout(pg.connect_timeout);
        }
        let statement = if pg.statement_timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            pg.statement_timeout
        };
        // tokio-postgres' connect_timeout bounds each host's TCP connect only; libpq's bounds
        // the whole start-up (TLS, authentication), which this budget does for all hosts.
        let per_host = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(10))
            .max(Duration::from_secs(1));
        let hosts = u32::try_from(config.get_hosts().len()).unwrap_or(u32::MAX);
        let plain =
            super::conn::plain_first(url, super::conn::environment_decides_tls()).then(|| {
                let mut plain = config.clone();
                plain.ssl_mode(SslMode::Disable);
                plain
            });
        Ok(PgReaders {
            plain_first: AtomicBool::new(plain.is_some()),
            plain,
            id: super::local_reader::next_store_id(),
            connect_budget: per_host.saturating_mul(hosts) + Duration::from_secs(1),
            connect_after_ms: AtomicU64::new(0),
            read_timeout: statement + pg.connect_timeout.max(Duration::from_secs(1)),
            config,
            setup: pg.setup_sql(),
            tls: MakeRustls::new().map_err(|e| format!("TLS setup: {e}"))?,
            off_until_ms: AtomicU64::new(0),
            born: Instant::now(),
            warned: AtomicBool::new(false),
        })
    }

    pub(crate) fn is_on(&self) -> bool {
        self.now_ms() >= self.off_until_ms.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// This thread's slot for this store.
    fn slot(&self) -> Slot {
        CONNS.with(|c| {
            let mut c = c.borrow_mut();
            if let Some((_, slot)) = c.iter().find(|(k, _)| *k == self.id) {
                return slot.clone();
            }
            if c.len() >= STORES_PER_THREAD {
                c.remove(0);
            }
            let slot = Slot::default();
            c.push((self.id, slot.clone()));
            slot
        })
    }

    /// Drops this thread's connection if it is still `old` (a broken or wedged one); the next
    /// read opens another.
    fn replace(&self, old: &Slot) {
        CONNS.with(|c| {
            let mut c = c.borrow_mut();
            if let Some(i) = c
                .iter()
                .position(|(k, s)| *k == self.id && Rc::ptr_eq(s, old))
            {
                c.remove(i);
            }
        });
    }

    async fn connect(&self) -> Result<Rc<WorkerConn>, ConnectFailure> {
        if self.now_ms() < self.connect_after_ms.load(Ordering::Relaxed) {
            return Err(ConnectFailure::Backoff);
        }
        let plain = self
            .plain
            .as_ref()
            .filter(|_| self.plain_first.load(Ordering::Relaxed));
        let opened = tokio::time::timeout(self.connect_budget, async {
            let (client, connection) = match plain {
                Some(plain) => match plain.connect(self.tls.clone()).await {
                    // `hostssl` only (or a tunnel to a server that is): TLS from now on.
                    Err(e) if refuses_plain(&e) => {
                        self.plain_first.store(false, Ordering::Relaxed);
                        let tls = self.config.connect(self.tls.clone()).await?;
                        tracing::info!(error = %describe(&e), "PostgreSQL refused a worker reader without TLS; the readers use TLS");
                        tls
                    }
                    other => other?,
                },
                None => self.config.connect(self.tls.clone()).await?,
            };
            // The connection's I/O runs as a task of this worker's runtime; it ends when the
            // client is dropped or the server goes away.
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "PostgreSQL worker reader closed");
                }
            });
            client.batch_execute(&self.setup).await?;
            Ok::<_, tokio_postgres::Error>(client)
        })
        .await;
        let failure = match opened {
            Ok(Ok(client)) => {
                self.warned.store(false, Ordering::Relaxed);
                return Ok(Rc::new(WorkerConn {
                    client,
                    statements: RefCell::default(),
                }));
            }
            Ok(Err(e)) => ConnectFailure::Postgres(e),
            Err(_) => ConnectFailure::TimedOut,
        };
        let after = self
            .now_ms()
            .saturating_add(RECONNECT_AFTER.as_millis() as u64);
        self.connect_after_ms.store(after, Ordering::Relaxed);
        Err(failure)
    }

    /// Runs `q` on this thread's connection and decodes its rows. A connection found broken is
    /// replaced once (reads are safe to repeat).
    pub(crate) async fn load<R: FromPgRow, ST>(&self, q: &Sql<ST>) -> Result<Vec<R>, ReadError> {
        let (text, binds) = q.to_postgres();
        for attempt in 0..2 {
            let slot = self.slot();
            let conn = match slot.get_or_try_init(|| self.connect()).await {
                Ok(conn) => conn.clone(),
                Err(failure) => {
                    match &failure {
                        ConnectFailure::Postgres(e) => self.refused(e),
                        ConnectFailure::TimedOut => tracing::debug!(
                            budget_ms = self.connect_budget.as_millis() as u64,
                            "PostgreSQL worker reader: no connection within the connect budget"
                        ),
                        ConnectFailure::Backoff => {}
                    }
                    return Err(ReadError::Elsewhere);
                }
            };
            if conn.client.is_closed() {
                self.replace(&slot);
                continue;
            }
            let rows =
                match tokio::time::timeout(self.read_timeout, conn.query(&text, &binds)).await {
                    Err(_) => {
                        // No answer at all: the connection may be wedged (a vanished server).
                        self.replace(&slot);
                        return Err(ReadError::Failed(HubError::Unavailable(format!(
                            "no answer from PostgreSQL within {} ms",
                            self.read_timeout.as_millis()
                        ))));
                    }
                    Ok(Ok(rows)) => rows,
                    Ok(Err(e)) if e.is_closed() || conn.client.is_closed() => {
                        self.replace(&slot);
                        if attempt == 0 {
                            continue;
                        }
                        return Err(ReadError::Failed(HubError::Unavailable(e.to_string())));
                    }
                    Ok(Err(e)) => return Err(ReadError::Failed(map_error(&e))),
                };
            return rows
                .iter()
                .map(R::from_pg_row)
                .collect::<Result<Vec<R>, _>>()
                .map_err(|e| ReadError::Failed(HubError::Backend(e.to_string())));
        }
        Err(ReadError::Elsewhere)
    }

    /// Turns the readers off for [`OFF_FOR`] when the connection was refused for a reason that
    /// will not pass by itself and that libpq's may not meet (authentication, a missing
    /// database, TLS, configuration): the pool serves meanwhile. A server that cannot be
    /// reached or is starting, stopping or full (SQLSTATE classes 08, 53, 57) only sends this
    /// read to the pool, like a restart does.
    fn refused(&self, e: &tokio_postgres::Error) {
        let text = e.to_string();
        let lasting = match e.code() {
            Some(code) => {
                let code = code.code();
                code.starts_with("28") || code == "3D000" || code == "42501"
            }
            // tokio-postgres' own refusals: its TLS, its configuration, and authentication it
            // cannot do (an unsupported method, channel binding the server insists on).
            None => {
                text.contains("TLS")
                    || text.contains("configuration")
                    || text.contains("authentication")
            }
        };
        if !lasting {
            tracing::debug!(error = %describe(e), "PostgreSQL worker reader cannot connect now");
            return;
        }
        let until = self.now_ms().saturating_add(OFF_FOR.as_millis() as u64);
        self.off_until_ms.store(until, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %describe(e),
                off_secs = OFF_FOR.as_secs(),
                "PostgreSQL refused a worker reader's connection; reads go through the pool, \
                 and the readers try again later"
            );
        }
    }
}

impl WorkerConn {
    async fn query(&self, text: &str, binds: &[&Bind]) -> Result<Vec<Row>, tokio_postgres::Error> {
        let cached = self.statements.borrow().get(text).cloned();
        let stmt = match cached {
            Some(stmt) => stmt,
            None => {
                let types: Vec<Type> = binds.iter().map(|b| bind_type(b)).collect();
                let stmt = self.client.prepare_typed(text, &types).await?;
                let mut statements = self.statements.borrow_mut();
                if statements.len() >= STATEMENTS_PER_CONN {
                    statements.clear();
                }
                statements.insert(text.to_string(), stmt.clone());
                stmt
            }
        };
        let params: Vec<&(dyn ToSql + Sync)> = binds.iter().map(|b| bind_value(b)).collect();
        self.client.query(&stmt, &params).await
    }
}

/// The parameter types diesel declares for the same binds.
fn bind_type(b: &Bind) -> Type {
    match b {
        Bind::Text(_) | Bind::OptText(_) => Type::TEXT,
        Bind::Int(_) => Type::INT8,
        Bind::Bool(_) | Bind::OptBool(_) => Type::BOOL,
    }
}

fn bind_value(b: &Bind) -> &(dyn ToSql + Sync) {
    match b {
        Bind::Text(s) => s,
        Bind::OptText(s) => s,
        Bind::Int(i) => i,
        Bind::Bool(v) => v,
        Bind::OptBool(v) => v,
    }
}

/// The server's own message where there is one (tokio-postgres' `Display` says only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// The same classes as [`crate::error::map_diesel`] gives the pool's errors.
fn map_error(e: &tokio_postgres::Error) -> HubError {
    match e.code() {
        Some(c) if *c == SqlState::QUERY_CANCELED => HubError::StatementTimeout(describe(e)),
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            HubError::TxConflict(describe(e))
        }
        Some(c) if c.code().starts_with("08") || c.code().starts_with("57P") => {
            HubError::Unavailable(describe(e))
        }
        Some(c)
            if *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                || *c == SqlState::UNTRANSLATABLE_CHARACTER =>
        {
            crate::error::unstorable_text(&describe(e))
        }
        _ => HubError::Backend(describe(e)),
    }
}

/// A row type read here, decoded as diesel decodes it on PostgreSQL.
pub(crate) trait FromPgRow: Sized {
    fn from_pg_row(row: &Row) -> Result<Self, tokio_postgres::Error>;
}

impl FromPgRow for ResourceRow {
    fn from_pg_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(ResourceRow {
            id: row.try_get(0)?,
            doc: row.try_get(1)?,
            created: row.try_get(2)?,
            last_modified: row.try_get(3)?,
            version: row.try_get(4)?,
        })
    }
}

impl FromPgRow for UserRowWithMembership {
    fn from_pg_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(UserRowWithMembership {
            row: ResourceRow::from_pg_row(row)?,
            is_member: row.try_get(5)?,
        })
    }
}

impl FromPgRow for AncestorRecord {
    fn from_pg_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(AncestorRecord {
            user_id: row.try_get(0)?,
            group_id: row.try_get(1)?,
            display: row.try_get(2)?,
            direct: row.try_get(3)?,
        })
    }
}

impl Store {
    /// Whether this store answers point reads on the calling worker over its own PostgreSQL
    /// connection ([`Store::get_loaded_on_worker`]).
    pub fn reads_on_worker_pg(&self) -> bool {
        self.inner.pg_readers.as_ref().is_some_and(|r| r.is_on())
    }

    /// [`Store::get_loaded`] for a User, or a Group without its members, over this worker's own
    /// PostgreSQL connection (see the module docs). `None` when this store or this read has no
    /// such path (SQLite, readers off, a Group with its members, whose size is unbounded) or no
    /// connection can be had now: the caller reads through the pool, which answers 503 if
    /// PostgreSQL is down.
    pub async fn get_loaded_on_worker(
        &self,
        kind: ResourceKind,
        id: &str,
        with_members: bool,
    ) -> Option<HubResult<LoadedResource>> {
        let readers = self.inner.pg_readers.as_ref().filter(|r| r.is_on())?;
        if kind == ResourceKind::Group && with_members {
            return None;
        }
        let read = async {
            if kind == ResourceKind::Group {
                let row = readers
                    .load::<ResourceRow, _>(&super::resources::row_sql(kind, id))
                    .await?
                    .pop()
                    .ok_or(ReadError::Failed(HubError::NotFound))?;
                return Ok(LoadedResource::from_row(kind, row, None, None));
            }
            let user = readers
                .load::<UserRowWithMembership, _>(&users::user_with_membership_sql(id))
                .await?
                .pop()
                .ok_or(ReadError::Failed(HubError::NotFound))?;
            let groups = match (with_members, user.is_member) {
                (false, _) => None,
                (true, false) => Some(Vec::new()),
                (true, true) => {
                    let ids = [user.row.id.clone()];
                    let records = readers
                        .load::<AncestorRecord, _>(&users::groups_sql(&ids))
                        .await?;
                    let mut by_user = HashMap::new();
                    users::add_groups(&mut by_user, records);
                    Some(by_user.remove(&user.row.id).unwrap_or_default())
                }
            };
            Ok(LoadedResource::from_row(kind, user.row, None, groups))
        };
        match read.await {
            Ok(r) => Some(Ok(r)),
            Err(ReadError::Failed(e)) => Some(Err(e)),
            Err(ReadError::Elsewhere) => None,
        }
    }
}

impl Store {
    /// [`Store::search_loaded`] for an index lookup ([`SearchQuery::is_index_lookup`]: `eq` or
    /// `sw` on `id`, `userName`, `externalId` or `displayName`, the first page in id order,
    /// how IdPs look a user up before they create it) over this worker's own PostgreSQL
    /// connection, with the same statements. `None` as for [`Store::get_loaded_on_worker`], and
    /// for every other search (and a page of Groups with their members).
    pub async fn search_loaded_on_worker(
        &self,
        kind: ResourceKind,
        q: &SearchQuery,
        schema: &ResourceSchema,
    ) -> Option<HubResult<Page<LoadedResource>>> {
        let readers = self.inner.pg_readers.as_ref().filter(|r| r.is_on())?;
        if !q.is_index_lookup() || q.count == 0 || (kind == ResourceKind::Group && q.with_members) {
            return None;
        }
        let (base, exact) = search::search_base(kind, q, schema);
        if !exact {
            return None;
        }
        let read = async {
            let mut page = search::id_page_head(kind, q, &base);
            search::id_page_tail(&mut page, !q.descending, q.count, 0);
            let mut rows = readers.load::<search::SortRow, _>(&page).await?;
            let more = rows.len() as u64 > q.count;
            rows.truncate(q.count as usize);
            if more {
                // The total needs a COUNT(*) over every match, unbounded work that would hold
                // up the reads pipelined behind it: the pool answers this one.
                return Err(ReadError::Elsewhere);
            }
            let total = rows.len() as u64;
            let in_no_group = rows.iter().all(|r| r.is_member == Some(false));
            let rows: Vec<ResourceRow> = rows.into_iter().map(|r| r.row).collect();
            let resources = if !q.with_members {
                rows.into_iter()
                    .map(|r| LoadedResource::from_row(kind, r, None, None))
                    .collect()
            } else if in_no_group {
                rows.into_iter()
                    .map(|r| LoadedResource::from_row(kind, r, None, Some(Vec::new())))
                    .collect()
            } else {
                let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
                let mut by_user = HashMap::new();
                for chunk in ids.chunks(super::resources::CHUNK) {
                    let records = readers
                        .load::<AncestorRecord, _>(&users::groups_sql(chunk))
                        .await?;
                    users::add_groups(&mut by_user, records);
                }
                rows.into_iter()
                    .map(|r| {
                        let groups = by_user.remove(&r.id).unwrap_or_default();
                        LoadedResource::from_row(kind, r, None, Some(groups))
                    })
                    .collect()
            };
            Ok(Page {
                total_results: total,
                start_index: q.start_index.max(1),
                resources,
                next_cursor: None,
                previous_cursor: None,
            })
        };
        match read.await {
            Ok(page) => Some(Ok(page)),
            Err(ReadError::Failed(e)) => Some(Err(e)),
            Err(ReadError::Elsewhere) => None,
        }
    }
}

impl FromPgRow for search::SortRow {
    fn from_pg_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        // The select list's `NULL` placeholders are text to PostgreSQL, which tokio-postgres
        // will not decode as a boolean even when null (diesel does not look at the type).
        let is_member = if row.columns()[6].type_() == &Type::BOOL {
            row.try_get(6)?
        } else {
            None
        };
        Ok(search::SortRow {
            row: ResourceRow::from_pg_row(row)?,
            sort_key: row.try_get(5)?,
            is_member,
        })
    }
}

/// Whether the server may have refused a connection for want of TLS: PostgreSQL's
/// `pg_hba.conf` has no entry for an unencrypted one (SQLSTATE 28000, "… no encryption"), or
/// PgBouncer's `client_tls_sslmode = require` ("SSL required", 08P01).
fn refuses_plain(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        c == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION || c == &SqlState::PROTOCOL_VIOLATION
    })
}

/// TLS for the readers' connections: rustls (the build's TLS stack) with the server's
/// certificate taken unchecked, which is what libpq's `sslmode=prefer` and `require` do; the
/// modes that check it (`verify-ca`, `verify-full`) keep the readers off ([`PgReaders::new`]).
#[derive(Clone)]
struct MakeRustls(Arc<rustls::ClientConfig>);

impl MakeRustls {
    fn new() -> Result<MakeRustls, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(UncheckedServer(provider)))
            .with_no_client_auth();
        Ok(MakeRustls(Arc::new(config)))
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        // A Unix socket has no host name (tokio-postgres asks with ""); PostgreSQL offers no TLS
        // there, and without a name tokio-postgres never starts a handshake.
        let domain = if domain.is_empty() {
            "localhost"
        } else {
            domain
        };
        Ok(RustlsConnect {
            config: self.0.clone(),
            name: rustls::pki_types::ServerName::try_from(domain.to_string())?,
        })
    }
}

struct RustlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

type TlsFuture<S> = Pin<Box<dyn Future<Output = std::io::Result<RustlsStream<S>>> + Send>>;

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = std::io::Error;
    type Future = TlsFuture<S>;

    fn connect(self, stream: S) -> TlsFuture<S> {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(tls))
        })
    }
}

struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    /// `tls-server-end-point` (RFC 5929), as libpq offers it by default (`channel_binding=prefer`):
    /// SCRAM-SHA-256-PLUS then binds the authentication to the certificate this TLS session
    /// saw, so a relay in between fails to authenticate even though the certificate is not
    /// checked.
    fn channel_binding(&self) -> ChannelBinding {
        match self
            .0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        {
            Some(cert) => ChannelBinding::tls_server_end_point(server_end_point(cert)),
            None => ChannelBinding::none(),
        }
    }
}

/// The `tls-server-end-point` hash of a DER certificate: its signature algorithm's hash, SHA-256
/// for MD5, SHA-1 and SHA-256 (RFC 5929 §4.1). The algorithm is found by its object identifier
/// (which the certificate carries twice, in `tbsCertificate.signature` and
/// `signatureAlgorithm`; a public key or extension never uses these ones).
pub(crate) fn server_end_point(der: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    // DER of the OIDs, tag and length included.
    const SHA384: &[&[u8]] = &[
        // sha384WithRSAEncryption 1.2.840.113549.1.1.12
        &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c,
        ],
        // ecdsa-with-SHA384 1.2.840.10045.4.3.3
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
    ];
    const SHA512: &[&[u8]] = &[
        // sha512WithRSAEncryption 1.2.840.113549.1.1.13
        &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d,
        ],
        // ecdsa-with-SHA512 1.2.840.10045.4.3.4
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
    ];
    let has = |oids: &[&[u8]]| oids.iter().any(|o| der.windows(o.len()).any(|w| w == *o));
    if has(SHA512) {
        sha2::Sha512::digest(der).to_vec()
    } else if has(SHA384) {
        sha2::Sha384::digest(der).to_vec()
    } else {
        sha2::Sha256::digest(der).to_vec()
    }
}

/// Accepts the server's certificate unchecked (libpq's `prefer`/`require`); the handshake's
/// signatures are still verified, so the session is bound to the key the server presented.
#[derive(Debug)]
struct UncheckedServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for UncheckedServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
