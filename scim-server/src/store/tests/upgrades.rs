//! Rolling upgrades on PostgreSQL (docs/upgrades.md): while a newer node has migrated the schema,
//! older nodes keep running on it, so a PostgreSQL migration only adds (expand). What older
//! code reads or writes — a table, a column, its type, its nullability — goes only in a
//! migration whose folder name says it is a contract step (`…_contract_…`), shipped once no
//! supported release uses it. SQLite runs one node, stopped for its upgrade: not checked.

/// What an expand migration may not do, as (pattern in lowercased, whitespace-collapsed SQL,
/// why). `drop index` stays allowed: older queries still run, only slower.
const BREAKING: &[(&str, &str)] = &[
    ("drop table", "older nodes still read and write the table"),
    ("drop column", "older nodes still read or write the column"),
    ("drop view", "older nodes may still read the view"),
    ("drop function", "older nodes may still call the function"),
    ("drop type", "older nodes may still use the type"),
    ("rename ", "older nodes still use the old name"),
    ("truncate", "older nodes' rows vanish"),
    (" type ", "older nodes still write the old type"),
    ("set not null", "older nodes insert rows without the value"),
];

/// The breaking statements of one migration's `up.sql`, outside a contract step.
fn violations(name: &str, sql: &str) -> Vec<String> {
    if name.contains("_contract") {
        return Vec::new();
    }
    let mut found = Vec::new();
    for statement in strip_comments(sql).split(';') {
        let s = statement
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if s.is_empty() {
            continue;
        }
        let padded = format!(" {s} ");
        for (pattern, why) in BREAKING {
            // `type` counts only as `ALTER COLUMN … TYPE`; `CREATE TYPE` adds.
            if *pattern == " type " && !(s.contains("alter column") || s.contains("alter table")) {
                continue;
            }
            if padded.contains(pattern) {
                found.push(format!("{name}: `{s}`: {why}"));
            }
        }
        // A new NOT NULL column without a default: older nodes' inserts fail.
        if s.contains("add column") && s.contains("not null") && !s.contains("default") {
            found.push(format!(
                "{name}: `{s}`: a NOT NULL column needs a DEFAULT, older nodes do not set it"
            ));
        }
    }
    found
}

fn strip_comments(sql: &str) -> String {
    sql.lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn upgrades_postgres_migrations_only_expand_outside_contract_steps() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/postgres");
    let mut checked = 0;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        let up = entry.path().join("up.sql");
        if !up.exists() {
            continue;
        }
        checked += 1;
        found.extend(violations(&name, &std::fs::read_to_string(up).unwrap()));
    }
    assert!(checked > 10, "no migrations found in {}", dir.display());
    assert!(
        found.is_empty(),
        "PostgreSQL migrations that would break a node of the previous release (see \
         docs/upgrades.md; move them to a `_contract` step):\n{}",
        found.join("\n")
    );
}

#[test]
fn upgrades_lint_refuses_what_breaks_older_nodes() {
    let bad = [
        "ALTER TABLE resources DROP COLUMN doc;",
        "ALTER TABLE resources RENAME COLUMN doc TO body;",
        "ALTER TABLE engine_outbox RENAME TO outbox;",
        "DROP TABLE engine_timers;",
        "ALTER TABLE resources ALTER COLUMN version TYPE TEXT;",
        "ALTER TABLE resources ALTER COLUMN external_id SET NOT NULL;",
        "ALTER TABLE resources ADD COLUMN tenant TEXT NOT NULL;",
        "TRUNCATE engine_events;",
    ];
    for sql in bad {
        assert_eq!(violations("2027-01-01-000000_x", sql).len(), 1, "{sql}");
        assert!(
            violations("2027-01-01-000000_contract_x", sql).is_empty(),
            "{sql}"
        );
    }
    let good = "-- DROP TABLE in a comment\n\
        CREATE TABLE t (id TEXT PRIMARY KEY, kind TEXT NOT NULL);\n\
        ALTER TABLE resources ADD COLUMN tenant TEXT NOT NULL DEFAULT '';\n\
        ALTER TABLE resources ADD COLUMN note TEXT;\n\
        CREATE TYPE mood AS ENUM ('a', 'b');\n\
        DROP INDEX IF EXISTS resources_old_idx;\n\
        CREATE INDEX resources_type_idx ON resources (resource_type);";
    assert_eq!(
        violations("2027-01-01-000000_x", good),
        Vec::<String>::new()
    );
}

/// Reverts `h`'s migrations down to the last one before `version` (`YYYY-MM-DD-NNNNNN`).
fn revert_to_before<DB: diesel::backend::Backend>(
    h: &mut impl diesel_migrations::MigrationHarness<DB>,
    migrations: impl Fn() -> diesel_migrations::EmbeddedMigrations,
    version: &str,
) {
    let version = version.replace('-', "");
    while h
        .applied_migrations()
        .unwrap()
        .iter()
        .map(|v| v.to_string().replace('-', ""))
        .max()
        .is_some_and(|last| last >= version)
    {
        h.revert_last_migration(migrations()).unwrap();
    }
}

/// Accounts kept for their records before the planned record could say so get the mark from
/// the upgrade (the disabled ones with an open `records_kept` incident), so a later plan hands
/// their records over instead of deleting them; other accounts stay as they were.
#[test]
fn upgrades_accounts_kept_for_records_before_the_mark_get_it() {
    use crate::store::{engine_state, incidents};
    use diesel::Connection;
    let now = chrono::Utc::now();
    super::each_backend(|db| {
        let version = "2026-12-08-000700";
        let revert = || match &db.cleanup {
            super::Cleanup::Files(path) => {
                let url = path.display().to_string();
                let mut c = diesel::SqliteConnection::establish(&url).unwrap();
                revert_to_before(&mut c, || crate::store::SQLITE_MIGRATIONS, version);
            }
            super::Cleanup::Postgres { .. } => {
                let mut c = diesel::PgConnection::establish(&db.postgres_url()).unwrap();
                revert_to_before(&mut c, || crate::store::POSTGRES_MIGRATIONS, version);
            }
        };
        revert();
        let kept = r#"{"exists":true,"enabled":false,"key":"dan","attributes_hash":"h"}"#;
        let enabled = r#"{"exists":true,"enabled":true,"key":"eve","attributes_hash":"h"}"#;
        // Not JSON (written by hand): left as it is, and the upgrade still runs.
        let garbled = r#"{"exists":true,"enabled":false,"#;
        db.store
            .write_tx(|c, _| {
                for (user, planned) in [
                    ("dan", kept),
                    ("eve", enabled),
                    ("fay", kept),
                    ("gus", garbled),
                ] {
                    engine_state::put_account(c, user, "github", planned, planned, now)?;
                }
                for user in ["dan", "eve", "gus"] {
                    incidents::raise(
                        c,
                        "records_kept",
                        Some(user),
                        Some("github"),
                        None,
                        "r",
                        now,
                    )?;
                }
                // Another connector's incident marks nothing on github.
                incidents::raise(
                    c,
                    "records_kept",
                    Some("fay"),
                    Some("slack"),
                    None,
                    "r",
                    now,
                )
            })
            .unwrap();
        let applied = db.store.migrate().unwrap();
        assert!(
            applied
                .iter()
                .any(|v| v.replace('-', "") == version.replace('-', "")),
            "{}: {applied:?}",
            db.name
        );
        // The engine's planned record as stored, and as JSON (the store sits below the engine).
        let stored = |user: &str| -> String {
            let accounts = db
                .store
                .write_tx(|c, _| engine_state::accounts(c, user))
                .unwrap();
            accounts[0].planned.clone()
        };
        let planned =
            |user: &str| -> serde_json::Value { serde_json::from_str(&stored(user)).unwrap() };
        let dan = planned("dan");
        assert_eq!(dan["kept_for_records"], true, "{}", db.name);
        for (field, value) in [
            ("exists", serde_json::json!(true)),
            ("enabled", serde_json::json!(false)),
            ("key", serde_json::json!("dan")),
            ("attributes_hash", serde_json::json!("h")),
        ] {
            assert_eq!(dan[field], value, "{}: {field}", db.name);
        }
        assert!(
            planned("eve").get("kept_for_records").is_none(),
            "{}: enabled",
            db.name
        );
        assert!(
            planned("fay").get("kept_for_records").is_none(),
            "{}: no incident here",
            db.name
        );
        assert_eq!(stored("gus"), garbled, "{}", db.name);
        // Reverted: the mark goes, and the record that is not JSON stays as it is.
        revert();
        assert!(
            planned("dan").get("kept_for_records").is_none(),
            "{}: reverted",
            db.name
        );
        assert_eq!(stored("gus"), garbled, "{}: reverted", db.name);
    });
}
