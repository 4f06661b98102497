//! What each subcommand does: load the configuration, set up logging, open the store, act.

use std::io::Write;

use anyhow::Context;

use crate::auth::{jwt::JwtVerifier, token, Authenticator, Scope};
use crate::cli::{Cli, Command, Common, OutboxCommand, PolicyCommand, SimulateArgs, TokenCommand};
use crate::config::{Config, LogFormat};
use crate::http::AppState;
use crate::store::{Store, StoreOptions};

/// Runs the command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(common) => {
            let config = load(&common)?;
            init_logging(config.log_format);
            serve(config, &common)
        }
        Command::Migrate(common) => {
            let config = load(&common)?;
            init_logging(config.log_format);
            let store = open_store(&config, 0)?;
            let applied = store.migrate().map_err(|e| anyhow::anyhow!("{e}"))?;
            tracing::info!(count = applied.len(), "migrations up to date");
            drop(store);
            Ok(())
        }
        Command::Token(cmd) => token_command(cmd),
        Command::Policy(cmd) => policy_command(cmd),
        Command::Simulate(args) => simulate_command(args),
        Command::Demo(args) => crate::demo::run(args),
        Command::Outbox(cmd) => outbox_command(cmd),
        Command::Reconcile(args) => reconcile_command(args),
    }
}

/// `scimhub token issue | list | revoke`.
fn token_command(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Issue {
            common,
            name,
            scopes,
            user,
            expires,
        } => {
            let config = load(&common)?;
            init_logging(config.log_format);
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
        TokenCommand::List { common, json } => {
            let config = load(&common)?;
            init_logging(config.log_format);
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
        TokenCommand::Revoke { common, id_or_name } => {
            let config = load(&common)?;
            init_logging(config.log_format);
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
    let common = Common {
        bind: None,
        database_url: args.database_url,
        config: None,
        log_format: None,
        policy: Some(args.policy),
    };
    let config = load(&common)?;
    let request: SimulationRequest = match (&args.request, &args.user) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            serde_json::from_str(&text).with_context(|| {
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
    let (store, engine) = open_engine(&config, &common, 0)?;
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
    let OutboxCommand::Retry {
        connector,
        policy,
        database_url,
    } = cmd;
    let common = Common {
        bind: None,
        database_url,
        config: None,
        log_format: None,
        policy: Some(policy),
    };
    let config = load(&common)?;
    let (store, engine) = open_engine(&config, &common, 0)?;
    let admin = crate::admin::Admin::new(store, engine);
    // The running server's workers pick the queued operations up at their next poll.
    let out = admin
        .retry_connector(&connector, &actor_of_cli())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
    Ok(())
}

fn reconcile_command(args: crate::cli::ReconcileArgs) -> anyhow::Result<()> {
    let common = Common {
        bind: None,
        database_url: args.database_url,
        config: None,
        log_format: None,
        policy: Some(args.policy),
    };
    let config = load(&common)?;
    let (store, engine) = open_engine(&config, &common, 0)?;
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
        }
        PolicyCommand::Docs { policy } => {
            let p = Policy::load(&policy).map_err(|e| anyhow::anyhow!("policy rejected:\n{e}"))?;
            write!(out, "{}", crate::policy::docs::render(&p))?;
        }
        PolicyCommand::Explain {
            user,
            policy,
            database_url,
        } => {
            let common = Common {
                bind: None,
                database_url,
                config: None,
                log_format: None,
                policy: Some(policy),
            };
            let config = load(&common)?;
            let (store, engine) = open_engine(&config, &common, 0)?;
            let admin = crate::admin::Admin::new(store, engine);
            let v = admin.explain(&user).map_err(|e| anyhow::anyhow!("{e}"))?;
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
    }
    Ok(())
}

/// Opens the store with the engine installed (the policy from `--policy`).
fn open_engine(
    config: &Config,
    common: &Common,
    min_idle: u32,
) -> anyhow::Result<(Store, std::sync::Arc<crate::engine::Engine>)> {
    use crate::clock::SystemClock;
    use crate::engine::{connector_set, Engine};
    let path = common
        .policy
        .as_ref()
        .context("--policy (or SCIMHUB_POLICY) is required")?;
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

fn load(common: &Common) -> anyhow::Result<Config> {
    Config::load(common.config.as_deref(), &common.overrides()).context("invalid configuration")
}

/// `min_idle` is 0 for short-lived commands: see [`StoreOptions::min_idle`].
fn open_store(config: &Config, min_idle: u32) -> anyhow::Result<Store> {
    let options = StoreOptions {
        pool_size: config.db_pool_size,
        min_idle,
        ..Default::default()
    };
    Store::open_with(&config.database_url, options)
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
    let auth = Authenticator::new(bootstrap, jwt);
    let (store, admin) = match &common.policy {
        Some(_) => {
            let (store, engine) = open_engine(&config, common, 1)?;
            start_engine(store.clone(), engine.clone(), config.smtp.clone())?;
            let admin = crate::admin::Admin::new(store.clone(), engine);
            (store, Some(admin))
        }
        None => (open_store(&config, 1)?, None),
    };
    let registry = crate::service::schemas::configured_registry(&config.schema_extensions)
        .map_err(anyhow::Error::msg)?;
    let mut state = AppState::new(config, registry, store, auth)?;
    if let Some(admin) = admin {
        state = state.with_admin(admin);
    }
    actix_web::rt::System::new().block_on(crate::http::serve(state))
}

/// Runs the outbox workers, the timers and the policy watcher on their own runtime thread, so
/// they never compete with request handling for actix's workers.
pub(crate) fn start_engine(
    store: Store,
    engine: std::sync::Arc<crate::engine::Engine>,
    smtp: Option<crate::config::SmtpConfig>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("scimhub-engine")
        .build()
        .context("cannot start the engine runtime")?;
    std::thread::Builder::new()
        .name("scimhub-engine".into())
        .spawn(move || {
            rt.block_on(async move {
                engine
                    .policy
                    .spawn_watcher(std::time::Duration::from_secs(3));
                crate::notify::spawn(&store, &engine, smtp.as_ref());
                crate::jobs::Workers::new(store, engine).spawn();
                std::future::pending::<()>().await
            })
        })
        .context("cannot start the engine thread")?;
    tracing::info!("lifecycle engine started");
    Ok(())
}
