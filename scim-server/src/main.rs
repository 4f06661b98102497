//! `scimhub`: see [`scim_server::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = scim_server::cli::Cli::parse();
    match scim_server::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scimhub: {e:#}");
            ExitCode::FAILURE
        }
    }
}
