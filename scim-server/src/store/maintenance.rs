//! Upgrades and backups, done on one connection of its own and without running migrations (a
//! backup taken before an upgrade must be of the old schema, and `migrate --check` applies
//! nothing).

use std::path::{Path, PathBuf};

use diesel::migration::MigrationSource;
use diesel::sqlite::Sqlite;
use diesel::RunQueryDsl;
use diesel_migrations::MigrationHarness;

use super::conn::{establish, DbConnection, DbUrl};
use super::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
use crate::error::{HubError, HubResult};

/// The migrations `migrate` (or `serve`) would apply to the database at `url`, oldest first.
/// A SQLite file that does not exist yet is not created: every migration is pending. On an
/// existing database diesel creates its (empty) bookkeeping table if it is missing.
pub fn pending_migrations(url: &str) -> HubResult<Vec<String>> {
    let url = DbUrl::parse(url)?;
    if let DbUrl::SqliteFile(path) = &url {
        if !path.exists() {
            let all = MigrationSource::<Sqlite>::migrations(&SQLITE_MIGRATIONS)
                .map_err(|e| HubError::Backend(format!("embedded migrations: {e}")))?;
            return Ok(all.iter().map(|m| m.name().to_string()).collect());
        }
    }
    let mut conn = establish(&url).map_err(|e| HubError::Unavailable(e.to_string()))?;
    match &mut conn {
        DbConnection::Sqlite(c) => c
            .pending_migrations(SQLITE_MIGRATIONS)
            .map(|v| v.iter().map(|m| m.name().to_string()).collect()),
        DbConnection::Postgresql(c) => c
            .pending_migrations(POSTGRES_MIGRATIONS)
            .map(|v| v.iter().map(|m| m.name().to_string()).collect()),
    }
    .map_err(|e| HubError::Backend(format!("cannot list pending migrations: {e}")))
}

/// Why a backup was not written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// PostgreSQL is backed up with `pg_dump`; the caller says how.
    #[error("the database is PostgreSQL: use pg_dump")]
    Postgres,
    #[error("{0} already exists; a backup never overwrites a file")]
    Exists(PathBuf),
    #[error("no SQLite database at {0}")]
    NoDatabase(PathBuf),
    #[error("an in-memory database cannot be backed up")]
    Memory,
    #[error("backup failed: {0}")]
    Failed(String),
}

/// Copies the SQLite database at `url` into the new file `dest` with `VACUUM INTO`: one read
/// transaction, so the copy is consistent and writers (a running `serve`) go on meanwhile; the
/// copy is compacted and has no WAL of its own. Returns the copy's size in bytes.
pub fn backup_sqlite(url: &str, dest: &Path) -> Result<u64, BackupError> {
    let url = DbUrl::parse(url).map_err(|e| BackupError::Failed(e.to_string()))?;
    let source = match &url {
        DbUrl::Postgres(_) => return Err(BackupError::Postgres),
        DbUrl::SqliteMemory => return Err(BackupError::Memory),
        DbUrl::SqliteFile(p) => p.clone(),
    };
    if !source.exists() {
        return Err(BackupError::NoDatabase(source));
    }
    // SQLite refuses a non-empty target too; this also refuses an empty file or a directory.
    if dest.exists() {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    let target = dest
        .to_str()
        .ok_or_else(|| BackupError::Failed("the target path is not UTF-8".into()))?;
    let mut conn = establish(&url).map_err(|e| BackupError::Failed(e.to_string()))?;
    let DbConnection::Sqlite(c) = &mut conn else {
        return Err(BackupError::Postgres);
    };
    diesel::sql_query("VACUUM INTO ?")
        .bind::<diesel::sql_types::Text, _>(target)
        .execute(c)
        .map_err(|e| BackupError::Failed(e.to_string()))?;
    std::fs::metadata(dest)
        .map(|m| m.len())
        .map_err(|e| BackupError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_refuses_to_overwrite_and_postgres() {
        let dir = std::env::temp_dir().join(format!("scimhub-backup-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let db = dir.join("hub.db");
        let url = format!("sqlite://{}", db.display());
        let store = crate::store::Store::open(&url).expect("open");
        drop(store);
        let copy = dir.join("copy.db");
        let n = backup_sqlite(&url, &copy).expect("backup");
        assert!(n > 0);
        assert!(matches!(
            backup_sqlite(&url, &copy),
            Err(BackupError::Exists(_))
        ));
        assert!(matches!(
            backup_sqlite("postgres://u@h/db", &dir.join("x")),
            Err(BackupError::Postgres)
        ));
        assert!(matches!(
            backup_sqlite(
                &format!("sqlite://{}", dir.join("none.db").display()),
                &dir.join("y")
            ),
            Err(BackupError::NoDatabase(_))
        ));
        // The copy is a database at the current schema.
        assert!(pending_migrations(&format!("sqlite://{}", copy.display()))
            .expect("pending")
            .is_empty());
        let fresh = format!("sqlite://{}", dir.join("fresh.db").display());
        assert!(!pending_migrations(&fresh).expect("pending").is_empty());
        assert!(!dir.join("fresh.db").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
