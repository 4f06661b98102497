//! What each subcommand does: load the configuration, set up logging, open the store, act.

use std::io::Write;

use anyhow::Context;

use crate::auth::{jwt::JwtVerifier, token, Authenticator, Scope};
use crate::cli::{Cli, Command, Common, TokenCommand};
use crate::config::{Config, LogFormat};
use crate::http::AppState;
use crate::store::{Store, StoreOptions};

/// Runs the command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(common) => {
            let config = load(&common)?;
            init_logging(config.log_format);
            serve(config)
        }
        Command::Migrate(common) => {
            let config = load(&common)?;
            init_logging(config.log_format);
            let store = open_store(&config)?;
            let applied = store.migrate().map_err(|e| anyhow::anyhow!("{e}"))?;
            tracing::info!(count = applied.len(), "migrations up to date");
            close(store);
            Ok(())
        }
        Command::Token(TokenCommand::Issue {
            common,
            name,
            scopes,
        }) => {
            let config = load(&common)?;
            init_logging(config.log_format);
            let scopes = Scope::parse_list(&scopes.join(" ")).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(!scopes.is_empty(), "at least one --scope is required");
            let store = open_store(&config)?;
            let new = token::generate();
            let scope_names: Vec<String> = scopes.iter().map(|s| s.as_str().to_string()).collect();
            store
                .insert_token(&name, &new.hash, &new.prefix, &scope_names)
                .map_err(|e| anyhow::anyhow!("cannot store the token: {e}"))?;
            tracing::info!(client = %name, scopes = %Scope::join(&scopes), "token issued");
            close(store);
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", new.token)?;
            out.flush()?;
            Ok(())
        }
    }
}

/// Closes the store of a short-lived command and gives the connection pool's worker threads a
/// moment to wind down before the process exits. Without it `scimhub migrate`/`token issue` on
/// PostgreSQL occasionally died with SIGSEGV after finishing their work (seen under load in the
/// e2e tests, not reproduced in isolation): the pool's threads were still exiting while the
/// process ran its exit handlers (libpq/OpenSSL cleanup).
fn close(store: Store) {
    drop(store);
    std::thread::sleep(std::time::Duration::from_millis(100));
}

fn load(common: &Common) -> anyhow::Result<Config> {
    Config::load(common.config.as_deref(), &common.overrides()).context("invalid configuration")
}

fn open_store(config: &Config) -> anyhow::Result<Store> {
    let options = StoreOptions {
        pool_size: config.db_pool_size,
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

fn serve(config: Config) -> anyhow::Result<()> {
    let jwt = config
        .jwt
        .as_ref()
        .map(JwtVerifier::from_config)
        .transpose()
        .context("invalid [jwt] settings")?;
    let auth = Authenticator::new(config.bootstrap_token.clone(), jwt);
    let store = open_store(&config)?;
    let registry = crate::service::schemas::registry();
    let state = AppState::new(config, registry, store, auth)?;
    actix_web::rt::System::new().block_on(crate::http::serve(state))
}
