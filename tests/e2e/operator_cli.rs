//! The operator's command line with the real binary: configuration that refuses mistakes
//! (unknown keys and variables), `config show`, `--version`, the start log, `backup` while the
//! server serves, `migrate --check`, completions and the man page.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use diesel::{Connection, PgConnection, RunQueryDsl};

use crate::backends;
use crate::harness::{Backend, TestApp};

fn scimhub(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scimhub"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run scimhub")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("scimhub-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn unknown_keys_and_variables_stop_every_subcommand_by_name() {
    let dir = scratch();
    let cfg = dir.join("hub.toml");
    std::fs::write(
        &cfg,
        "bind = \"127.0.0.1:0\"\n\n[rate_limit]\nlinks_per_minut = 5\n",
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.join("hub.db").display());
    let cfg_s = cfg.to_str().unwrap();
    for args in [
        vec!["serve", "--config", cfg_s, "--database-url", &db],
        vec!["migrate", "--config", cfg_s, "--database-url", &db],
        vec!["config", "check", "--config", cfg_s],
    ] {
        let out = scimhub(&args, &[]);
        assert!(!out.status.success(), "{args:?} accepted a misspelt key");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "{cfg_s}:4: unknown key `rate_limit.links_per_minut`; did you mean `rate_limit.links_per_minute`?"
            )),
            "{args:?}: {err}"
        );
    }
    // The database was never opened.
    assert!(!dir.join("hub.db").exists());
    let out = scimhub(
        &["config", "check"],
        &[
            ("SCIMHUB_MAX_RESULT", "5"),
            ("SCIMHUB_POLICY", "ignored.toml"),
        ],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown environment variable SCIMHUB_MAX_RESULT")
            && err.contains("did you mean SCIMHUB_MAX_RESULTS?"),
        "{err}"
    );
    // Correct spelling passes.
    std::fs::write(
        &cfg,
        "bind = \"127.0.0.1:0\"\n[rate_limit]\nlinks_per_minute = 5\n",
    )
    .unwrap();
    let out = scimhub(
        &["config", "check", "--config", cfg_s],
        &[("SCIMHUB_MAX_RESULTS", "5")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration ok"));
    // It checks what `serve` would check next: a missing extension schema file.
    std::fs::write(
        &cfg,
        "[[schema_extensions]]\nfile = \"/nonexistent/contractor.schema.json\"\n",
    )
    .unwrap();
    let out = scimhub(&["config", "check", "--config", cfg_s], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("/nonexistent/contractor.schema.json"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_show_redacts_secrets_and_names_sources() {
    let dir = scratch();
    let cfg = dir.join("hub.toml");
    std::fs::write(
        &cfg,
        "database_url = \"postgres://hub:pg-password-123@db.example:5432/hub\"\n\
         bootstrap_token = \"inline-token-inline-token-inline-token\"\n\
         max_results = 50\n\
         [smtp]\nhost = \"mail\"\npassword = { env = \"MAIL_PW\" }\n",
    )
    .unwrap();
    let out = scimhub(
        &[
            "config",
            "show",
            "--config",
            cfg.to_str().unwrap(),
            "--log-format",
            "json",
        ],
        &[
            ("SCIMHUB_MAX_BODY_BYTES", "2048"),
            ("MAIL_PW", "mail-password-456"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let line = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} missing:\n{shown}"))
            .to_string()
    };
    assert!(line("max_results").ends_with("# file"), "{shown}");
    assert!(line("max_body_bytes").contains("2048") && line("max_body_bytes").ends_with("# env"));
    assert!(line("log_format").contains("json") && line("log_format").ends_with("# flag"));
    assert!(line("bind").contains("127.0.0.1:8080") && line("bind").ends_with("# default"));
    assert!(line("database_url").contains("postgres://hub:[redacted]@db.example:5432/hub"));
    assert!(line("bootstrap_token").contains("[redacted]"));
    assert!(line("smtp.password").contains("MAIL_PW"));
    for secret in [
        "pg-password-123",
        "inline-token-inline",
        "mail-password-456",
    ] {
        assert!(!shown.contains(secret), "{secret} printed:\n{shown}");
        assert!(!text(&out.stderr).contains(secret));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn version_names_the_commit() {
    let out = scimhub(&["--version"], &[]);
    assert!(out.status.success());
    let v = text(&out.stdout);
    assert!(
        v.starts_with(&format!("scimhub {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    let commit = v
        .trim()
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap_or("");
    assert!(!commit.is_empty(), "{v}");
    // Built from this checkout: the commit is a hex abbreviation (`unknown` only off a checkout).
    if Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.git")
        .exists()
    {
        assert!(commit.chars().all(|c| c.is_ascii_hexdigit()), "{v}");
    }
}

#[test]
fn subcommands_show_only_their_own_flags() {
    let help = |args: &[&str]| text(&scimhub(args, &[]).stdout);
    let migrate = help(&["migrate", "--help"]);
    assert!(
        migrate.contains("--check") && migrate.contains("--config"),
        "{migrate}"
    );
    assert!(
        !migrate.contains("--bind") && !migrate.contains("--policy"),
        "{migrate}"
    );
    let issue = help(&["token", "issue", "--help"]);
    assert!(
        !issue.contains("--bind") && !issue.contains("--policy"),
        "{issue}"
    );
    let simulate = help(&["simulate", "--help"]);
    assert!(
        simulate.contains("--config") && !simulate.contains("--bind"),
        "{simulate}"
    );
    let explain = help(&["policy", "explain", "--help"]);
    assert!(explain.contains("--config"), "{explain}");
    let serve = help(&["serve", "--help"]);
    assert!(
        serve.contains("--bind") && serve.contains("--policy"),
        "{serve}"
    );
}

#[test]
fn completions_and_man_page_are_generated() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef scimhub"),
        ("fish", "complete -c scimhub"),
    ] {
        let out = scimhub(&["completions", shell], &[]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("backup") && script.contains("migrate"),
            "{shell}"
        );
    }
    let out = scimhub(&["man"], &[]);
    assert!(out.status.success());
    let man = text(&out.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH scimhub"),
        "{man}"
    );
    assert!(man.contains("serve") && man.contains("backup"), "{man}");
}

/// A first start without any token says so, and how to make one; the start log names the
/// version and the database, password redacted.
#[test]
fn serve_logs_version_database_and_warns_without_tokens() {
    let dir = scratch();
    let db = format!("sqlite://{}", dir.join("hub.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_scimhub"))
        .args(["serve", "--bind", "127.0.0.1:0", "--database-url", &db])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "exited early");
        if line.starts_with("listening on ") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains(env!("CARGO_PKG_VERSION")) && log.contains("commit"),
        "{log}"
    );
    assert!(log.contains(&db), "{log}");
    assert!(log.contains("NO API TOKEN EXISTS YET"), "{log}");
    assert!(log.contains("scimhub token issue"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

backends!(backup_while_serving, |app| {
    for i in 0..20 {
        app.create_user(&format!("backup-user-{i}"));
    }
    let target = app.dir.join("backup.db");
    let target_s = target.to_str().unwrap().to_string();
    if app.db_url.starts_with("postgres") {
        let out = app.cli(&["backup", &target_s]);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("pg_dump --format=custom"), "{err}");
        assert!(!target.exists());
        return;
    }
    // Writes keep going while the copy is taken.
    let writer = {
        let url = app.url("/Users");
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            for i in 0..30 {
                let r = client
                    .post(&url)
                    .bearer_auth(crate::harness::TOKEN)
                    .header("content-type", crate::harness::SCIM_JSON)
                    .body(
                        serde_json::json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
                            "userName": format!("during-backup-{i}")})
                        .to_string(),
                    )
                    .send()
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
            }
        })
    };
    let out = app.cli(&["backup", &target_s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    writer.join().unwrap();
    assert!(text(&out.stdout).contains("backup written"));
    // The copy is a complete database: the users created before the backup are all there.
    let mut c = diesel::SqliteConnection::establish(&target_s).unwrap();
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let n: N =
        diesel::sql_query("SELECT COUNT(*) AS n FROM resources WHERE resource_type = 'User'")
            .get_result(&mut c)
            .unwrap();
    assert!((20..=50).contains(&n.n), "{}", n.n);
    // A second backup to the same file is refused; the copy is left as it is.
    let out = app.cli(&["backup", &target_s]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    // And it serves: a server started on the copy finds the users.
    let out = Command::new(env!("CARGO_BIN_EXE_scimhub"))
        .args([
            "migrate",
            "--check",
            "--database-url",
            &format!("sqlite://{target_s}"),
        ])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
});

backends!(migrate_check_lists_pending_migrations, |app| {
    // Up to date: the server migrated its database at start.
    let out = app.cli(&["migrate", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("up to date"));
    // Fresh: a database no migration ran on.
    let (fresh_url, cleanup): (String, Box<dyn FnOnce()>) = if app.db_url.starts_with("postgres") {
        let admin = std::env::var("SCIMHUB_TEST_POSTGRES_URL").unwrap();
        let name = format!("scimhub_fresh_{}", uuid::Uuid::new_v4().simple());
        let mut c = PgConnection::establish(&admin).unwrap();
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut c)
            .unwrap();
        let mut u = reqwest::Url::parse(&admin).unwrap();
        u.set_path(&format!("/{name}"));
        (
            u.to_string(),
            Box::new(move || {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut c);
            }),
        )
    } else {
        (
            format!("sqlite://{}", app.dir.join("fresh.db").display()),
            Box::new(|| {}),
        )
    };
    let out = scimhub(&["migrate", "--check", "--database-url", &fresh_url], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(listed.contains("pending migration(s):"), "{listed}");
    assert!(
        listed.lines().filter(|l| l.starts_with("  ")).count() > 5,
        "{listed}"
    );
    // Nothing was applied: checking again lists the same.
    let again = scimhub(&["migrate", "--check", "--database-url", &fresh_url], &[]);
    assert_eq!(text(&again.stdout), listed);
    let out = scimhub(&["migrate", "--database-url", &fresh_url], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = scimhub(&["migrate", "--check", "--database-url", &fresh_url], &[]);
    assert_eq!(out.status.code(), Some(0));
    cleanup();
});

#[test]
fn backup_needs_a_database_and_never_migrates() {
    let dir = scratch();
    let db = format!("sqlite://{}", dir.join("none.db").display());
    let out = scimhub(
        &[
            "backup",
            dir.join("b.db").to_str().unwrap(),
            "--database-url",
            &db,
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no SQLite database"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.join("none.db").exists());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = Backend::Sqlite;
    let _: Option<TestApp> = None;
}

/// `scimhub report …` opens the database like `scimhub audit` (`--config`, `--database-url`),
/// writes JSON or HTML to stdout or `--out`, and refuses bad input with a message.
#[test]
fn report_commands_write_json_and_html_and_refuse_bad_input() {
    let dir = scratch();
    let db = format!("sqlite://{}", dir.join("hub.db").display());
    let out = scimhub(
        &[
            "report",
            "period",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            "--database-url",
            &db,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "scimhub/report/period/v1");
    assert_eq!(v["period"]["from"], "2026-11-01T00:00:00Z");
    assert_eq!(v["period"]["to"], "2026-12-01T00:00:00Z");
    assert_eq!(v["sections"][0]["id"], "events");
    assert_eq!(v["audit_head"]["seq"], 0);
    let page = dir.join("period.html");
    let page_s = page.to_str().unwrap();
    let out = scimhub(
        &[
            "report",
            "period",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            "--format",
            "html",
            "--out",
            page_s,
            "--database-url",
            &db,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.contains("<svg"),
        "{html}"
    );

    let out = scimhub(
        &["report", "termination", "nobody", "--database-url", &db],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not found: user nobody"),
        "{}",
        text(&out.stderr)
    );
    let out = scimhub(
        &[
            "report",
            "period",
            "--from",
            "30/11/2026",
            "--to",
            "2026-11-30",
            "--database-url",
            &db,
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--from"),
        "{}",
        text(&out.stderr)
    );
    // The configuration file is read (and refused when wrong) as by every other subcommand.
    let cfg = dir.join("hub.toml");
    std::fs::write(&cfg, "database_urll = \"sqlite://x.db\"\n").unwrap();
    let out = scimhub(
        &[
            "report",
            "contractor",
            "cora",
            "--config",
            cfg.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("database_urll"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `policy check` accepts a policy whose manager approvals nobody but security can decide, and
/// says so; owning the manager's id in a `[[source]]` silences it.
#[test]
fn policy_check_warns_of_manager_approvals_nobody_can_decide() {
    let dir = scratch();
    let policy = r#"
[[connector]]
name = "github"
type = "memory"

[[profile]]
name = "engineering"
match = 'title pr'
grants = [{ connector = "github", kind = "org", id = "acme", role = "admin", approval = "manager" }]

[[source]]
client = "hris"
owns = ["manager.displayName"]
"#;
    let file = dir.join("policy.toml");
    std::fs::write(&file, policy).unwrap();
    let out = scimhub(&["policy", "check", file.to_str().unwrap()], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("warning: profile(s) engineering ask the manager's approval")
            && stdout.contains("owns only part of the enterprise manager"),
        "{stdout}"
    );
    std::fs::write(&file, policy.replace("manager.displayName", "manager")).unwrap();
    let out = scimhub(&["policy", "check", file.to_str().unwrap()], &[]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && !stdout.contains("warning"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
