//! PostgreSQL reads on the worker's own connection (`store::pg_reader`): the same answers as the
//! pool's, a connection killed under it replaced, the pool's session settings, and the readers
//! off wherever tokio-postgres could connect differently from libpq.

use scim_schema::filter::parse_filter;

use super::*;
use crate::store::pg_reader::PgReaders;
use crate::store::sql::Sql;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn query(filter: &str, count: u64, with_members: bool) -> SearchQuery {
    SearchQuery {
        filter: Some(parse_filter(filter).unwrap()),
        count,
        with_members,
        ..Default::default()
    }
}

#[test]
fn store_pg_worker_reads_answer_as_the_pool_does() {
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    assert!(s.reads_on_worker_pg());
    let alice = user(s, "alice");
    let bob = user(s, "bob");
    for i in 0..7 {
        user(s, &format!("carol{i}"));
    }
    let team = group(s, "team", &[&alice.id]);
    // Nested: alice is in `all` through `team`.
    let all = group(s, "all", &[&team.id]);
    let rt = rt();
    for (kind, id) in [
        (ResourceKind::User, &alice.id),
        (ResourceKind::User, &bob.id),
        (ResourceKind::Group, &team.id),
    ] {
        for with_members in [true, false] {
            let on_worker = rt.block_on(s.get_loaded_on_worker(kind, id, with_members));
            if kind == ResourceKind::Group && with_members {
                assert!(on_worker.is_none(), "a group's members stay on the pool");
                continue;
            }
            let on_worker = on_worker.expect("read on the worker").unwrap();
            assert_eq!(on_worker, s.get_loaded(kind, id, with_members).unwrap());
        }
    }
    let alice_groups = rt
        .block_on(s.get_loaded_on_worker(ResourceKind::User, &alice.id, true))
        .unwrap()
        .unwrap();
    let doc = s.assemble_loaded(alice_groups).doc;
    let mut groups: Vec<&str> = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["value"].as_str().unwrap())
        .collect();
    groups.sort();
    let mut expected = vec![team.id.as_str(), all.id.as_str()];
    expected.sort();
    assert_eq!(groups, expected);
    let missing = rt.block_on(s.get_loaded_on_worker(ResourceKind::User, "no-such-id", true));
    assert!(matches!(missing, Some(Err(HubError::NotFound))));
    // A group's id is not a user's.
    let wrong_kind = rt.block_on(s.get_loaded_on_worker(ResourceKind::User, &team.id, false));
    assert!(matches!(wrong_kind, Some(Err(HubError::NotFound))));

    let users = user_schema();
    for (filter, count) in [
        ("userName eq \"alice\"", 100),
        ("userName eq \"ALICE\"", 100),
        ("userName eq \"nobody\"", 100),
        ("userName sw \"carol\"", 100),
        ("userName sw \"carol\"", 7),
        (&format!("id eq \"{}\"", bob.id), 10),
    ] {
        for with_members in [true, false] {
            let q = query(filter, count, with_members);
            let on_worker = rt
                .block_on(s.search_loaded_on_worker(ResourceKind::User, &q, &users))
                .expect("an index lookup runs on the worker")
                .unwrap();
            let pooled = s.search_loaded(ResourceKind::User, &q, &users).unwrap();
            assert_eq!(on_worker, pooled, "{filter} count={count}");
        }
    }
    // More matches than the page: the total needs a COUNT(*) over all of them, which is left to
    // the pool (unbounded work would hold up the reads pipelined behind it).
    assert!(rt
        .block_on(s.search_loaded_on_worker(
            ResourceKind::User,
            &query("userName sw \"carol\"", 3, true),
            &users,
        ))
        .is_none());
    let groups = group_schema();
    let q = query("displayName eq \"team\"", 10, false);
    assert_eq!(
        rt.block_on(s.search_loaded_on_worker(ResourceKind::Group, &q, &groups))
            .unwrap()
            .unwrap(),
        s.search_loaded(ResourceKind::Group, &q, &groups).unwrap()
    );
    // Not offered: a group page with members, a filter that is not an index lookup, a cursor.
    let with_members = query("displayName eq \"team\"", 10, true);
    let not_index = query("title co \"x\"", 10, true);
    let cursor = SearchQuery {
        cursor: Some(String::new()),
        ..query("userName eq \"alice\"", 10, true)
    };
    for (kind, q) in [
        (ResourceKind::Group, &with_members),
        (ResourceKind::User, &not_index),
        (ResourceKind::User, &cursor),
    ] {
        let schema = if kind == ResourceKind::User {
            &users
        } else {
            &groups
        };
        assert!(rt
            .block_on(s.search_loaded_on_worker(kind, q, schema))
            .is_none());
    }
}

#[test]
fn store_pg_worker_reader_is_replaced_when_killed_and_keeps_the_session_settings() {
    let Some(db) = postgres_db() else { return };
    let s = &db.store;
    let alice = user(s, "alice");
    let rt = rt();
    let read = || {
        rt.block_on(s.get_loaded_on_worker(ResourceKind::User, &alice.id, true))
            .expect("read on the worker")
            .unwrap()
    };
    assert_eq!(read().id, alice.id);
    let readers = s.inner.pg_readers.as_ref().unwrap();
    // The reader's session has the pool's statement timeout (30 s by default).
    let timeout: Vec<Setting> = rt
        .block_on(readers.load(&Sql::<diesel::sql_types::Text>::new(
            "SELECT current_setting('statement_timeout')",
        )))
        .ok()
        .unwrap();
    assert_eq!(timeout[0].0, "30s");
    // Every other backend of the database ended (the pool's too): the next read opens a new
    // connection and answers, the readers stay on.
    let mut c = s.inner.write.get().unwrap();
    c.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .unwrap();
    drop(c);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(read().id, alice.id);
    assert!(s.reads_on_worker_pg());
}

struct Setting(String);

impl crate::store::pg_reader::FromPgRow for Setting {
    fn from_pg_row(row: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Setting(row.try_get(0)?))
    }
}

#[test]
fn store_pg_worker_readers_stay_off_where_libpq_would_connect_differently() {
    let pg = PgSession::default();
    for url in [
        "postgres://u@db.internal/hub?sslmode=verify-full",
        "postgres://u@db.internal/hub?sslmode=require&sslrootcert=/etc/ca.pem",
        "postgres://u@db.internal/hub?passfile=/tmp/pgpass",
        // libpq would take the OS user; tokio-postgres needs one named.
        "postgres://db.internal/hub",
    ] {
        assert!(PgReaders::new(url, &pg).is_err(), "{url}");
    }
    for url in [
        "postgres://u@db.internal/hub",
        "postgres://u:secret@db.internal:6432/hub?sslmode=require&connect_timeout=3",
        "postgresql://u@h1,h2/hub?target_session_attrs=read-write",
    ] {
        assert!(PgReaders::new(url, &pg).is_ok(), "{url}");
    }
}

#[test]
fn store_pg_worker_readers_turn_off_when_the_server_refuses_them() {
    let Some(admin_url) = std::env::var("SCIMHUB_TEST_POSTGRES_URL").ok() else {
        return;
    };
    // A role that does not exist: the server answers the connection with an error, which libpq
    // would get too only if its own settings named the same role; the readers turn off and
    // every read goes to the pool.
    let (scheme_and_auth, rest) = admin_url.split_once('@').unwrap();
    let scheme = scheme_and_auth.split("//").next().unwrap();
    let url = format!("{scheme}//no_such_role_{}@{rest}", std::process::id());
    let readers = PgReaders::new(&url, &PgSession::default()).unwrap();
    let q = Sql::<diesel::sql_types::Text>::new("SELECT 'x'");
    let out = rt().block_on(readers.load::<Setting, _>(&q));
    assert!(out.is_err());
    assert!(!readers.is_on());
    // Unreachable (nothing listens): not a refusal, the readers stay on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://u@127.0.0.1:{port}/x?connect_timeout=2");
    let readers = PgReaders::new(&url, &PgSession::default()).unwrap();
    assert!(rt().block_on(readers.load::<Setting, _>(&q)).is_err());
    assert!(readers.is_on());
}

#[test]
fn channel_binding_hash_follows_the_certificate_signature() {
    use crate::store::pg_reader::server_end_point;
    let plain = b"certificate bytes signed with sha256WithRSAEncryption".to_vec();
    assert_eq!(server_end_point(&plain).len(), 32);
    let mut p384 = plain.clone();
    p384.extend([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]);
    assert_eq!(server_end_point(&p384).len(), 48);
    let mut rsa512 = plain.clone();
    rsa512.extend([
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d,
    ]);
    assert_eq!(server_end_point(&rsa512).len(), 64);
    use sha2::Digest;
    assert_eq!(
        server_end_point(&plain),
        sha2::Sha256::digest(&plain).to_vec()
    );
}
