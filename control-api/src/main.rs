//! `tollgate-control-api`: the control plane's command-line entry point.
//!
//! For now it administers the database: `migrate` applies the schema and `seed-demo` creates
//! the demo tenant, plan and API key that `make up` hands to the user. The REST API arrives
//! with its own issue.

mod db;
mod demo;

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tollgate_core::KeyPepper;

/// Environment variable holding the PostgreSQL URL.
const ENV_DATABASE_URL: &str = "TOLLGATE_DATABASE_URL";
/// Environment variable holding the API key pepper (hex, at least 32 bytes).
const ENV_KEY_PEPPER: &str = "TOLLGATE_KEY_PEPPER";

#[derive(Debug, Parser)]
#[command(name = "tollgate-control-api", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations; a no-op on an up-to-date database.
    Migrate {
        /// PostgreSQL connection URL.
        #[arg(long, env = ENV_DATABASE_URL, hide_env_values = true)]
        database_url: String,
    },
    /// Create (or update) the demo tenant, plan and subscription, and print a working API key.
    SeedDemo {
        /// PostgreSQL connection URL.
        #[arg(long, env = ENV_DATABASE_URL, hide_env_values = true)]
        database_url: String,
        /// Server pepper that API keys are hashed under (hex, at least 32 bytes).
        #[arg(long, env = ENV_KEY_PEPPER, hide_env_values = true)]
        key_pepper: String,
        /// A demo key printed by an earlier run: reused if it still works, so `make up` is
        /// idempotent and does not mint a new key every time.
        #[arg(long, env = "TOLLGATE_DEMO_API_KEY", hide_env_values = true)]
        reuse_key: Option<String>,
        /// `host:port` the demo tenant's catch-all route forwards to.
        #[arg(
            long,
            env = "TOLLGATE_DEMO_UPSTREAM",
            default_value = "127.0.0.1:58090"
        )]
        upstream: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Migrate { database_url } => {
            let mut client = db::connect(&database_url, ENV_DATABASE_URL).await?;
            let report = tollgate_core::migrations::run(&mut client)
                .await
                .context("migrating the database")?;
            eprintln!(
                "applied {} migration(s); schema is at version {}",
                report.applied.len(),
                report.latest_version
            );
            for name in report.applied {
                eprintln!("  applied {name}");
            }
        }
        Command::SeedDemo {
            database_url,
            key_pepper,
            reuse_key,
            upstream,
        } => {
            let pepper = KeyPepper::from_hex(&key_pepper)
                .with_context(|| format!("{ENV_KEY_PEPPER} is invalid"))?;
            let mut client = db::connect(&database_url, ENV_DATABASE_URL).await?;
            let seeded = demo::seed(&mut client, &pepper, reuse_key.as_deref(), &upstream).await?;
            eprintln!(
                "demo tenant {} on plan {:?}; API key {} ({})",
                seeded.tenant_id,
                seeded.plan_name,
                seeded.key.display_prefix(),
                if seeded.key_reused { "reused" } else { "new" },
            );
            // The key goes to stdout alone so scripts can capture it; it is never logged.
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", seeded.key.expose())?;
        }
    }
    Ok(())
}
