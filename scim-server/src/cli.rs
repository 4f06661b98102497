//! The `scimhub` command line.
//!
//! Every flag can also come from a `SCIMHUB_*` environment variable or the TOML file given with
//! `--config`; see [`crate::config`].

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::config::{LogFormat, Overrides};

#[derive(Debug, Parser)]
#[command(name = "scimhub", version, about = "SCIM 2.0 identity hub")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the SCIM 2.0 server (runs pending migrations first).
    Serve(Common),
    /// Run pending database migrations and exit.
    Migrate(Common),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check, explain and document the access policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print the exact plan per connector that a SCIM request (or a user's attribute changes)
    /// would produce, without committing anything (same as POST /admin/v1/simulate).
    Simulate(SimulateArgs),
    /// Start a throw-away hub with the demo policy and in-memory apps, run an HRIS scenario
    /// (joiner, approval, mover, contractor, leaver) against it and print each app's state.
    Demo(DemoArgs),
    /// Act on the operation queue.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Compare each connector's accounts with what the engine wants and recorded, store the
    /// findings and act on them per the policy's `drift` settings (same as
    /// POST /admin/v1/reconcile).
    Reconcile(ReconcileArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// Only this connector (default: every connector that can list accounts).
    #[arg(long)]
    pub connector: Option<String>,
    /// Print the findings and the fixes that would be planned; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, env = "SCIMHUB_POLICY")]
    pub policy: PathBuf,
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// After a connector's outage: put its parked operations back in the queue and make the
    /// ones waiting out a backoff due now, each with a fresh retry budget, in their original
    /// per-user order (same as POST /admin/v1/outbox/retry?connector=X).
    Retry {
        /// The connector's name in the policy.
        #[arg(long)]
        connector: String,
        #[arg(long, env = "SCIMHUB_POLICY")]
        policy: PathBuf,
        #[arg(long)]
        database_url: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["request", "user"])))]
pub struct SimulateArgs {
    #[arg(long, env = "SCIMHUB_POLICY")]
    pub policy: PathBuf,
    #[arg(long)]
    pub database_url: Option<String>,
    /// A JSON file: {"method": "PATCH", "path": "/Users/ID", "body": {...}}.
    #[arg(long, value_name = "FILE.json")]
    pub request: Option<PathBuf>,
    /// User id or userName whose attributes `--set` changes.
    #[arg(long, requires = "set")]
    pub user: Option<String>,
    /// ATTR=VALUE (repeatable). VALUE is a string; `true`, `false`, `null` and values starting
    /// with `{`, `[` or `"` are JSON; an empty VALUE removes the attribute.
    #[arg(long = "set", value_name = "ATTR=VALUE", requires = "user")]
    pub set: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Leave the server running after the scenario (stop it with Ctrl-C).
    #[arg(long)]
    pub keep_running: bool,
    /// Policy to run instead of the built-in copy of examples/demo-policy.toml.
    #[arg(long)]
    pub policy: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file; prints every problem as FILE:LINE:COL: message.
    Check { file: PathBuf },
    /// Show which profiles match a user and what they would get.
    Explain {
        /// User id or userName.
        user: String,
        #[arg(long, env = "SCIMHUB_POLICY")]
        policy: PathBuf,
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Print the Markdown runbook generated from the policy.
    Docs {
        #[arg(long, env = "SCIMHUB_POLICY")]
        policy: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for a client and print it once (only its hash is stored).
    Issue {
        #[command(flatten)]
        common: Common,
        /// Client name, shown in logs (e.g. "okta", "entra", "workday").
        #[arg(long)]
        name: String,
        /// Scopes: scim:read, scim:write, scim:delete, approvals, metrics:read, admin (repeat the flag or separate with
        /// commas).
        #[arg(long = "scope", required = true, num_args = 1.., value_delimiter = ',')]
        scopes: Vec<String>,
        /// The directory user (userName or SCIM id) this token acts as: approval decisions taken
        /// with it are that user's, within the authority the policy gives them.
        #[arg(long, value_name = "USERNAME_OR_ID")]
        user: Option<String>,
        /// Lifetime, e.g. `90d`, `12h`, `2w` (s, m, h, d, w); past it the token is refused with
        /// 401. Default: the token does not expire.
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// List tokens: id, name, scopes, user, created, last used, expiry, revocation (never the
    /// token or its hash). `last_used` is precise to about a minute.
    List {
        #[command(flatten)]
        common: Common,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id, or by name when one unrevoked token has that name. Takes effect on
    /// the next request (tokens are checked against the database on every request).
    Revoke {
        #[command(flatten)]
        common: Common,
        /// The token's id (from `token list`) or name.
        id_or_name: String,
    },
}

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Address to listen on [default: 127.0.0.1:8080; env SCIMHUB_BIND]. Port 0 picks a free port.
    #[arg(long)]
    pub bind: Option<String>,
    /// sqlite://FILE or postgres://… [default: sqlite://scimhub.db; env SCIMHUB_DATABASE_URL]
    #[arg(long)]
    pub database_url: Option<String>,
    /// TOML configuration file.
    #[arg(long, env = "SCIMHUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format [default: text; env SCIMHUB_LOG_FORMAT]
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Access policy (TOML); when set, `serve` runs the lifecycle engine and its workers.
    #[arg(long, env = "SCIMHUB_POLICY")]
    pub policy: Option<PathBuf>,
}

impl Common {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            bind: self.bind.clone(),
            database_url: self.database_url.clone(),
            log_format: self.log_format,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_serve_and_token_issue() {
        let cli = Cli::try_parse_from([
            "scimhub",
            "serve",
            "--bind",
            "0.0.0.0:1",
            "--log-format",
            "json",
        ])
        .expect("parse");
        let Command::Serve(c) = cli.command else {
            panic!("serve")
        };
        assert_eq!(c.bind.as_deref(), Some("0.0.0.0:1"));
        assert_eq!(c.log_format, Some(LogFormat::Json));

        let cli = Cli::try_parse_from([
            "scimhub",
            "token",
            "issue",
            "--name",
            "okta",
            "--scope",
            "scim:read",
            "--scope",
            "scim:write,admin",
        ])
        .expect("parse");
        let Command::Token(TokenCommand::Issue {
            name, scopes, user, ..
        }) = cli.command
        else {
            panic!("issue")
        };
        assert_eq!(name, "okta");
        assert_eq!(scopes, vec!["scim:read", "scim:write", "admin"]);
        assert_eq!(user, None);
        let cli = Cli::try_parse_from([
            "scimhub",
            "token",
            "issue",
            "--name",
            "grace-approvals",
            "--scope",
            "approvals",
            "--user",
            "grace",
        ])
        .expect("parse");
        let Command::Token(TokenCommand::Issue { user, .. }) = cli.command else {
            panic!("issue")
        };
        assert_eq!(user.as_deref(), Some("grace"));
        assert!(Cli::try_parse_from(["scimhub", "token", "issue", "--name", "x"]).is_err());
        let cli = Cli::try_parse_from([
            "scimhub",
            "token",
            "issue",
            "--name",
            "x",
            "--scope",
            "admin",
            "--expires",
            "90d",
        ])
        .expect("parse");
        let Command::Token(TokenCommand::Issue { expires, .. }) = cli.command else {
            panic!("issue")
        };
        assert_eq!(expires.as_deref(), Some("90d"));
        let cli = Cli::try_parse_from(["scimhub", "token", "revoke", "okta"]).expect("parse");
        let Command::Token(TokenCommand::Revoke { id_or_name, .. }) = cli.command else {
            panic!("revoke")
        };
        assert_eq!(id_or_name, "okta");
        assert!(Cli::try_parse_from(["scimhub", "token", "revoke"]).is_err());
        let cli = Cli::try_parse_from(["scimhub", "token", "list", "--json"]).expect("parse");
        assert!(matches!(
            cli.command,
            Command::Token(TokenCommand::List { json: true, .. })
        ));
    }

    #[test]
    fn parses_simulate() {
        let cli = Cli::try_parse_from([
            "scimhub",
            "simulate",
            "--policy",
            "p.toml",
            "--user",
            "ada",
            "--set",
            "title=x",
            "--set",
            "active=false",
        ])
        .expect("parse");
        let Command::Simulate(a) = cli.command else {
            panic!("simulate")
        };
        assert_eq!(a.user.as_deref(), Some("ada"));
        assert_eq!(a.set, vec!["title=x", "active=false"]);
        assert!(Cli::try_parse_from(["scimhub", "simulate", "--policy", "p.toml"]).is_err());
        assert!(Cli::try_parse_from([
            "scimhub",
            "simulate",
            "--policy",
            "p",
            "--request",
            "r.json",
            "--user",
            "u",
            "--set",
            "a=b"
        ])
        .is_err());
        assert!(
            Cli::try_parse_from(["scimhub", "simulate", "--policy", "p", "--user", "u"]).is_err()
        );
    }
}
