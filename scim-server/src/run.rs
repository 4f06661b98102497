//! What each subcommand does: load the configuration, set up logging, open the store, act.

use std::io::Write;

use anyhow::Context;

use crate::auth::{jwt::JwtVerifier, token, Authenticator, Scope};
use crate::cli::{
    Cli, Command, Common, ConfigCommand, DbArgs, EngineArgs, EventsCommand, OutboxCommand,
    PolicyCommand, SimulateArgs, TokenCommand,
};
use crate::config::{Config, LogFormat, Overrides};
use crate::http::AppState;
use crate::store::{Store, StoreOptions};

/// Runs the command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = load(args.common.config.as_deref(), &args.overrides())?;
            init_logging(config.log_format);
            serve(config, &args.common)
        }
        Command::Migrate(args) => {
            let config = load_db(&args.db)?;
            if args.check {
                return migrate_check(&config);
            }
            let store = open_store(&config, 0)?;
            let applied = store.migrate().map_err(|e| anyhow::anyhow!("{e}"))?;
            tracing::info!(count = applied.len(), "migrations up to date");
            drop(store);
            Ok(())
        }
        Command::Backup(args) => {
            let config = load_db(&args.db)?;
            backup(&config, &args.file)
        }
        Command::Config(cmd) => config_command(cmd),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "scimhub", &mut std::io::stdout().lock());
            Ok(())
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            out.flush()?;
            Ok(())
        }
        Command::Token(cmd) => token_command(cmd),
        Command::Policy(cmd) => policy_command(cmd),
        Command::Simulate(args) => simulate_command(args),
        Command::Demo(args) => crate::demo::run(args),
        Command::Outbox(cmd) => outbox_command(cmd),
        Command::Events(cmd) => events_command(cmd),
        Command::Audit(cmd) => crate::run_audit::audit_command(cmd),
        Command::Reconcile(args) => reconcile_command(args),
        Command::Campaign(cmd) => campaign_command(cmd),
        Command::Import(args) => crate::run_import::import_command(args),
        Command::Report(cmd) => crate::run_report::report_command(cmd),
        Command::Grant(args) => grant_command(args),
    }
}

/// Why `migrate --check` exits with 2: migrations are pending (listed on stdout already).
#[derive(Debug, thiserror::Error)]
#[error("{0} migration(s) pending")]
pub struct PendingMigrations(pub usize);

/// `scimhub migrate --check`: lists what `migrate` (or `serve`) would apply, applies nothing.
fn migrate_check(config: &Config) -> anyhow::Result<()> {
    let pending = crate::store::maintenance::pending_migrations(config.database_url.as_str())
        .map_err(|e| anyhow::anyhow!("cannot read the database's migrations: {e}"))?;
    let mut out = std::io::stdout().lock();
    if pending.is_empty() {
        writeln!(out, "up to date: no pending migrations")?;
        return Ok(());
    }
    writeln!(out, "{} pending migration(s):", pending.len())?;
    for m in &pending {
        writeln!(out, "  {m}")?;
    }
    out.flush()?;
    Err(PendingMigrations(pending.len()).into())
}

/// `scimhub backup FILE`: SQLite's `VACUUM INTO`, a consistent copy taken in one read
/// transaction (writers go on meanwhile); PostgreSQL is backed up with its own tools.
fn backup(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    use crate::store::maintenance::{backup_sqlite, BackupError};
    match backup_sqlite(config.database_url.as_str(), file) {
        Ok(bytes) => {
            tracing::info!(file = %file.display(), bytes, "backup written");
            let mut out = std::io::stdout().lock();
            writeln!(out, "backup written to {} ({bytes} bytes)", file.display())?;
            Ok(())
        }
        Err(BackupError::Postgres) => anyhow::bail!(
            "scimhub backup copies SQLite databases; back PostgreSQL up with its own tools, e.g.\n  \
             pg_dump --format=custom --file {} '{}'\n\
             (restore: pg_restore --clean --if-exists --dbname URL FILE; see docs/operating.md#backups-and-upgrades)",
            file.display(),
            config.database_url.redacted()
        ),
        Err(e) => Err(e.into()),
    }
}

/// `scimhub config check | show`.
fn config_command(cmd: ConfigCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        ConfigCommand::Check(common) => {
            let config = load(common.config.as_deref(), &common.overrides())?;
            // What `serve` checks next, short of binding and opening the database.
            config
                .jwt
                .as_ref()
                .map(JwtVerifier::from_config)
                .transpose()
                .context("invalid [jwt] settings")?;
            crate::service::schemas::configured_registry(&config.schema_extensions)
                .map_err(anyhow::Error::msg)
                .context("invalid [[schema_extensions]]")?;
            if let Some(policy) = &common.policy {
                crate::policy::Policy::load(policy)
                    .map_err(|e| anyhow::anyhow!("policy rejected:\n{e}"))?;
            }
            let file = common
                .config
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "no file".into());
            writeln!(
                out,
                "configuration ok ({file}; database {})",
                config.database_url.redacted()
            )?;
        }
        ConfigCommand::Show(common) => {
            let settings =
                crate::config::show::effective(common.config.as_deref(), &common.overrides())
                    .context("invalid configuration")?;
            write!(out, "{}", crate::config::show::render(&settings))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `scimhub token issue | list | revoke`.
fn token_command(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Issue {
            db,
            name,
            scopes,
            user,
            expires,
        } => {
            let config = load_db(&db)?;
            let scopes = Scope::parse_list(&scopes.join(" ")).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(!scopes.is_empty(), "at least one --scope is required");
            let expires = match &expires {
                Some(d) => {
                    let lifetime = crate::policy::parse_duration(d)
                        .map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
                    anyhow::ensure!(
                        lifetime > chrono::Duration::zero(),
                        "--expires must be longer than 0"
                    );
                    Some(chrono::Utc::now() + lifetime)
                }
                None => None,
            };
            let store = open_store(&config, 0)?;
            // The user is resolved now and stored by id, so renaming them later keeps the binding.
            let user = match &user {
                Some(u) => Some(
                    store
                        .find_user_id(u)
                        .map_err(|e| anyhow::anyhow!("cannot look up the user: {e}"))?
                        .with_context(|| {
                            format!("--user {u:?}: no user with this userName or id")
                        })?,
                ),
                None => None,
            };
            let new = token::generate();
            let scope_names: Vec<String> = scopes.iter().map(|s| s.as_str().to_string()).collect();
            let stored = store
                .insert_expiring_token(
                    &name,
                    &new.hash,
                    &new.prefix,
                    &scope_names,
                    user.as_ref().map(|(id, _)| id.as_str()),
                    expires,
                )
                .map_err(|e| anyhow::anyhow!("cannot store the token: {e}"))?;
            let expires = stored.expires.map(|e| e.to_rfc3339()).unwrap_or_default();
            match &user {
                Some((id, user_name)) => tracing::info!(
                    client = %name, id = %stored.id, scopes = %Scope::join(&scopes),
                    user = %user_name, user_id = %id, expires = %expires, "token issued"
                ),
                None => tracing::info!(
                    client = %name, id = %stored.id, scopes = %Scope::join(&scopes),
                    expires = %expires, "token issued"
                ),
            }
            drop(store);
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", new.token)?;
            out.flush()?;
            Ok(())
        }
        TokenCommand::List { db, json } => {
            let config = load_db(&db)?;
            let store = open_store(&config, 0)?;
            let tokens = store
                .list_tokens()
                .map_err(|e| anyhow::anyhow!("cannot list tokens: {e}"))?;
            let now = chrono::Utc::now();
            let mut out = std::io::stdout().lock();
            let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            };
            if !json {
                writeln!(
                    out,
                    "{:<36}  {:<20}  {:<8}  {:<28}  {:<20}  {:<20}  {:<20}  USER",
                    "ID", "NAME", "STATE", "SCOPES", "CREATED", "LAST_USED", "EXPIRES"
                )?;
            }
            for t in tokens {
                // Never the hash or the prefix: neither is needed to manage a token.
                let state = if t.revoked.is_some() {
                    "revoked"
                } else if t.expires.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "active"
                };
                if json {
                    let row = serde_json::json!({
                        "id": t.id, "name": t.name, "state": state, "scopes": t.scopes,
                        "user_id": t.user_id, "created": ts(Some(t.created)),
                        "last_used": ts(t.last_used), "expires": ts(t.expires),
                        "revoked": ts(t.revoked),
                    });
                    writeln!(out, "{row}")?;
                } else {
                    let or_dash = |t: Option<String>| t.unwrap_or_else(|| "-".into());
                    writeln!(
                        out,
                        "{:<36}  {:<20}  {:<8}  {:<28}  {:<20}  {:<20}  {:<20}  {}",
                        t.id,
                        t.name,
                        state,
                        t.scopes.join(","),
                        or_dash(ts(Some(t.created))),
                        or_dash(ts(t.last_used)),
                        or_dash(ts(t.expires)),
                        t.user_id.unwrap_or_else(|| "-".into()),
                    )?;
                }
            }
            out.flush()?;
            Ok(())
        }
        TokenCommand::Revoke { db, id_or_name } => {
            let config = load_db(&db)?;
            let store = open_store(&config, 0)?;
            let t = store.revoke_token(&id_or_name).map_err(|e| match e {
                crate::error::HubError::NotFound => {
                    anyhow::anyhow!("no token has the id or name {id_or_name:?}")
                }
                other => anyhow::anyhow!("cannot revoke the token: {other}"),
            })?;
            tracing::info!(client = %t.name, id = %t.id, "token revoked");
            let mut out = std::io::stdout().lock();
            writeln!(out, "revoked {} ({})", t.id, t.name)?;
            out.flush()?;
            Ok(())
        }
    }
}

/// `scimhub simulate`: the same dry run as `POST /admin/v1/simulate`.
fn simulate_command(args: SimulateArgs) -> anyhow::Result<()> {
    use crate::admin::simulate::SimulationRequest;
    let config = load_engine(&args.engine)?;
    let request: SimulationRequest = match (&args.request, &args.user) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            // As the server reads it: a member given twice is refused, not resolved to the last.
            scim_schema::json::from_str_unique(&text)
                .and_then(serde_json::from_value)
                .with_context(|| {
                    format!(
                        "{}: expected {{\"method\", \"path\", \"body\"}} or {{\"user\", \"set\"}}",
                        file.display()
                    )
                })?
        }
        (None, Some(user)) => SimulationRequest::User {
            user: user.clone(),
            set: parse_sets(&args.set)?,
            client: None,
        },
        (None, None) => anyhow::bail!("--request or --user is required"),
    };
    let registry = crate::service::schemas::configured_registry(&config.schema_extensions)
        .map_err(anyhow::Error::msg)?;
    let schemas =
        crate::service::Schemas::new(registry, config.strict).map_err(anyhow::Error::msg)?;
    let (store, engine) = open_engine(&config, &args.engine.policy, 0)?;
    let admin = crate::admin::Admin::new(store, engine);
    let out = admin
        .dry_run(&schemas, &request)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
    Ok(())
}

/// `ATTR=VALUE` pairs: VALUE is a string unless it is JSON-looking (see `SimulateArgs::set`).
fn parse_sets(sets: &[String]) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    use serde_json::Value;
    let mut out = serde_json::Map::new();
    for s in sets {
        let (attr, value) = s
            .split_once('=')
            .with_context(|| format!("--set {s:?}: expected ATTR=VALUE"))?;
        anyhow::ensure!(!attr.trim().is_empty(), "--set {s:?}: empty attribute");
        let v = if value.is_empty() {
            Value::Null
        } else if matches!(value, "true" | "false" | "null") || value.starts_with(['{', '[', '"']) {
            serde_json::from_str(value).with_context(|| format!("--set {s:?}: invalid JSON"))?
        } else {
            Value::String(value.to_string())
        };
        out.insert(attr.trim().to_string(), v);
    }
    Ok(out)
}

fn outbox_command(cmd: OutboxCommand) -> anyhow::Result<()> {
    let OutboxCommand::Retry { connector, engine } = cmd;
    let config = load_engine(&engine)?;
    let (store, engine) = open_engine_applied(&config, &engine.policy)?;
    let admin = crate::admin::Admin::new(store, engine);
    // The running server's workers pick the queued operations up at their next poll.
    let out = admin
        .retry_connector(&connector, &actor_of_cli())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
    Ok(())
}

/// `scimhub events show | list`: the event records as JSON.
fn events_command(cmd: EventsCommand) -> anyhow::Result<()> {
    let engine_args = match &cmd {
        EventsCommand::Show { engine, .. } | EventsCommand::List { engine, .. } => engine.clone(),
    };
    let config = load_engine(&engine_args)?;
    let (store, engine) = open_engine(&config, &engine_args.policy, 0)?;
    let admin = crate::admin::Admin::new(store, engine);
    let time =
        |name: &str, v: Option<String>| -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
            v.map(|s| {
                chrono::DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|e| anyhow::anyhow!("--{name} {s:?}: {e}"))
            })
            .transpose()
        };
    let out = match cmd {
        EventsCommand::Show { id, .. } => {
            serde_json::to_value(admin.event(id).map_err(|e| anyhow::anyhow!("{e}"))?)?
        }
        EventsCommand::List {
            user,
            kind,
            since,
            until,
            before,
            limit,
            ..
        } => {
            let q = crate::admin::events::EventQuery {
                since: time("since", since)?,
                until: time("until", until)?,
                user,
                kind,
                before,
                limit,
            };
            serde_json::to_value(admin.events(&q).map_err(|e| anyhow::anyhow!("{e}"))?)?
        }
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
    Ok(())
}

/// `scimhub reconcile`: drift reconciliation run from the command line.
fn reconcile_command(args: crate::cli::ReconcileArgs) -> anyhow::Result<()> {
    let config = load_engine(&args.engine)?;
    let (store, engine) = open_engine_applied(&config, &args.engine.policy)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let names = match &args.connector {
        Some(c) => vec![c.clone()],
        None => crate::jobs::reconcile::listable(&engine),
    };
    let mut reports = Vec::new();
    for name in names {
        crate::metrics::global().reconcile_run(&name, "cli");
        let report = rt
            .block_on(crate::jobs::reconcile::run(
                &store,
                &engine,
                &name,
                args.dry_run,
            ))
            .map_err(|e| match e {
                crate::error::HubError::NotFound => {
                    anyhow::anyhow!("no connector {name:?} in the policy")
                }
                other => anyhow::anyhow!("reconciling {name}: {other}"),
            })?;
        reports.push(report);
    }
    // The running server's workers pick the queued fixes up at their next poll.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string_pretty(&reports)?)?;
    Ok(())
}

/// `scimhub grant …`: ask for an emergency grant, list grants, revoke one (JSON out).
fn grant_command(args: crate::cli::GrantArgs) -> anyhow::Result<()> {
    use crate::cli::{EngineArgs, GrantCommand};
    let (engine_args, command) = match args.command {
        Some(cmd) => {
            let e = match &cmd {
                GrantCommand::List { engine, .. } | GrantCommand::Revoke { engine, .. } => {
                    engine.clone()
                }
            };
            (e, Some(cmd))
        }
        None => {
            let g = args.engine;
            let policy = g.policy.context(
                "--policy FILE (or SCIMHUB_POLICY) is required: a grant is checked against it",
            )?;
            (
                EngineArgs {
                    policy,
                    config: g.config,
                    database_url: g.database_url,
                },
                None,
            )
        }
    };
    let config = load_engine(&engine_args)?;
    // Listing plans nothing, so any policy file will do (the grants are read as stored).
    let (store, engine) = if matches!(command, Some(GrantCommand::List { .. })) {
        open_engine(&config, &engine_args.policy, 0)?
    } else {
        open_engine_applied(&config, &engine_args.policy)?
    };
    let admin = crate::admin::Admin::new(store, engine);
    let err = |e: crate::admin::AdminError| anyhow::anyhow!("{e}");
    let out = match command {
        Some(GrantCommand::List { user, active, .. }) => {
            serde_json::to_value(admin.grants(user.as_deref(), active).map_err(err)?)?
        }
        Some(GrantCommand::Revoke { id, reason, .. }) => admin
            .revoke_grant(&id, &actor_of_cli(), &reason)
            .map_err(err)?,
        None => {
            let (Some(user), Some(entitlement), Some(duration), Some(reason)) =
                (args.user, args.entitlement, args.duration, args.reason)
            else {
                anyhow::bail!("scimhub grant USER CONNECTOR:KIND:ID --for DURATION --reason TEXT");
            };
            let duration = crate::policy::parse_duration(&duration)
                .map_err(|e| anyhow::anyhow!("--for {duration:?}: {e}"))?;
            let actor = actor_of_cli();
            // An id when it names one, else a userName (as a JWT's user claim is read).
            let asker = args.asker.map(|a| match uuid::Uuid::parse_str(&a) {
                Ok(_) => crate::auth::UserRef::Id(a),
                Err(_) => crate::auth::UserRef::UserName(a),
            });
            let requested_by = match &asker {
                Some(a) => format!("{actor} as {}", a.as_str()),
                None => actor,
            };
            let created = admin
                .create_grant(&crate::admin::grants::GrantRequest {
                    user: &user,
                    entitlement: &entitlement,
                    duration,
                    reason: &reason,
                    requested_by: &requested_by,
                    requester: asker.as_ref(),
                })
                .map_err(err)?;
            // One line for people, then the record; the running server's workers pick the
            // queued operations up at their next poll.
            let label = created.grant["label"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let expires = created.grant["expires"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            match &created.approval {
                Some(a) => eprintln!(
                    "grant {} of {label} to {user} waits for {} approval (request {}); it ends at {expires}",
                    created.grant["id"].as_str().unwrap_or_default(),
                    a.level,
                    a.id
                ),
                None => eprintln!(
                    "grant {} of {label} to {user} is active until {expires}",
                    created.grant["id"].as_str().unwrap_or_default()
                ),
            }
            serde_json::to_value(&created)?
        }
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
    Ok(())
}

/// Who a CLI decision is audited as: the operator's login on this host.
fn actor_of_cli() -> String {
    let who = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{who}")
}

fn policy_command(cmd: PolicyCommand) -> anyhow::Result<()> {
    use crate::policy::Policy;
    let mut out = std::io::stdout().lock();
    match cmd {
        PolicyCommand::Check { file } => {
            let p = Policy::load(&file).map_err(|e| anyhow::anyhow!("policy rejected:\n{e}"))?;
            writeln!(
                out,
                "{}: ok ({} connectors, {} profiles, {} SoD rules)",
                file.display(),
                p.connectors.len(),
                p.profiles.len(),
                p.sod.len()
            )?;
            for w in p.warnings() {
                writeln!(out, "warning: {w}")?;
            }
        }
        PolicyCommand::Docs { policy } => {
            let p = Policy::load(&policy).map_err(|e| anyhow::anyhow!("policy rejected:\n{e}"))?;
            write!(out, "{}", crate::policy::docs::render(&p))?;
        }
        PolicyCommand::Explain { user, engine } => {
            let config = load_engine(&engine)?;
            let (store, engine) = open_engine(&config, &engine.policy, 0)?;
            let admin = crate::admin::Admin::new(store, engine);
            let v = admin.explain(&user).map_err(|e| anyhow::anyhow!("{e}"))?;
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
    }
    Ok(())
}

/// Opens the store with the engine installed (the policy from `--policy`).
pub(crate) fn open_engine(
    config: &Config,
    path: &std::path::Path,
    min_idle: u32,
) -> anyhow::Result<(Store, std::sync::Arc<crate::engine::Engine>)> {
    use crate::clock::SystemClock;
    use crate::engine::{connector_set, Engine};
    let handle = crate::policy::reload::PolicyHandle::load(path)
        .map_err(|e| anyhow::anyhow!("policy rejected:\n{e}"))?;
    let engine = std::sync::Arc::new(Engine::new(
        handle,
        std::sync::Arc::new(SystemClock),
        connector_set::ConnectorSet::new(connector_set::default_builder()),
    ));
    let store = crate::engine::hook::install(open_store(config, min_idle)?, engine.clone());
    Ok((store, engine))
}

/// [`open_engine`] for a command that plans or decides (`import`, `grant`, `reconcile`,
/// `campaign create`, `outbox retry`): refused when the hub applied another policy last, since
/// the command would plan under rules the hub does not run (another file's approval levels,
/// drift actions or profiles) and skip what applying a policy does (its guard judged, security
/// told of a loosened one). A database the hub never ran a policy on takes any file.
pub(crate) fn open_engine_applied(
    config: &Config,
    path: &std::path::Path,
) -> anyhow::Result<(Store, std::sync::Arc<crate::engine::Engine>)> {
    let (store, engine) = open_engine(config, path, 0)?;
    let applied = {
        let mut c = store.read_conn()?;
        crate::store::policy_applied::current(&mut c)?
    };
    let file = engine.policy.status().sha256;
    if let (Some(applied), Some(file)) = (applied, file) {
        if applied.sha256 != file {
            anyhow::bail!(
                "{} (sha256 {file}) is not the policy the hub applied last (sha256 {}): this \
                 command would plan or decide under rules the hub does not run. Pass the \
                 hub's policy file, or reload the hub with this one (POST \
                 /admin/v1/policy/reload) and let it apply it first",
                path.display(),
                applied.sha256
            );
        }
    }
    Ok((store, engine))
}

fn load(file: Option<&std::path::Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    Config::load(file, overrides).context("invalid configuration")
}

/// The configuration of a command that opens the database, logging set up.
fn load_db(args: &DbArgs) -> anyhow::Result<Config> {
    let config = load(args.config.as_deref(), &args.overrides())?;
    init_logging(config.log_format);
    Ok(config)
}

/// The configuration of a command that also loads the policy (`simulate`, `policy explain`,
/// `outbox retry`): the same file as `serve`, so extension schemas and `strict` agree.
pub(crate) fn load_engine(args: &EngineArgs) -> anyhow::Result<Config> {
    load(args.config.as_deref(), &args.overrides())
}

/// `min_idle` is 0 for short-lived commands: see [`StoreOptions::min_idle`].
fn open_store(config: &Config, min_idle: u32) -> anyhow::Result<Store> {
    let db = &config.database;
    let ms = std::time::Duration::from_millis;
    let options = StoreOptions {
        pool_size: config.db_pool_size,
        min_idle,
        connection_timeout: db.pool_timeout(),
        pg: crate::store::PgSession {
            statement_timeout: ms(db.statement_timeout_ms),
            idle_in_transaction_timeout: ms(db.idle_in_transaction_timeout_ms),
            connect_timeout: std::time::Duration::from_secs(db.connect_timeout_secs),
        },
        write_attempts: db.write_attempts,
        worker_readers: config.db_worker_readers,
        group_commit: config.db_group_commit,
        reader_snapshot: ms(config.db_reader_snapshot_ms),
        ..Default::default()
    };
    Store::open_with(config.database_url.as_str(), options)
        .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))
}

/// Logs go to stderr (stdout carries `listening on ADDR` and issued tokens), as text or JSON;
/// the level comes from `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn serve(config: Config, common: &Common) -> anyhow::Result<()> {
    let jwt = config
        .jwt
        .as_ref()
        .map(JwtVerifier::from_config)
        .transpose()
        .context("invalid [jwt] settings")?;
    let bootstrap = config.bootstrap_secret().map_err(anyhow::Error::msg)?;
    tracing::info!(
        version = crate::cli::VERSION,
        database = %config.database_url.redacted(),
        config = %common.config.as_ref().map(|c| c.display().to_string()).unwrap_or_else(|| "none".into()),
        "starting scimhub"
    );
    crate::scheduling::configure(config.sched_batch);
    let has_bootstrap = bootstrap.is_some();
    let auth = Authenticator::new(bootstrap, jwt);
    let (store, admin) = match &common.policy {
        Some(policy) => {
            let (store, engine) = open_engine(&config, policy, 1)?;
            {
                let p = engine.policy.current();
                tracing::info!(
                    policy = %policy.display(),
                    connectors = p.connectors.len(),
                    profiles = p.profiles.len(),
                    "policy loaded; lifecycle engine on"
                );
            }
            let membership = start_engine(store.clone(), engine.clone(), config.smtp.clone())?;
            let admin = crate::admin::Admin::new(store.clone(), engine);
            (store, Some((admin, membership)))
        }
        None => {
            tracing::info!("no policy (--policy): SCIM directory only, no lifecycle engine");
            (open_store(&config, 1)?, None)
        }
    };
    let (admin, membership) = admin.unzip();
    warn_without_tokens(&store, has_bootstrap, config.jwt.is_some());
    let registry = crate::service::schemas::configured_registry(&config.schema_extensions)
        .map_err(anyhow::Error::msg)?;
    let anchors = crate::jobs::audit_anchor::AnchorSettings::from_config(&config.audit)
        .map_err(anyhow::Error::msg)?;
    crate::jobs::audit_anchor::start(
        store.clone(),
        anchors,
        admin.as_ref().map(|a| a.engine.policy.clone()),
    )
    .context("cannot start the audit anchor thread")?;
    let mut state = AppState::new(config, registry, store, auth)?;
    if let Some(admin) = admin {
        state = state.with_admin(admin);
    }
    let served = actix_web::rt::System::new().block_on(crate::http::serve(state));
    // Stopped (SIGTERM, SIGINT): out of the cluster's live nodes at once.
    if let Some(m) = membership {
        m.leave();
    }
    served
}

/// A first start has no way in: say so loudly, and how to make one.
fn warn_without_tokens(store: &Store, has_bootstrap: bool, has_jwt: bool) {
    if has_bootstrap || has_jwt {
        return;
    }
    let now = chrono::Utc::now();
    let usable = match store.list_tokens() {
        Ok(tokens) => tokens
            .iter()
            .filter(|t| t.revoked.is_none() && t.expires.is_none_or(|e| e > now))
            .count(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot count API tokens");
            return;
        }
    };
    if usable == 0 {
        tracing::warn!(
            "NO API TOKEN EXISTS YET: every SCIM and admin request will be refused with 401. \
             Issue one with the same database settings: \
             `scimhub token issue --name okta --scope scim:read --scope scim:write` \
             (add --config FILE or --database-url URL as for serve; it prints the token once), \
             or set bootstrap_token (SCIMHUB_BOOTSTRAP_TOKEN) for a first setup"
        );
    }
}

/// Runs the outbox workers, the timers and the policy watcher on their own runtime thread, so
/// they never compete with request handling for actix's workers.
pub(crate) fn start_engine(
    store: Store,
    engine: std::sync::Arc<crate::engine::Engine>,
    smtp: Option<crate::config::SmtpConfig>,
) -> anyhow::Result<crate::jobs::cluster::Membership> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("scimhub-engine")
        .build()
        .context("cannot start the engine runtime")?;
    let workers = crate::jobs::Workers::new(store.clone(), engine.clone());
    // Before any write is planned: on a new database, the policy everyone will be planned
    // under from now on (a reload before the workers' first round must still re-plan).
    workers
        .record_first_policy()
        .context("cannot record the policy in force")?;
    let membership = workers.membership();
    std::thread::Builder::new()
        .name("scimhub-engine".into())
        .spawn(move || {
            rt.block_on(async move {
                engine
                    .policy
                    .spawn_watcher(std::time::Duration::from_secs(3));
                crate::notify::spawn(&store, &engine, smtp.as_ref());
                workers.spawn();
                std::future::pending::<()>().await
            })
        })
        .context("cannot start the engine thread")?;
    tracing::info!("lifecycle engine started");
    Ok(membership)
}

/// `scimhub campaign create | list | report`: certification campaigns as JSON.
fn campaign_command(cmd: crate::cli::CampaignCommand) -> anyhow::Result<()> {
    use crate::cli::CampaignCommand;
    let engine_args = match &cmd {
        CampaignCommand::Create { engine, .. }
        | CampaignCommand::List { engine, .. }
        | CampaignCommand::Report { engine, .. } => engine.clone(),
    };
    let config = load_engine(&engine_args)?;
    let (store, engine) = match cmd {
        CampaignCommand::Create { .. } => open_engine_applied(&config, &engine_args.policy)?,
        _ => open_engine(&config, &engine_args.policy, 0)?,
    };
    let admin = crate::admin::Admin::new(store, engine);
    let err = |e: crate::admin::AdminError| anyhow::anyhow!("{e}");
    let out = match cmd {
        CampaignCommand::Create {
            name, scope, due, ..
        } => {
            let due = match due {
                Some(d) => crate::admin::certification::parse_due(&d).map_err(err)?,
                None => admin.engine.policy.current().certification.due,
            };
            // The running server's notifier sends the reviewers' mails at its next poll.
            admin
                .create_campaign(&name, &scope, due, &actor_of_cli())
                .map_err(err)?
        }
        CampaignCommand::List { state, .. } => {
            serde_json::Value::Array(admin.campaigns(state.as_deref(), 1000).map_err(err)?)
        }
        CampaignCommand::Report { id, output, .. } => {
            let r = crate::report::campaign::build(&admin.store, &id, admin.engine.now())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let text = match output.format {
                crate::report::Format::Json => serde_json::to_string_pretty(&r)?,
                crate::report::Format::Html => {
                    crate::report::html::campaign(&r).map_err(|e| anyhow::anyhow!("{e}"))?
                }
            };
            return crate::run_report::write(&output, &text);
        }
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
    Ok(())
}
