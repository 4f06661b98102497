//! `scimhub import` with the real binary: a roster with bad rows, the per-row report, what was
//! stored (read back through SCIM), re-import, update by externalId, `--dry-run`, sources of
//! truth, and `--full` under the blast-radius guard. SQLite and PostgreSQL.

use std::process::Output;

use serde_json::Value;

use crate::backends;
use crate::harness::{Backend, TestApp};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

const POLICY: &str = concat!(
    crate::harness::chat_for_everyone!(),
    r#"
[blast_radius]
max_share = 0.3
window = "10m"
min_population = 5

[[source]]
client = "hris"
owns = ["title"]
on_conflict = "reject"
"#
);

fn start(backend: Backend) -> Option<(TestApp, String)> {
    let app = TestApp::builder(backend).policy(POLICY).start()?;
    let policy = app.policy_path().to_owned();
    Some((app, policy))
}

fn import(app: &TestApp, policy: &str, csv: &str, client: &str, extra: &[&str]) -> Output {
    let file = app
        .dir
        .join(format!("roster-{}.csv", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, csv).unwrap();
    let mut args = vec![
        "import",
        file.to_str().unwrap(),
        "--client",
        client,
        "--policy",
        policy,
    ];
    args.extend_from_slice(extra);
    app.cli(&args)
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn find(app: &TestApp, user_name: &str) -> Option<Value> {
    let filter = format!("userName eq \"{user_name}\"");
    let r = app
        .get(&format!("/Users?filter={}", urlencode(&filter)))
        .send()
        .status(200)
        .json();
    r["Resources"].as_array().and_then(|a| a.first()).cloned()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn total_users(app: &TestApp) -> u64 {
    app.get("/Users?count=1000").send().status(200).json()["Resources"]
        .as_array()
        .map_or(0, |a| a.len() as u64)
}

/// `totalResults` of an unfiltered list: on SQLite the server's cached count.
fn total_results(app: &TestApp) -> u64 {
    app.get("/Users?count=1").send().status(200).json()["totalResults"]
        .as_u64()
        .unwrap()
}

const HEADER: &str = "externalId,userName,name.givenName,\"emails[type eq \"\"work\"\"].value\",urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber,manager";

fn roster() -> String {
    [
        HEADER,
        "E1,ada,Ada,ada@example.com,1,",
        "E2,bob,Bob,bob@example.com,2,1",
        "E3,,Cy,cy@example.com,3,",
        "E4,dan,Dan,not-an-email,4,",
        "E5,ada,Ada2,ada2@example.com,5,",
        "E6,eve,Eve,eve@example.com,6,99",
        "E7,fay,Fay",
        "",
    ]
    .join("\n")
}

backends!(import_reports_each_row_and_writes_through_scim, |app| {
    let policy = policy_of(&app);
    // --dry-run: the same report, nothing stored.
    let dry = stdout(&import(&app, &policy, &roster(), "hris", &["--dry-run"]));
    assert!(dry.contains("line 2: created ada"), "{dry}");
    assert!(dry.contains("dry run, nothing written"), "{dry}");
    assert_eq!(total_users(&app), 0, "--dry-run wrote: {dry}");

    let out = stdout(&import(&app, &policy, &roster(), "hris", &[]));
    assert!(out.contains("line 2: created ada"), "{out}");
    assert!(out.contains("line 3: created bob"), "{out}");
    assert!(
        out.contains("line 4: refused E3: missing userName"),
        "{out}"
    );
    assert!(out.contains("line 5: refused dan: invalid email"), "{out}");
    assert!(
        out.contains("line 6: refused ada: duplicate userName (line 2)"),
        "{out}"
    );
    assert!(
        out.contains("line 7: refused eve: unknown manager \"99\""),
        "{out}"
    );
    assert!(
        out.contains("line 8: refused -: malformed row: 3 fields, the header has 6"),
        "{out}"
    );
    assert!(
        out.contains("2 created, 0 updated, 0 unchanged, 0 deactivated, 5 refused"),
        "{out}"
    );
    // Stored: two users, bob's manager is ada's id, nothing of a refused row.
    assert_eq!(total_users(&app), 2);
    let ada = find(&app, "ada").expect("ada stored");
    let bob = find(&app, "bob").expect("bob stored");
    assert_eq!(ada["externalId"], "E1");
    assert_eq!(ada["name"]["givenName"], "Ada");
    assert_eq!(ada["emails"][0]["value"], "ada@example.com");
    assert_eq!(bob[ENT]["manager"]["value"], ada["id"], "{bob}");
    assert!(find(&app, "dan").is_none() && find(&app, "eve").is_none());

    // Re-import: every good row unchanged, the bad rows refused again.
    let again = stdout(&import(&app, &policy, &roster(), "hris", &[]));
    assert!(
        again.contains("0 created, 0 updated, 2 unchanged"),
        "{again}"
    );

    // Update by externalId: ada renamed keeps her id.
    let renamed = format!("{HEADER}\nE1,ada.lovelace,Ada,ada@example.com,1,\n");
    let out = stdout(&import(&app, &policy, &renamed, "hris", &[]));
    assert!(out.contains("line 2: updated ada.lovelace"), "{out}");
    let ada2 = find(&app, "ada.lovelace").expect("renamed");
    assert_eq!(ada2["id"], ada["id"]);
    assert!(find(&app, "ada").is_none());

    // Sources of truth: `title` belongs to hris, which sets it; workday may not change it.
    let out = stdout(&import(
        &app,
        &policy,
        "userName,title\nbob,Boss\n",
        "hris",
        &[],
    ));
    assert!(out.contains("line 2: updated bob"), "{out}");
    let out = stdout(&import(
        &app,
        &policy,
        "userName,title\nbob,Chief\n",
        "workday",
        &[],
    ));
    assert!(out.contains("line 2: refused bob:"), "{out}");
    assert!(out.contains("title") && out.contains("hris"), "{out}");
    assert_eq!(find(&app, "bob").unwrap()["title"], "Boss");
});

fn policy_of(app: &TestApp) -> String {
    let p = app.dir.join("import-policy.toml");
    std::fs::write(&p, POLICY).unwrap();
    p.to_str().unwrap().to_string()
}

fn pending_holds(app: &TestApp) -> usize {
    let r = app
        .get("/admin/v1/holds?status=pending")
        .send()
        .status(200)
        .json();
    r.as_array()
        .or_else(|| r["holds"].as_array())
        .or_else(|| r["Resources"].as_array())
        .map(Vec::len)
        .unwrap_or(0)
}

fn full_roster(ids: impl Iterator<Item = usize>) -> String {
    let mut s = String::from("externalId,userName\n");
    for i in ids {
        s.push_str(&format!("X{i},user{i:02}\n"));
    }
    s
}

#[test]
fn full_deactivates_within_and_holds_above_the_guard_sqlite() {
    full_deactivation(Backend::Sqlite);
}

#[test]
fn full_deactivates_within_and_holds_above_the_guard_postgres() {
    full_deactivation(Backend::Postgres);
}

fn full_deactivation(backend: Backend) {
    let Some((app, policy)) = start(backend) else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: PostgreSQL variant not run");
        return;
    };
    let out = stdout(&import(&app, &policy, &full_roster(0..10), "hris", &[]));
    assert!(out.contains("10 created"), "{out}");
    // A user another client created is never deactivated by hris's full roster.
    app.create_user("not-from-hris");
    // One of ten left out: within the guard (30%).
    let out = stdout(&import(
        &app,
        &policy,
        &full_roster(1..10),
        "hris",
        &["--full"],
    ));
    assert!(out.contains("full: deactivated user00"), "{out}");
    assert!(out.contains("9 unchanged, 1 deactivated"), "{out}");
    assert_eq!(find(&app, "user00").unwrap()["active"], false);
    assert_eq!(find(&app, "not-from-hris").unwrap()["active"], true);
    assert_eq!(pending_holds(&app), 0);
    // Without --full nobody is deactivated.
    let out = stdout(&import(&app, &policy, &full_roster(5..10), "hris", &[]));
    assert!(out.contains("0 deactivated"), "{out}");
    // Five more of ten: above the guard; the deactivations are written, their revocations held.
    let out = stdout(&import(
        &app,
        &policy,
        &full_roster(6..10),
        "hris",
        &["--full"],
    ));
    assert!(out.contains("5 deactivated"), "{out}");
    assert!(pending_holds(&app) >= 1, "no hold above the guard");
}

backends!(
    a_running_server_sees_what_an_import_beside_it_wrote,
    |app| {
        let policy = policy_of(&app);
        app.create_user("first");
        // The server counts (and on SQLite caches the count and the id ranks) before the import.
        assert_eq!(total_results(&app), 1);
        let page = app
            .get("/Users?startIndex=2&count=1")
            .send()
            .status(200)
            .json();
        assert_eq!(
            page["Resources"].as_array().map_or(0, Vec::len),
            0,
            "{page}"
        );
        let out = stdout(&import(&app, &policy, &full_roster(0..3), "hris", &[]));
        assert!(out.contains("3 created"), "{out}");
        // A server on the same file sees the other process's creates: count and deep pages.
        assert_eq!(total_results(&app), 4);
        let page = app
            .get("/Users?startIndex=4&count=1")
            .send()
            .status(200)
            .json();
        assert_eq!(page["totalResults"], 4, "{page}");
        assert_eq!(
            page["Resources"].as_array().map_or(0, Vec::len),
            1,
            "{page}"
        );
        // Its own writes still count as before.
        app.create_user("last");
        assert_eq!(total_results(&app), 5);
    }
);

const ACME: &str = "urn:example:acme:2.0:User";

#[test]
fn typed_extension_cells_and_later_managers_sqlite() {
    typed_cells_and_later_managers(Backend::Sqlite);
}

#[test]
fn typed_extension_cells_and_later_managers_postgres() {
    typed_cells_and_later_managers(Backend::Postgres);
}

fn typed_cells_and_later_managers(backend: Backend) {
    let dir =
        std::env::temp_dir().join(format!("scimhub-import-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let schema = dir.join("acme.schema.json");
    std::fs::write(
        &schema,
        serde_json::json!({"id": ACME, "name": "Acme", "attributes": [
            {"name": "level", "type": "integer"},
            {"name": "remote", "type": "boolean"},
            {"name": "fte", "type": "decimal"}]})
        .to_string(),
    )
    .unwrap();
    let Some(app) = TestApp::builder(backend)
        .config(&format!(
            "[[schema_extensions]]\nfile = \"{}\"\nresource_type = \"User\"\n",
            schema.display()
        ))
        .start()
    else {
        eprintln!("SCIMHUB_TEST_POSTGRES_URL not set: PostgreSQL variant not run");
        return;
    };
    // The import reads the same configuration (the extension schema) as the server.
    let config = app.dir.join("scimhub.toml");
    let policy = policy_of(&app);
    let csv = format!(
        "externalId,userName,{ENT}:employeeNumber,{ACME}:level,{ACME}:remote,{ACME}:fte,manager\n\
         T1,tia,1,3,yes,0.5,3\n\
         T2,tom,2,seven,no,1,\n\
         T3,tess,3,5,false,1.0,4\n\
         T4,theo,4,9,true,0.8,\n\
         T5,tara,5,1,maybe,1,\n\
         T6,tim,6,2,no,half,\n\
         T7,tod,7,2,no,1,42\n"
    );
    let out = stdout(&import(
        &app,
        &policy,
        &csv,
        "hris",
        &["--config", config.to_str().unwrap()],
    ));
    // Typed cells: stored as their schema types; a cell that does not parse refuses its row.
    assert!(
        out.contains("line 3: refused tom: urn:example:acme:2.0:User:level must be an integer, not \"seven\""),
        "{out}"
    );
    assert!(
        out.contains("line 6: refused tara:")
            && out.contains("must be true or false, not \"maybe\""),
        "{out}"
    );
    assert!(
        out.contains("line 7: refused tim:")
            && out.contains("must be a decimal number, not \"half\""),
        "{out}"
    );
    // Managers named by later rows resolve (tia -> tess -> theo); an unknown one is refused.
    assert!(out.contains("line 2: created tia"), "{out}");
    assert!(out.contains("line 4: created tess"), "{out}");
    assert!(
        out.contains("line 8: refused tod: unknown manager \"42\""),
        "{out}"
    );
    assert!(
        out.contains("3 created, 0 updated, 0 unchanged, 0 deactivated, 4 refused"),
        "{out}"
    );
    let tia = find(&app, "tia").expect("tia");
    let tess = find(&app, "tess").expect("tess");
    let theo = find(&app, "theo").expect("theo");
    assert_eq!(tia[ACME]["level"], 3, "{tia}");
    assert_eq!(tia[ACME]["remote"], true, "{tia}");
    assert_eq!(tia[ACME]["fte"], 0.5, "{tia}");
    assert_eq!(tia[ENT]["manager"]["value"], tess["id"], "{tia}");
    assert_eq!(tess[ENT]["manager"]["value"], theo["id"], "{tess}");
    assert!(find(&app, "tom").is_none() && find(&app, "tod").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
