//! The PostgreSQL schema as versioned migrations (refinery), applied by `tollgate-control-api
//! migrate` and by the test support crate when it builds its template database.
//!
//! Migrations run in one transaction under an advisory lock, so two `migrate` jobs started
//! together (a Helm hook retried, two replicas) apply each migration exactly once.

use std::hash::{DefaultHasher, Hash, Hasher};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The channel the config-table trigger NOTIFYs on every insert, update and delete.
pub const CONFIG_CHANNEL: &str = "tollgate_config";

/// Advisory lock key held while migrating ("tollgate" in ASCII).
const MIGRATION_LOCK: i64 = 0x746f_6c6c_6761_7465;

/// A migration run failed; the transaction was rolled back.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Taking or releasing the advisory lock failed.
    #[error("could not lock the database for migration: {0}")]
    Lock(#[from] tokio_postgres::Error),
    /// A migration failed, or the applied history diverges from this build's.
    #[error(transparent)]
    Migration(#[from] refinery::Error),
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Migrations applied by this run, as `V<version>__<name>`.
    pub applied: Vec<String>,
    /// Latest version known to this build.
    pub latest_version: i32,
}

/// Applies every pending migration. Running it on an up-to-date database changes nothing.
pub async fn run(client: &mut tokio_postgres::Client) -> Result<MigrationReport, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = embedded::migrations::runner()
        .set_grouped(true)
        .run_async(client)
        .await;
    // Release even when the run failed; the session ending would release it too.
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = result?;
    Ok(MigrationReport {
        applied: report
            .applied_migrations()
            .iter()
            .map(ToString::to_string)
            .collect(),
        latest_version: latest_version(),
    })
}

/// The highest migration version in this build.
pub fn latest_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// A fingerprint of every migration's name and contents: equal fingerprints mean equal schemas.
pub fn fingerprint() -> u64 {
    let mut hasher = DefaultHasher::new();
    for migration in embedded::migrations::runner().get_migrations() {
        migration.version().hash(&mut hasher);
        migration.name().hash(&mut hasher);
        migration.checksum().hash(&mut hasher);
    }
    hasher.finish()
}
