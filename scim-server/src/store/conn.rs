//! Connections: one diesel `MultiConnection` over SQLite and PostgreSQL, the URL rules, SQLite
//! connection setup and the r2d2 connection manager.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::r2d2::R2D2Connection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;

use crate::error::HubError;

/// A connection to either backend; the same queries run on both.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Begins an outermost write transaction and says whether it did: `BEGIN IMMEDIATE` on a
/// SQLite connection not yet in a transaction, nothing otherwise (PostgreSQL, or already inside
/// one). SQLite's default `BEGIN` is deferred: a transaction that reads before it writes fails
/// at its first write with `SQLITE_BUSY_SNAPSHOT` ("database is locked", without waiting) when
/// another process (`scimhub import` or `grant` beside a running server) committed in between.
/// Taking the write lock up front lets `busy_timeout` wait for the other writer instead.
pub(crate) fn begin_immediate(c: &mut DbConnection) -> diesel::QueryResult<bool> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let DbConnection::Sqlite(s) = c else {
        return Ok(false);
    };
    let depth = AnsiTransactionManager::transaction_manager_status_mut(s).transaction_depth()?;
    if depth.is_some() {
        return Ok(false);
    }
    AnsiTransactionManager::begin_transaction_sql(s, "BEGIN IMMEDIATE")?;
    Ok(true)
}

/// Ends a transaction [`begin_immediate`] began: commits when `ok`, rolls back otherwise (and
/// when the commit fails).
pub(crate) fn end_immediate(c: &mut DbConnection, ok: bool) -> diesel::QueryResult<()> {
    use diesel::connection::TransactionManager;
    type Tm = <DbConnection as Connection>::TransactionManager;
    if ok {
        if let Err(e) = Tm::commit_transaction(c) {
            // A failed COMMIT can leave the transaction open in SQLite: end it.
            if Tm::transaction_manager_status_mut(c)
                .transaction_depth()
                .ok()
                .flatten()
                .is_some()
            {
                let _ = Tm::rollback_transaction(c);
            }
            return Err(e);
        }
        Ok(())
    } else {
        Tm::rollback_transaction(c)
    }
}

impl std::fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbConnection::Postgresql(_) => f.write_str("DbConnection::Postgresql"),
            DbConnection::Sqlite(_) => f.write_str("DbConnection::Sqlite"),
        }
    }
}

/// A parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// `postgres://…` or `postgresql://…`, passed to libpq unchanged.
    Postgres(String),
    /// `sqlite://relative.db` (relative to the working directory) or `sqlite:///abs/path.db`.
    SqliteFile(PathBuf),
    /// `sqlite::memory:` — one private in-memory database (one connection, for tests and demos).
    SqliteMemory,
}

impl DbUrl {
    /// Parses a database URL. Anything that is not `sqlite:` or `postgres(ql)://` is an error:
    /// a libpq `host=… port=…` string never silently becomes a SQLite file name.
    pub fn parse(url: &str) -> Result<DbUrl, HubError> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbUrl::Postgres(url.to_string()));
        }
        if url == "sqlite::memory:" || url == "sqlite://:memory:" {
            return Ok(DbUrl::SqliteMemory);
        }
        if let Some(rest) = url.strip_prefix("sqlite://") {
            // `sqlite:///abs` leaves `/abs`; `sqlite://rel.db` leaves `rel.db`.
            let path = rest.split('?').next().unwrap_or("");
            if path.is_empty() {
                return Err(HubError::Config(format!(
                    "no file name in database URL {url:?}"
                )));
            }
            return Ok(DbUrl::SqliteFile(PathBuf::from(path)));
        }
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
        Err(HubError::Config(format!(
            "unsupported database URL scheme {scheme:?}: use sqlite://FILE, sqlite:///ABSOLUTE/FILE, \
             sqlite::memory: or postgres://USER@HOST/DB"
        )))
    }

    pub fn is_sqlite(&self) -> bool {
        !matches!(self, DbUrl::Postgres(_))
    }
}

/// SQLite settings applied to every connection. `busy_timeout` comes before `journal_mode=WAL`
/// (the other order can fail with "database is locked" while the pool starts).
/// `case_sensitive_like` makes LIKE case-sensitive as on PostgreSQL; case-insensitive matching
/// always goes through the folded columns.
///
/// `mmap_size`: each connection reads the file through a memory map of up to 16 GiB (about four
/// million users) instead of a `pread` and a copy of every page its own cache misses
/// (docs/performance.md, "Session 22"). It is address space, not memory: the pages are the
/// kernel's page cache, shared by every connection. SQLite's own cap is 2 GiB;
/// `.cargo/config.toml` raises it (`SQLITE_MAX_MMAP_SIZE`). Past the map, the rest of a file is
/// read as before.
const SQLITE_SETUP: &str = "PRAGMA busy_timeout = 10000;
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
PRAGMA case_sensitive_like = ON;
PRAGMA temp_store = MEMORY;
PRAGMA wal_autocheckpoint = 4000;
PRAGMA mmap_size = 17179869184;";

const SQLITE_MEMORY_SETUP: &str = "PRAGMA foreign_keys = ON;
PRAGMA case_sensitive_like = ON;
PRAGMA temp_store = MEMORY;
PRAGMA wal_autocheckpoint = 4000;";

/// How recently a PostgreSQL connection must have answered for a pool checkout to trust it
/// without a `SELECT 1` of its own (see [`Liveness`]).
const TRUSTED_FOR: Duration = Duration::from_secs(1);

/// What a PostgreSQL connection's own queries say about it, recorded by diesel's per-connection
/// instrumentation: when it last answered without error, and whether the server closed it.
///
/// The pool tests a connection on checkout so that one left dead by a server restart or an
/// idle timeout is replaced instead of failing a request. That test is a round trip (`SELECT
/// 1`), as dear as the point read it precedes: under load it doubled the statements of a
/// `GET`. A connection that answered less than [`TRUSTED_FOR`] ago is handed out untested; one
/// that has been quiet longer is tested as before, and one whose query found the connection
/// closed is discarded when it returns to the pool.
#[derive(Debug)]
struct Liveness {
    last_ok: Option<Instant>,
    lost: bool,
}

impl Instrumentation for Liveness {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match event {
            InstrumentationEvent::FinishQuery { error: None, .. } => {
                self.last_ok = Some(Instant::now());
            }
            InstrumentationEvent::FinishQuery {
                error: Some(E::DatabaseError(K::ClosedConnection | K::UnableToSendCommand, _)),
                ..
            } => {
                self.lost = true;
            }
            _ => {}
        }
    }
}

/// Statements finished on this process's connections to one SQLite file that can write: every
/// one but the threads' own readers ([`establish_reader`]). A thread's reader keeps its read
/// transaction (its snapshot) between reads only while its file's count stands still
/// (`local_reader`), so a write committed here is seen by the next read that starts after it.
/// Counted after each statement has finished, which for `COMMIT` and for a statement outside a
/// transaction is after its commit: a write is acknowledged only after its count moved. Reads
/// on those connections count too; that only ends kept snapshots sooner than needed.
#[derive(Debug, Default)]
pub(crate) struct StatementCount(AtomicU64);

impl StatementCount {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The statement count of the SQLite file at `path`, one per file in this process while any
/// connection or reader of it holds the count (a test process opens hundreds of files; a new
/// count starts once nothing holds the old one, and then nothing compares against it). Keyed
/// by the file's name in its directory's canonical path: the same before the first connection
/// creates the file as after, and the same for a relative and an absolute spelling.
pub(crate) fn statement_count(path: &std::path::Path) -> Arc<StatementCount> {
    static COUNTS: LazyLock<Mutex<HashMap<PathBuf, Weak<StatementCount>>>> =
        LazyLock::new(Mutex::default);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let key = match (std::fs::canonicalize(dir), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    };
    let mut counts = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(count) = counts.get(&key).and_then(Weak::upgrade) {
        return count;
    }
    counts.retain(|_, count| count.strong_count() > 0);
    let count = Arc::new(StatementCount::default());
    counts.insert(key, Arc::downgrade(&count));
    count
}

/// Counts the statements of a SQLite file connection that can write ([`StatementCount`]).
#[derive(Debug)]
struct CountStatements(Arc<StatementCount>);

impl Instrumentation for CountStatements {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery { .. } = event {
            self.0 .0.fetch_add(1, Ordering::Release);
        }
    }
}

/// The liveness record of a PostgreSQL connection (`None` for SQLite, or a connection opened
/// without one).
fn liveness(c: &mut DbConnection) -> Option<&mut Liveness> {
    match c {
        DbConnection::Postgresql(pg) => pg.instrumentation().downcast_mut::<Liveness>(),
        DbConnection::Sqlite(_) => None,
    }
}

/// Session settings of every PostgreSQL connection the pool opens (`[database]` in the
/// configuration; see `docs/postgresql.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgSession {
    /// `statement_timeout`: a statement running longer is cancelled by the server (SQLSTATE
    /// 57014) and its transaction rolled back. Zero: no limit.
    pub statement_timeout: std::time::Duration,
    /// `idle_in_transaction_session_timeout`: a session idle inside a transaction this long is
    /// ended by the server, so a stalled node cannot hold row locks others wait for. Zero: none.
    pub idle_in_transaction_timeout: std::time::Duration,
    /// libpq `connect_timeout` added to the URL when it names none, so opening a connection to
    /// an unreachable primary gives up instead of hanging a pool thread (libpq's own default
    /// waits forever).
    pub connect_timeout: std::time::Duration,
}

impl Default for PgSession {
    fn default() -> Self {
        PgSession {
            statement_timeout: std::time::Duration::from_secs(30),
            idle_in_transaction_timeout: std::time::Duration::from_secs(60),
            connect_timeout: std::time::Duration::from_secs(5),
        }
    }
}

impl PgSession {
    /// No statement or idle-in-transaction timeout (migrations, operators' one-off commands).
    pub fn unlimited() -> PgSession {
        PgSession {
            statement_timeout: std::time::Duration::ZERO,
            idle_in_transaction_timeout: std::time::Duration::ZERO,
            ..PgSession::default()
        }
    }

    /// The `SET` statements run on each new connection.
    pub(super) fn setup_sql(&self) -> String {
        format!(
            "SET statement_timeout = {}; SET idle_in_transaction_session_timeout = {};",
            self.statement_timeout.as_millis(),
            self.idle_in_transaction_timeout.as_millis()
        )
    }

    /// `url` with the client-side settings libpq takes from it, each added unless the URL
    /// already names it: `connect_timeout` (whole seconds; at least 2, libpq's own minimum), and
    /// TCP keepalives and a TCP user timeout ([`CLIENT_TCP_SETTINGS`]).
    pub(crate) fn url_with_client_settings(&self, url: &str) -> String {
        let mut out = url.to_string();
        let mut add = |key: &str, value: &str| {
            let named = url
                .split(['?', '&'])
                .skip(1)
                .any(|pair| pair.split('=').next() == Some(key));
            if !named {
                out.push(if out.contains('?') { '&' } else { '?' });
                out.push_str(key);
                out.push('=');
                out.push_str(value);
            }
        };
        if !self.connect_timeout.is_zero() {
            add(
                "connect_timeout",
                &self.connect_timeout.as_secs().max(2).to_string(),
            );
        }
        for (key, value) in CLIENT_TCP_SETTINGS {
            add(key, value);
        }
        if plain_first(url, environment_decides_tls()) {
            add("sslmode", "allow");
        }
        out
    }
}

/// Whether the environment sets a libpq variable that could move a connection elsewhere or
/// decide its TLS: then libpq's default is left alone.
pub(crate) fn environment_decides_tls() -> bool {
    ["PGSSLMODE", "PGHOSTADDR", "PGSERVICE", "PGSSLNEGOTIATION"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

/// Whether a connection to `url` should try without TLS first (libpq `sslmode=allow`): when
/// it reaches only this machine (loopback addresses, `localhost`, a Unix-domain socket) and
/// the operator set nothing about TLS (no `ssl…` parameter in the URL, no `PGSSLMODE`).
/// libpq's own default, `prefer`, negotiates TLS there too, which verifies no certificate and
/// guards no traffic an unprivileged local user could read, yet cost the hub about 13 % of
/// its CPU per PATCH (docs/benchmarks.md, session 30). `allow` still falls back to TLS where
/// the server demands it (`hostssl` only, or a tunnel to a server that does).
pub(crate) fn plain_first(url: &str, sslmode_in_env: bool) -> bool {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return false;
    };
    // libpq reads the authority up to the first `/`: a `?` or `#` before it (in a password)
    // would make this split differ from libpq's, so such a URL is left alone.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    if rest[..authority_end].contains(['?', '#']) && rest[..authority_end].contains('@') {
        return false;
    }
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let params: Vec<(&str, &str)> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    if sslmode_in_env
        || params.iter().any(|(k, _)| {
            k.starts_with("ssl") || matches!(*k, "requiressl" | "service" | "gssencmode")
        })
    {
        return false;
    }
    let authority = before_query.split('/').next().unwrap_or("");
    let hosts_in_authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    // `host=` and `hostaddr=` in the query take the place of the URL's hosts.
    let named: Vec<&str> = params
        .iter()
        .filter(|(k, _)| *k == "host" || *k == "hostaddr")
        .flat_map(|(_, v)| v.split(','))
        .collect();
    let hosts: Vec<&str> = if named.is_empty() {
        hosts_in_authority.split(',').map(strip_port).collect()
    } else {
        named
    };
    // No host at all: libpq's default socket, unless PGHOST points elsewhere.
    if hosts.iter().all(|h| h.is_empty()) {
        return std::env::var_os("PGHOST").is_none();
    }
    hosts.iter().all(|h| on_this_machine(h))
}

/// `host[:port]` or `[v6][:port]` without the port.
fn strip_port(h: &str) -> &str {
    match h.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => h.split(':').next().unwrap_or(""),
    }
}

fn on_this_machine(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.starts_with('/') || host.starts_with("%2F") || host.starts_with("%2f") {
        return true;
    }
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// libpq's client-side TCP settings. A primary that vanishes without closing its sockets (a
/// cloud failover) would otherwise leave a writer waiting for a statement's or a COMMIT's
/// answer for as long as the operating system's TCP timeouts: about 15 minutes with data
/// unacknowledged, 2 hours on an idle wait. With these the wait ends in about a minute (30 s
/// for unacknowledged data; an idle wait: 30 s, then 3 probes 10 s apart), the connection is
/// found lost, and the write is answered 503 (outcome unknown if its COMMIT was in flight).
/// The server's own `tcp_keepalives_*` (docs/postgresql.md) cover the other direction. libpq
/// ignores these on Unix-domain sockets.
const CLIENT_TCP_SETTINGS: [(&str, &str); 5] = [
    ("keepalives", "1"),
    ("keepalives_idle", "30"),
    ("keepalives_interval", "10"),
    ("keepalives_count", "3"),
    ("tcp_user_timeout", "30000"),
];

/// Opens one connection for `url`, reporting the backend's own error, with the default
/// PostgreSQL session settings.
pub fn establish(url: &DbUrl) -> Result<DbConnection, diesel::r2d2::Error> {
    establish_with(url, &PgSession::default())
}

/// Opens one connection for `url`; a PostgreSQL one gets the session settings `pg`.
pub fn establish_with(url: &DbUrl, pg: &PgSession) -> Result<DbConnection, diesel::r2d2::Error> {
    use diesel::r2d2::Error as E;
    match url {
        DbUrl::Postgres(u) => {
            let mut conn = PgConnection::establish(&pg.url_with_client_settings(u))
                .map_err(E::ConnectionError)?;
            conn.batch_execute(&pg.setup_sql()).map_err(E::QueryError)?;
            conn.set_instrumentation(Liveness {
                last_ok: Some(Instant::now()),
                lost: false,
            });
            Ok(DbConnection::Postgresql(conn))
        }
        DbUrl::SqliteFile(path) => {
            let mut conn = open_sqlite_file(path)?;
            conn.set_instrumentation(CountStatements(statement_count(path)));
            Ok(DbConnection::Sqlite(conn))
        }
        DbUrl::SqliteMemory => {
            let mut conn = SqliteConnection::establish(":memory:").map_err(E::ConnectionError)?;
            conn.batch_execute(SQLITE_MEMORY_SETUP)
                .map_err(E::QueryError)?;
            Ok(DbConnection::Sqlite(conn))
        }
    }
}

/// Opens a thread's own reader of a SQLite file (`local_reader`): read-only (`query_only`), so
/// that no write can ever run inside the read transaction it keeps between reads, and outside
/// [`StatementCount`], which counts only what can write. Other URLs: as [`establish`].
pub(crate) fn establish_reader(url: &DbUrl) -> Result<DbConnection, diesel::r2d2::Error> {
    use diesel::r2d2::Error as E;
    let DbUrl::SqliteFile(path) = url else {
        return establish(url);
    };
    let mut conn = open_sqlite_file(path)?;
    conn.batch_execute("PRAGMA query_only = ON;")
        .map_err(E::QueryError)?;
    Ok(DbConnection::Sqlite(conn))
}

/// Opens a connection for `url` whose statements are not counted in its file's
/// [`StatementCount`]: for the background WAL checkpointer, whose checkpoints change nothing a
/// reader sees (counted, they would end kept snapshots for nothing). Nothing that writes data
/// may use it. Other URLs: as [`establish`].
pub(crate) fn establish_uncounted(url: &DbUrl) -> Result<DbConnection, diesel::r2d2::Error> {
    match url {
        DbUrl::SqliteFile(path) => Ok(DbConnection::Sqlite(open_sqlite_file(path)?)),
        _ => establish(url),
    }
}

/// A connection to the SQLite file at `path`, set up (`SQLITE_SETUP`).
fn open_sqlite_file(path: &std::path::Path) -> Result<SqliteConnection, diesel::r2d2::Error> {
    use diesel::r2d2::Error as E;
    let path = path.to_str().ok_or_else(|| {
        E::ConnectionError(diesel::ConnectionError::InvalidConnectionUrl(
            "non-UTF-8 path".into(),
        ))
    })?;
    let mut conn = SqliteConnection::establish(path).map_err(E::ConnectionError)?;
    conn.batch_execute(SQLITE_SETUP).map_err(E::QueryError)?;
    Ok(conn)
}

/// r2d2 manager choosing the backend from the URL (diesel's own manager hides PostgreSQL errors
/// and treats unknown strings as SQLite file names).
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    url: DbUrl,
    pg: PgSession,
}

impl ConnectionManager {
    pub fn new(url: DbUrl) -> Self {
        ConnectionManager::with_session(url, PgSession::default())
    }

    /// A manager whose PostgreSQL connections get the session settings `pg`.
    pub fn with_session(url: DbUrl, pg: PgSession) -> Self {
        ConnectionManager { url, pg }
    }
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        establish_with(&self.url, &self.pg)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        if let Some(l) = liveness(conn) {
            if !l.lost && l.last_ok.is_some_and(|t| t.elapsed() < TRUSTED_FOR) {
                return Ok(());
            }
        }
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    /// Checked when a connection returns to the pool. A connection lost inside a transaction
    /// fails its ROLLBACK, which leaves diesel's transaction manager broken: it is dropped here.
    /// One lost outside a transaction fails the `is_valid` ping at its next checkout (PostgreSQL
    /// pools test on checkout) and is replaced then.
    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        std::thread::panicking() || conn.is_broken() || liveness(conn).is_some_and(|l| l.lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_url_schemes() {
        assert_eq!(
            DbUrl::parse("sqlite://scimhub.db").ok(),
            Some(DbUrl::SqliteFile("scimhub.db".into()))
        );
        assert_eq!(
            DbUrl::parse("sqlite:///var/lib/scimhub/hub.db").ok(),
            Some(DbUrl::SqliteFile("/var/lib/scimhub/hub.db".into()))
        );
        assert_eq!(
            DbUrl::parse("sqlite::memory:").ok(),
            Some(DbUrl::SqliteMemory)
        );
        assert!(matches!(
            DbUrl::parse("postgres://u@h/db"),
            Ok(DbUrl::Postgres(_))
        ));
        assert!(matches!(
            DbUrl::parse("postgresql://u@h/db"),
            Ok(DbUrl::Postgres(_))
        ));
        assert!(matches!(
            DbUrl::parse("host=localhost port=5432"),
            Err(HubError::Config(_))
        ));
        assert!(matches!(
            DbUrl::parse("mysql://x"),
            Err(HubError::Config(_))
        ));
        assert!(matches!(
            DbUrl::parse("scimhub.db"),
            Err(HubError::Config(_))
        ));
    }

    /// The client-side settings are added to a PostgreSQL URL, each only where the operator
    /// named none, after a `?` or an `&` as the URL needs.
    #[test]
    fn postgres_urls_get_client_settings_the_operator_did_not_name() {
        let pg = PgSession::default();
        assert_eq!(
            pg.url_with_client_settings("postgres://u@h/db"),
            "postgres://u@h/db?connect_timeout=5&keepalives=1&keepalives_idle=30\
             &keepalives_interval=10&keepalives_count=3&tcp_user_timeout=30000"
        );
        assert_eq!(
            pg.url_with_client_settings(
                "postgres://u@h/db?sslmode=require&keepalives_idle=120&connect_timeout=9"
            ),
            "postgres://u@h/db?sslmode=require&keepalives_idle=120&connect_timeout=9\
             &keepalives=1&keepalives_interval=10&keepalives_count=3&tcp_user_timeout=30000"
        );
        let no_timeout = PgSession {
            connect_timeout: Duration::ZERO,
            ..PgSession::default()
        };
        assert!(!no_timeout
            .url_with_client_settings("postgres://u@h/db?tcp_user_timeout=0")
            .contains("connect_timeout"));
        assert!(no_timeout
            .url_with_client_settings("postgres://u@h/db?tcp_user_timeout=0")
            .ends_with(
                "?tcp_user_timeout=0&keepalives=1&keepalives_idle=30\
                        &keepalives_interval=10&keepalives_count=3"
            ));
    }

    /// A database on this machine is tried without TLS first unless the operator said
    /// anything about TLS; any other host keeps libpq's default.
    #[test]
    fn only_a_database_on_this_machine_is_tried_without_tls_first() {
        for url in [
            "postgres://u@127.0.0.1:5432/db",
            "postgresql://u:p@localhost/db?application_name=x",
            "postgres://u@[::1]:5433/db",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db",
            "postgres://u@127.0.0.2,localhost:5433/db",
            "postgres://u@db.example.com/db?host=/var/run/postgresql",
        ] {
            assert!(plain_first(url, false), "{url}");
            assert!(!plain_first(url, true), "{url}: the environment decides");
        }
        for url in [
            "postgres://u@db.example.com/db",
            "postgres://u@10.0.0.5:5432/db",
            "postgres://u@127.0.0.1,db.example.com/db",
            "postgres://u@localhost/db?sslmode=require",
            "postgres://u@localhost/db?sslrootcert=/ca.pem",
            "postgres://u@localhost/db?hostaddr=10.0.0.5",
            "postgres:///db?service=prod",
            "postgres://localhost:pw?x@db.example.com/db?application_name=a",
            "postgres://localhost:pw#x@db.example.com/db",
            "mysql://u@localhost/db",
        ] {
            assert!(!plain_first(url, false), "{url}");
        }
        let pg = PgSession::default();
        assert!(
            pg.url_with_client_settings("postgres://u@127.0.0.1/db")
                .ends_with("&sslmode=allow")
                == std::env::var_os("PGSSLMODE").is_none()
        );
        assert!(!pg
            .url_with_client_settings("postgres://u@h/db")
            .contains("sslmode"));
    }

    /// One count per file while something holds it, under either spelling of the file; a
    /// count nothing holds is forgotten.
    #[test]
    fn statement_counts_are_per_file_and_forgotten_when_unheld() {
        // Only names: no file is opened.
        let dir = std::env::temp_dir();
        let name = format!("scimhub-count-{}.db", uuid::Uuid::new_v4());
        let file = dir.join(&name);
        let dotted = dir.join(".").join(&name);
        let first = statement_count(&file);
        first.0.fetch_add(3, Ordering::Release);
        let again = statement_count(&dotted);
        assert!(Arc::ptr_eq(&first, &again), "one count per file");
        assert_eq!(statement_count(&dir.join(format!("other-{name}"))).get(), 0);
        drop((first, again));
        assert_eq!(
            statement_count(&file).get(),
            0,
            "a new count once none was held"
        );
    }

    /// A connection to a SQLite file maps all of it up to 16 GiB: `SQLITE_SETUP` asks for that
    /// and the build's cap (`SQLITE_MAX_MMAP_SIZE` in `.cargo/config.toml`) allows it. A build
    /// with SQLite's own cap silently maps 2 GiB at most; this says so.
    #[test]
    fn sqlite_files_are_read_through_a_memory_map_of_16_gib() {
        use diesel::sql_types::BigInt;
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct MmapSize {
            #[diesel(sql_type = BigInt)]
            mmap_size: i64,
        }
        let dir = std::env::temp_dir().join(format!("scimhub-mmap-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let url = DbUrl::parse(&format!("sqlite://{}", dir.join("hub.db").display()))
            .expect("a SQLite URL");
        let opened = [establish(&url), establish_reader(&url)];
        for conn in opened {
            let DbConnection::Sqlite(mut conn) = conn.expect("a file connection") else {
                panic!("a SQLite connection");
            };
            let got = diesel::sql_query("PRAGMA mmap_size")
                .get_result::<MmapSize>(&mut conn)
                .expect("mmap_size")
                .mmap_size;
            assert_eq!(got, 16 << 30, "mmap_size of a file connection");
        }
        std::fs::remove_dir_all(&dir).expect("the temporary directory removed");
    }

    /// The bundled SQLite is built as `.cargo/config.toml` asks: multi-thread mode (no mutex
    /// per call on a connection) and no allocation statistics (no global mutex per
    /// allocation). A build without those flags is correct but slower; this says so.
    #[test]
    fn bundled_sqlite_is_built_multi_thread_without_memory_statistics() {
        use diesel::sql_types::Text;
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct CompileOption {
            #[diesel(sql_type = Text)]
            compile_options: String,
        }
        let mut conn = SqliteConnection::establish(":memory:").expect("in-memory SQLite");
        let options: Vec<String> =
            diesel::sql_query("SELECT compile_options FROM pragma_compile_options")
                .load::<CompileOption>(&mut conn)
                .expect("compile options")
                .into_iter()
                .map(|o| o.compile_options)
                .collect();
        for wanted in ["THREADSAFE=2", "DEFAULT_MEMSTATUS=0"] {
            assert!(
                options.iter().any(|o| o == wanted),
                "{wanted} missing from {options:?}"
            );
        }
    }
}
