//! The `scimhub` command line.
//!
//! Every flag can also come from a `SCIMHUB_*` environment variable or the TOML file given with
//! `--config`; see [`crate::config`]. Each subcommand has its own flags: [`Common`] for `serve`
//! and `config`, [`DbArgs`] for the commands that only open the database, [`EngineArgs`] for the
//! ones that also load the policy.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::config::{LogFormat, Overrides, TlsOverrides};

/// The version `--version` prints and `serve` logs: the crate version and the git commit it was
/// built from (see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BUILD_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(name = "scimhub", version = VERSION, about = "SCIM 2.0 identity hub")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the SCIM 2.0 server (runs pending migrations first).
    Serve(ServeArgs),
    /// Run pending database migrations and exit (`--check`: only list them).
    Migrate(MigrateArgs),
    /// Copy the SQLite database to FILE while the server may be running (PostgreSQL: pg_dump).
    Backup(BackupArgs),
    /// Check or print the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
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
    /// (joiner, approval, mover, contractor, leaver) against it, explain each step, mark the
    /// access it granted (+), revoked (-) and kept (=), and print every app's final state.
    Demo(DemoArgs),
    /// Act on the operation queue.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout: `scimhub man > scimhub.1`.
    Man,
    /// Read lifecycle events as recorded (same as GET /admin/v1/events).
    #[command(subcommand)]
    Events(EventsCommand),
    /// Verify, export, anchor and prune the tamper-evident audit chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Compare each connector's accounts with what the engine wants and recorded, store the
    /// findings and act on them per the policy's `drift` settings (same as
    /// POST /admin/v1/reconcile).
    Reconcile(ReconcileArgs),
    /// Access certification campaigns: create one now, list them, print a completion report
    /// (same as /admin/v1/campaigns).
    #[command(subcommand)]
    Campaign(CampaignCommand),
    /// Load an HR roster (CSV) as SCIM writes of one client: create or update each row's user,
    /// report each row; `--full` deactivates the client's users the roster leaves out.
    Import(ImportArgs),
    /// Termination, period and contractor reports as JSON or printable HTML (same as
    /// GET /admin/v1/reports/...; see docs/reports.md).
    #[command(subcommand)]
    Report(ReportCommand),
    /// Time-bound emergency access: `scimhub grant USER CONNECTOR:KIND:ID --for 4h --reason
    /// TEXT` gives (or asks approval for) one entitlement until it expires (same as
    /// POST /admin/v1/users/{id}/grants); `grant list`, `grant revoke ID --reason TEXT`.
    Grant(GrantArgs),
}

/// Where a report goes and in which form.
#[derive(Debug, Clone, Args)]
pub struct ReportOutput {
    /// json or html.
    #[arg(long, value_enum, default_value = "json")]
    pub format: crate::report::Format,
    /// Write the report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `scimhub report …`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// One leaver or contract-expiry event of USER: every system, every action with requested
    /// and done times, verification, the SLA result, incidents and approved exceptions.
    Termination {
        /// The user's id or userName (a deleted user: the id).
        user: String,
        /// This event (from `scimhub events list --user USER`) instead of the latest leaver or
        /// contract-expiry event.
        #[arg(long)]
        event: Option<i64>,
        #[command(flatten)]
        output: ReportOutput,
        #[command(flatten)]
        db: DbArgs,
    },
    /// A period for auditors: events by kind, SLA attainment per kind, incidents and their
    /// resolution times, drift findings, emergency grants, certification campaigns.
    Period {
        /// First day (YYYY-MM-DD, UTC) or time (RFC 3339), inclusive.
        #[arg(long)]
        from: String,
        /// Last day (YYYY-MM-DD, UTC, inclusive) or time (RFC 3339, exclusive).
        #[arg(long)]
        to: String,
        #[command(flatten)]
        output: ReportOutput,
        #[command(flatten)]
        db: DbArgs,
    },
    /// A contractor's provisioning history: the copy kept at contract expiry when there is
    /// one, else as it is now.
    Contractor {
        /// The user's id or userName (a deleted user: the id).
        user: String,
        #[command(flatten)]
        output: ReportOutput,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `scimhub grant` (docs/grants.md): with USER and ENTITLEMENT, asks for a grant; or one of
/// its subcommands.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct GrantArgs {
    #[command(subcommand)]
    pub command: Option<GrantCommand>,
    /// The user's id or userName.
    #[arg(required = true)]
    pub user: Option<String>,
    /// CONNECTOR:KIND:ID (or CONNECTOR:KIND:ID:ROLE), e.g. github:team:eng.
    #[arg(required = true)]
    pub entitlement: Option<String>,
    /// How long the grant lasts, e.g. 4h (at most the policy's [grants] max_duration).
    #[arg(long = "for", value_name = "DURATION", required = true)]
    pub duration: Option<String>,
    /// Why (recorded on the grant, its approval request and the audit trail).
    #[arg(long, required = true)]
    pub reason: Option<String>,
    /// Who asks (a userName or id): needed for a grant that waits for approval, which the
    /// asker may not approve themselves.
    #[arg(long = "as", value_name = "USER")]
    pub asker: Option<String>,
    #[command(flatten)]
    pub engine: GrantEngineArgs,
}

/// [`EngineArgs`] of the asking form of `scimhub grant`, optional so that a subcommand (which
/// has its own) can stand alone; asking checks `--policy` is given.
#[derive(Debug, Clone, Args)]
pub struct GrantEngineArgs {
    /// Access policy (TOML).
    #[arg(long, env = "SCIMHUB_POLICY")]
    pub policy: Option<PathBuf>,
    /// TOML configuration file (extension schemas, `strict`, the database).
    #[arg(long, env = "SCIMHUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// sqlite://FILE or postgres://… [default: sqlite://scimhub.db; env SCIMHUB_DATABASE_URL]
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum GrantCommand {
    /// Grants, newest first (JSON; same as GET /admin/v1/grants).
    List {
        /// Only this user's (id or userName).
        #[arg(long)]
        user: Option<String>,
        /// Only grants in force now.
        #[arg(long)]
        active: bool,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Ends a grant now: the outbox takes the entitlement away (same as
    /// POST /admin/v1/grants/{id}/revoke).
    Revoke {
        /// The grant's id (from `scimhub grant list`).
        id: String,
        /// Why (recorded on the grant and the audit trail).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

/// `scimhub migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Apply nothing: list the migrations an upgrade would apply and exit with 0 when there
    /// are none, 2 when there are some (1 is an error).
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `scimhub backup FILE`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// Where the copy goes; an existing file is never overwritten.
    pub file: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load the configuration as `serve` would (file, SCIMHUB_* variables, flags) and report
    /// every problem: unknown keys, bad values, unreadable or short secrets.
    Check(Common),
    /// Print the effective configuration, secrets redacted, with each value's source
    /// (default, file, env, flag).
    Show(Common),
}

/// Flags of the commands that open the database.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// TOML configuration file.
    #[arg(long, env = "SCIMHUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// sqlite://FILE or postgres://… [default: sqlite://scimhub.db; env SCIMHUB_DATABASE_URL]
    #[arg(long)]
    pub database_url: Option<String>,
    /// Log format [default: text; env SCIMHUB_LOG_FORMAT]
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl DbArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            database_url: self.database_url.clone(),
            log_format: self.log_format,
            ..Default::default()
        }
    }
}

/// Flags of the commands that open the database and load the policy.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Access policy (TOML).
    #[arg(long, env = "SCIMHUB_POLICY")]
    pub policy: PathBuf,
    /// TOML configuration file (extension schemas, `strict`, the database).
    #[arg(long, env = "SCIMHUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// sqlite://FILE or postgres://… [default: sqlite://scimhub.db; env SCIMHUB_DATABASE_URL]
    #[arg(long)]
    pub database_url: Option<String>,
}

impl EngineArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            database_url: self.database_url.clone(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// One event's whole record: per system every operation with requested and done times,
    /// the SLA result, verification per system and the incidents it raised (JSON).
    Show {
        /// The event's id (from `scimhub events list`).
        id: i64,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Events newest first, one page (JSON; `next_before` gives the next page).
    List {
        /// A user's id or userName.
        #[arg(long)]
        user: Option<String>,
        /// joiner, mover, leaver, rehire, contractor-expiry, update.
        #[arg(long)]
        kind: Option<String>,
        /// RFC 3339: events at or after.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339: events before.
        #[arg(long)]
        until: Option<String>,
        /// The page after the one whose last event had this id.
        #[arg(long)]
        before: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

/// `scimhub audit …` (see docs/operating.md, "Audit trail").
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the chain and report the first edited, deleted, inserted or reordered entry, or a
    /// truncated tail (against the head row and the anchors given). Exits non-zero on a finding.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        /// First entry (seq) to check.
        #[arg(long)]
        from: Option<i64>,
        /// Last entry (seq) to check.
        #[arg(long)]
        to: Option<i64>,
        /// An anchor taken earlier, SEQ:HASH (repeatable).
        #[arg(long = "anchor", value_name = "SEQ:HASH")]
        anchors: Vec<String>,
        /// A file of anchors: SEQ:HASH per line, or the anchor log lines (`seq=N hash=H`).
        #[arg(long, value_name = "FILE")]
        anchors_file: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export entries (chain columns included) as JSON Lines or CSV on stdout.
    Export {
        #[command(flatten)]
        db: DbArgs,
        /// From this time (RFC 3339, inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Up to this time (RFC 3339, exclusive).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: crate::admin::audit::Format,
    },
    /// Print the chain head as SEQ:HASH (an anchor to keep outside the database).
    Head {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Prune entries older than `[audit] retain` now (the server does it every anchor interval).
    Prune {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// Only this connector (default: every connector that can list accounts).
    #[arg(long)]
    pub connector: Option<String>,
    /// Print the findings and the fixes that would be planned; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Open a campaign now: every entitlement in scope goes to its reviewer, who is mailed.
    Create {
        /// The campaign's name.
        #[arg(long)]
        name: String,
        /// What it covers: `connector=NAME,department=NAME,profile=NAME,privileged` (terms
        /// repeatable; empty: everything).
        #[arg(long, default_value = "")]
        scope: String,
        /// How long reviewers have (`14d`); default `[certification] due`.
        #[arg(long)]
        due: Option<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// List campaigns, newest first.
    List {
        /// Only campaigns in this state (open, completed, cancelled).
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Print a campaign's completion report: JSON, or a printable page with `--format html`
    /// (same as GET /admin/v1/campaigns/{id}/report).
    Report {
        /// The campaign id.
        id: String,
        #[command(flatten)]
        output: ReportOutput,
        #[command(flatten)]
        engine: EngineArgs,
    },
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
        #[command(flatten)]
        engine: EngineArgs,
    },
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["request", "user"])))]
pub struct SimulateArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
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
        #[command(flatten)]
        engine: EngineArgs,
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
        db: DbArgs,
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
        db: DbArgs,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id, or by name when one unrevoked token has that name. Takes effect
    /// within a second on every node (each reads a token's row at most a second old).
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        /// The token's id (from `token list`) or name.
        id_or_name: String,
    },
}

/// Flags of `serve` (and `config check|show`, which load the configuration as `serve` does).
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
            ..Default::default()
        }
    }
}

/// `scimhub serve`: the shared settings plus the listener's.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Serve HTTPS with this certificate chain (PEM) [config `[tls] cert`]; reloaded on SIGHUP
    /// and when the file changes.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM) [config `[tls] key`].
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on an address that is not loopback (behind a TLS-terminating reverse
    /// proxy) [config `allow_plain_http`].
    #[arg(long)]
    pub allow_plain_http: bool,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            tls: TlsOverrides {
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            },
            allow_plain_http: self.allow_plain_http.then_some(true),
            ..self.common.overrides()
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
        let Command::Serve(ServeArgs { common: c, .. }) = cli.command else {
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
    fn parses_events() {
        let cli = Cli::try_parse_from(["scimhub", "events", "show", "42", "--policy", "p.toml"])
            .expect("parse");
        let Command::Events(EventsCommand::Show { id, .. }) = cli.command else {
            panic!("events show")
        };
        assert_eq!(id, 42);
        let cli = Cli::try_parse_from([
            "scimhub", "events", "list", "--user", "jdoe", "--kind", "leaver", "--policy", "p",
        ])
        .expect("parse");
        let Command::Events(EventsCommand::List {
            user, kind, limit, ..
        }) = cli.command
        else {
            panic!("events list")
        };
        assert_eq!(
            (user.as_deref(), kind.as_deref(), limit),
            (Some("jdoe"), Some("leaver"), 100)
        );
        assert!(Cli::try_parse_from(["scimhub", "events", "show", "x", "--policy", "p"]).is_err());
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

/// `scimhub import ROSTER.csv --client NAME`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The roster: CSV with a header row.
    pub file: PathBuf,
    /// The client the rows are written as: its `[[source]]` rights apply and it scopes
    /// `externalId` (as the name of a SCIM client's token does).
    #[arg(long)]
    pub client: String,
    /// Column → attribute mapping (TOML, see docs/import.md); without it each header is the
    /// attribute path.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Write nothing: every row runs through the write path and is rolled back; same report.
    #[arg(long)]
    pub dry_run: bool,
    /// The roster is complete: the client's users it leaves out are deactivated (under the
    /// policy's blast-radius guard).
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}
