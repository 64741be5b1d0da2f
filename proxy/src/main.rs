//! `tollgate-proxy`: the gateway on Pingora. Loads the config snapshot from PostgreSQL (and
//! keeps it current), serves tenants' traffic and the admin endpoints.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use pingora_core::server::Server;
use pingora_core::server::configuration::ServerConf;
use pingora_core::services::listening::Service;
use tokio::sync::watch;
use tollgate_core::KeyPepper;
use tollgate_proxy::admin::AdminApp;
use tollgate_proxy::gateway::Gateway;
use tollgate_proxy::{LoaderSettings, SnapshotHandle, loader};

#[derive(Debug, Parser)]
#[command(name = "tollgate-proxy", version, about)]
struct Cli {
    /// PostgreSQL URL the config snapshot is loaded from.
    #[arg(long, env = "TOLLGATE_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Server pepper API keys are hashed under (hex, at least 32 bytes).
    #[arg(long, env = "TOLLGATE_KEY_PEPPER", hide_env_values = true)]
    key_pepper: String,
    /// Address for tenants' traffic.
    #[arg(long, env = "TOLLGATE_PROXY_LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
    /// Address of `/health` and `/ready`.
    #[arg(
        long,
        env = "TOLLGATE_PROXY_ADMIN_LISTEN",
        default_value = "0.0.0.0:9101"
    )]
    admin_listen: String,
    /// Worker threads; defaults to the number of cores.
    #[arg(long, env = "TOLLGATE_PROXY_THREADS")]
    threads: Option<usize>,
    /// Seconds in-flight requests get after SIGTERM (below Kubernetes' 30 s grace).
    #[arg(long, env = "TOLLGATE_PROXY_GRACE_SECONDS", default_value_t = 20)]
    grace_seconds: u64,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let pepper = KeyPepper::from_hex(&cli.key_pepper).context("TOLLGATE_KEY_PEPPER is invalid")?;
    let _: tokio_postgres::Config = cli
        .database_url
        .parse()
        .context("TOLLGATE_DATABASE_URL is not a valid PostgreSQL URL")?;
    if cli.check_config {
        eprintln!("configuration is valid");
        return Ok(());
    }
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let snapshot = Arc::new(SnapshotHandle::default());
    // The loader runs on its own small runtime: Pingora owns the main thread.
    let (_stop_loader, shutdown) = watch::channel(false);
    let loader_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the loader runtime")?;
    let (handle, settings) = (
        snapshot.clone(),
        LoaderSettings::new(cli.database_url.clone()),
    );
    std::thread::Builder::new()
        .name("config-loader".into())
        .spawn(move || loader_runtime.block_on(loader::run(settings, handle, shutdown)))
        .context("starting the loader thread")?;

    let conf = ServerConf {
        threads: cli.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        }),
        grace_period_seconds: Some(cli.grace_seconds),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(
        &server.configuration,
        Gateway::new(snapshot.clone(), Arc::new(pepper)),
    );
    proxy.add_tcp(&cli.listen);
    let mut admin = Service::new("admin".to_owned(), AdminApp::new(snapshot));
    admin.add_tcp(&cli.admin_listen);
    server.add_service(proxy);
    server.add_service(admin);
    tracing::info!(listen = %cli.listen, admin = %cli.admin_listen, "Gateway starting.");
    server.run_forever()
}
