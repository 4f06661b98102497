//! The HRIS simulator: pushes the demo's joiners, movers and leavers to a running hub over SCIM.
//!
//!     SCIMHUB_BOOTSTRAP_TOKEN=dev-token-dev-token-dev-token-dev-token cargo run -p scim-server -- serve --policy examples/demo-policy.toml
//!     cargo run --example hris-simulator -p scim-server -- --url http://127.0.0.1:8080 --token dev-token-dev-token-dev-token-dev-token
//!
//! `scimhub demo` runs the same story (`scim_server::demo::simulator`) against a hub of its own
//! and also performs the steps SCIM cannot express (approvals, the manager's one-click link).

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Push an HRIS joiner/mover/leaver story to a scimhub over SCIM")]
struct Args {
    /// The hub (`http://127.0.0.1:8080`) or its SCIM base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A bearer token with the scim:write scope.
    #[arg(long, env = "SCIMHUB_TOKEN")]
    token: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(scim_server::demo::simulator::run_standalone(
            &args.url,
            &args.token,
        ))
}
