//! Rebuild when a migration changes: they are embedded with `embed_migrations!`, which cargo
//! does not otherwise know to watch.
//!
//! Records the git commit the binary is built from (`scimhub --version`, the `serve` start log)
//! as `BUILD_GIT_COMMIT`: `git rev-parse` in a checkout; outside one (a source tarball, a
//! vendored build) the `SCIMHUB_GIT_COMMIT` variable if set, else `unknown`. Never fails.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    println!("cargo:rerun-if-env-changed=SCIMHUB_GIT_COMMIT");
    let from_env = std::env::var("SCIMHUB_GIT_COMMIT")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let commit = from_env
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves (a commit, a checkout); `git rev-parse --git-path` finds the files
    // of a linked worktree too.
    for file in ["HEAD", "logs/HEAD"] {
        if let Some(path) = git(&["rev-parse", "--git-path", file]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    println!("cargo:rustc-env=BUILD_GIT_COMMIT={commit}");
}
