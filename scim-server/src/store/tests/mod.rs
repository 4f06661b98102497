//! Store tests, one file per store module (the shared harness is here), run on SQLite (a temp
//! file per test) and, when `SCIMHUB_TEST_POSTGRES_URL` is set, on PostgreSQL (a fresh database
//! per test, created through that URL and dropped afterwards).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit_chain;
mod batch;
mod connections;
mod drift;
mod faults;
mod members;
mod metrics;
mod outbox;
mod pg_ranks;
mod pg_reader;
mod postgres_plans;
mod resources;
mod search;
mod tokens;
mod upgrades;

use std::sync::Arc;

use diesel::connection::SimpleConnection;
use diesel::Connection;
use scim_schema::filter::{AttrPath, CompValue, CompareOp, Filter};
use scim_schema::schema::{ResourceSchema, ResourceType, Schema};
use serde_json::{json, Value};

use super::*;

pub(crate) struct TestDb {
    pub(crate) store: Store,
    name: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Files(std::path::PathBuf),
    Postgres { admin_url: String, db: String },
}

impl TestDb {
    /// The URL of a PostgreSQL test database (its own connections: a second node, an observer).
    fn postgres_url(&self) -> String {
        let Cleanup::Postgres { admin_url, db } = &self.cleanup else {
            panic!("{}: not a PostgreSQL test database", self.name);
        };
        let (prefix, _) = admin_url
            .rsplit_once('/')
            .expect("database URL with a database name");
        format!("{prefix}/{db}")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Files(p) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
                }
            }
            Cleanup::Postgres { admin_url, db } => {
                if let Ok(mut c) = diesel::pg::PgConnection::establish(admin_url) {
                    let _ =
                        c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"));
                }
            }
        }
    }
}

/// A fresh SQLite store in a temporary file, removed (with its WAL files) when dropped.
pub(crate) fn sqlite_db() -> TestDb {
    let path = std::env::temp_dir().join(format!("scimhub-store-{}.db", uuid::Uuid::new_v4()));
    let store = Store::open(&format!("sqlite://{}", path.display())).expect("open sqlite");
    TestDb {
        store,
        name: "sqlite".into(),
        cleanup: Cleanup::Files(path),
    }
}

fn postgres_db() -> Option<TestDb> {
    postgres_db_with(4)
}

/// [`postgres_db`] with a pool of `pool_size` connections.
fn postgres_db_with(pool_size: u32) -> Option<TestDb> {
    let admin_url = std::env::var("SCIMHUB_TEST_POSTGRES_URL").ok()?;
    let db = format!("scimhub_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = diesel::pg::PgConnection::establish(&admin_url)
        .expect("connect to SCIMHUB_TEST_POSTGRES_URL");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .expect("create test database");
    let (prefix, _) = admin_url
        .rsplit_once('/')
        .expect("database URL with a database name");
    let url = format!("{prefix}/{db}");
    let store = Store::open_with(
        &url,
        StoreOptions {
            pool_size,
            ..StoreOptions::default()
        },
    )
    .expect("open pg");
    Some(TestDb {
        store,
        name: "postgres".into(),
        cleanup: Cleanup::Postgres { admin_url, db },
    })
}

/// A connection of its own to `db`'s PostgreSQL database, to watch the test's transactions.
fn pg_observer(db: &TestDb) -> diesel::PgConnection {
    use diesel::Connection;
    diesel::PgConnection::establish(&db.postgres_url()).expect("an observer connection")
}

/// Waits until a session of this database waits for an advisory lock (at most 10 s).
fn until_one_waits_for_an_advisory_lock(observer: &mut diesel::PgConnection) {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
        )
        .get_result::<Waiting>(observer)
        .expect("pg_stat_activity");
        if waiting.n > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no session waited for an advisory lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Asserts that `burst` is the only open burst and that it holds the plans `p1` and `p2`: two
/// joiners that overlapped ended in one burst.
fn assert_one_burst_of_both_joiners(s: &Store, burst: &str) {
    use crate::store::bursts;
    let open = s.write_tx(|c, _| bursts::open(c)).unwrap();
    assert_eq!(open.len(), 1, "one window burst: {open:?}");
    assert_eq!(open[0].id, burst, "both joiners in the one burst");
    let mut plans: Vec<String> = s
        .write_tx(|c, _| bursts::plans(c, burst))
        .unwrap()
        .into_iter()
        .map(|p| p.plan_id)
        .collect();
    plans.sort();
    assert_eq!(plans, ["p1", "p2"]);
}

/// Runs `f` on every configured backend.
fn each_backend(f: impl Fn(&TestDb)) {
    let db = sqlite_db();
    f(&db);
    if let Some(db) = postgres_db() {
        f(&db);
    }
}

/// A real SQLSTATE raised by the PostgreSQL server inside the caller's transaction.
fn raise(c: &mut DbConnection, errcode: &str, message: &str) -> HubResult<()> {
    c.batch_execute(&format!(
        "DO $$ BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = '{errcode}'; END $$"
    ))?;
    Ok(())
}

fn obj(v: Value) -> Doc {
    match v {
        Value::Object(m) => m,
        _ => panic!("object expected"),
    }
}

fn user_schema() -> ResourceSchema {
    let main: Schema = serde_json::from_value(json!({
        "id": "urn:ietf:params:scim:schemas:core:2.0:User",
        "attributes": [
            {"name": "userName", "type": "string", "uniqueness": "server"},
            {"name": "displayName", "type": "string"},
            {"name": "externalId", "type": "string", "caseExact": true},
            {"name": "active", "type": "boolean"},
            {"name": "title", "type": "string"},
            {"name": "name", "type": "complex", "subAttributes": [
                {"name": "givenName", "type": "string"}, {"name": "familyName", "type": "string"}]},
            {"name": "emails", "type": "complex", "multiValued": true, "subAttributes": [
                {"name": "value", "type": "string"}, {"name": "type", "type": "string"},
                {"name": "primary", "type": "boolean"}]},
            {"name": "groups", "type": "complex", "multiValued": true, "subAttributes": [
                {"name": "value", "type": "string"}, {"name": "type", "type": "string"}]}
        ]
    }))
    .unwrap();
    let ent: Schema = serde_json::from_value(json!({
        "id": ENTERPRISE,
        "attributes": [
            {"name": "employeeNumber", "type": "string"},
            {"name": "manager", "type": "complex", "subAttributes": [{"name": "value", "type": "string"}]}
        ]
    }))
    .unwrap();
    let rt: ResourceType = serde_json::from_value(json!({
        "id": "User", "name": "User", "endpoint": "/Users",
        "schema": "urn:ietf:params:scim:schemas:core:2.0:User",
        "schemaExtensions": [{"schema": ENTERPRISE, "required": false}]
    }))
    .unwrap();
    ResourceSchema {
        resource_type: rt,
        main: Arc::new(main),
        extensions: vec![(Arc::new(ent), false)],
    }
}

fn group_schema() -> ResourceSchema {
    let main: Schema = serde_json::from_value(json!({
        "id": "urn:ietf:params:scim:schemas:core:2.0:Group",
        "attributes": [
            {"name": "displayName", "type": "string"},
            {"name": "externalId", "type": "string", "caseExact": true},
            {"name": "members", "type": "complex", "multiValued": true, "subAttributes": [
                {"name": "value", "type": "string", "caseExact": true}, {"name": "type", "type": "string"}]}
        ]
    }))
    .unwrap();
    let rt: ResourceType = serde_json::from_value(json!({
        "id": "Group", "name": "Group", "endpoint": "/Groups",
        "schema": "urn:ietf:params:scim:schemas:core:2.0:Group"
    }))
    .unwrap();
    ResourceSchema {
        resource_type: rt,
        main: Arc::new(main),
        extensions: vec![],
    }
}

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn user(s: &Store, name: &str) -> StoredResource {
    s.create(ResourceKind::User, obj(json!({"userName": name})), None)
        .unwrap()
}

fn group(s: &Store, name: &str, members: &[&str]) -> StoredResource {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    s.create(
        ResourceKind::Group,
        obj(json!({"displayName": name, "members": members})),
        None,
    )
    .unwrap()
}

fn cmp(path: AttrPath, op: CompareOp, v: &str) -> Filter {
    Filter::Compare {
        path,
        op,
        value: CompValue::Str(v.into()),
    }
}
