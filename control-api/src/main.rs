//! `tollgate-control-api`: the control plane's command-line entry point.
//!
//! `serve` runs the REST API; `migrate` applies the schema; `seed-demo` creates the demo
//! tenant, plan and API key and `create-admin` the platform admin that `make up` hands to the
//! user.

mod admin_account;
mod db;
mod demo;

use std::io::Write;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tollgate_control_api::config::{
    CorsOrigins, ENV_CORS_ORIGINS, ENV_JWT_SECRET, ENV_KEY_ENV, JwtSecret, WebhookSecret,
    parse_key_env,
};
use tollgate_control_api::ops;
use tollgate_control_api::pool::{self, PoolSettings};
use tollgate_control_api::resources::webhooks::ENV_STRIPE_WEBHOOK_SECRET;
use tollgate_control_api::{AppState, ServiceConfig, build_app};
use tollgate_core::{KeyPepper, UpstreamPolicy};

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

/// Settings of `serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = ENV_DATABASE_URL, hide_env_values = true)]
    database_url: String,
    /// Server pepper that API keys are hashed under (hex, at least 32 bytes).
    #[arg(long, env = ENV_KEY_PEPPER, hide_env_values = true)]
    key_pepper: String,
    /// Secret that access tokens are signed with: hex, or raw text; at least 32 bytes.
    #[arg(long, env = ENV_JWT_SECRET, hide_env_values = true)]
    jwt_secret: String,
    /// Address to listen on.
    #[arg(
        long,
        env = "TOLLGATE_CONTROL_API_LISTEN",
        default_value = "0.0.0.0:8081"
    )]
    listen: String,
    /// Address of the admin listener (`/metrics`, `/health`, `/ready`), kept off the public
    /// port.
    #[arg(
        long,
        env = "TOLLGATE_CONTROL_API_ADMIN_LISTEN",
        default_value = "0.0.0.0:9103"
    )]
    admin_listen: String,
    /// Browser origins allowed to call the API: comma-separated, `*`, or empty for none.
    #[arg(long, env = ENV_CORS_ORIGINS, default_value = "")]
    cors_origins: String,
    /// Environment tag of minted API keys (`live` or `test`).
    #[arg(long, env = ENV_KEY_ENV, default_value = "live")]
    key_env: String,
    /// Most PostgreSQL connections.
    #[arg(long, env = "TOLLGATE_CONTROL_API_DB_CONNECTIONS", default_value_t = 8)]
    db_connections: usize,
    /// Stripe's webhook signing secret (`whsec_…`); unset, the webhook endpoint answers 503.
    #[arg(long, env = ENV_STRIPE_WEBHOOK_SECRET, hide_env_values = true)]
    stripe_webhook_secret: Option<String>,
    /// HTTP worker threads.
    #[arg(long, env = "TOLLGATE_CONTROL_API_WORKERS", default_value_t = 2)]
    workers: usize,
    /// Internal networks (comma-separated CIDRs) route upstreams may name; loopback, private
    /// and link-local upstreams are refused otherwise.
    #[arg(long, env = tollgate_core::ENV_UPSTREAM_ALLOW_NETWORKS, default_value = "")]
    upstream_allow_networks: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the REST API.
    Serve(ServeArgs),
    /// Create the platform admin, or keep it: prints a working password to stdout.
    CreateAdmin {
        /// PostgreSQL connection URL.
        #[arg(long, env = ENV_DATABASE_URL, hide_env_values = true)]
        database_url: String,
        /// The admin's email.
        #[arg(long, env = "TOLLGATE_ADMIN_EMAIL")]
        email: String,
        /// A password printed by an earlier run: kept if it still works, so `make up` is
        /// idempotent; otherwise a new one is generated.
        #[arg(long, env = "TOLLGATE_ADMIN_PASSWORD", hide_env_values = true)]
        reuse_password: Option<String>,
    },
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

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args).await?,
        Command::CreateAdmin {
            database_url,
            email,
            reuse_password,
        } => {
            let mut client = db::connect(&database_url, ENV_DATABASE_URL).await?;
            let account =
                admin_account::ensure_admin(&mut client, &email, reuse_password.as_deref()).await?;
            eprintln!(
                "platform admin {email} ({})",
                if account.reused {
                    "password kept"
                } else {
                    "new password"
                }
            );
            // The password goes to stdout alone so scripts can capture it; it is never logged.
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", account.password)?;
        }
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .init();
    let key_pepper = KeyPepper::from_hex(&args.key_pepper)
        .with_context(|| format!("{ENV_KEY_PEPPER} is invalid"))?;
    let mut config = ServiceConfig::new(JwtSecret::parse(&args.jwt_secret)?, key_pepper);
    config.cors_origins = CorsOrigins::parse(&args.cors_origins)?;
    config.key_env = parse_key_env(&args.key_env)?;
    config.upstream_policy = UpstreamPolicy::parse(&args.upstream_allow_networks)?;
    config.stripe_webhook_secret = args
        .stripe_webhook_secret
        .as_deref()
        .map(WebhookSecret::parse)
        .transpose()?;
    // The same TOLLGATE_S3_* settings the invoicing job stores documents with.
    config.documents =
        tollgate_invoicing::delivery::settings::document_store_from(|k| std::env::var(k).ok())?;
    let cors_origins = config.cors_origins.clone();
    let pool = pool::build(
        &args.database_url,
        ENV_DATABASE_URL,
        PoolSettings {
            max_connections: args.db_connections.max(1),
            ..PoolSettings::default()
        },
    )?;
    let state = actix_web::web::Data::new(AppState::new(config, pool.clone())?);
    tollgate_control_api::billing_metrics::spawn_refresher(state.metrics.clone(), pool);
    let admin_state = state.clone();
    let server = actix_web::HttpServer::new(move || build_app(state.clone(), cors_origins.clone()))
        .workers(args.workers.max(1))
        .bind(&args.listen)
        .with_context(|| format!("binding TOLLGATE_CONTROL_API_LISTEN={}", args.listen))?;
    // One worker is plenty for scrapes and probes.
    let admin = actix_web::HttpServer::new(move || ops::admin_app(admin_state.clone()))
        .workers(1)
        .bind(&args.admin_listen)
        .with_context(|| {
            format!(
                "binding TOLLGATE_CONTROL_API_ADMIN_LISTEN={}",
                args.admin_listen
            )
        })?;
    tracing::info!(listen = %args.listen, admin_listen = %args.admin_listen, "Control API listening.");
    // Both servers stop together on SIGTERM/SIGINT (actix handles the signals for each).
    let (served, admin_served) = tokio::join!(server.run(), admin.run());
    served.context("serving the control API")?;
    admin_served.context("serving the control API's admin endpoints")
}
