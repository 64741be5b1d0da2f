//! `tollgate-metering`: runs the aggregator, storage upkeep and the admin endpoints until
//! SIGTERM or Ctrl-C, then finishes the batch in hand and leaves the consumer group cleanly.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;
use tollgate_metering::service::run_storage_upkeep;
use tollgate_metering::{Aggregator, Exit, Health, MeteringConfig, Metrics, admin};

#[derive(Debug, Parser)]
#[command(name = "tollgate-metering", version, about)]
struct Cli {
    /// TOML configuration file; `TOLLGATE_*` environment variables override it.
    #[arg(long, env = "TOLLGATE_METERING_CONFIG")]
    config: Option<String>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = MeteringConfig::load(cli.config.as_deref(), |key| std::env::var(key).ok())
        .context("invalid configuration")?;
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
        .with_current_span(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("metering")
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: MeteringConfig) -> anyhow::Result<()> {
    let (stop, shutdown) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(config.unassigned_grace()));

    let listener = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("admin_listen: cannot bind {}", config.admin_listen))?;
    tracing::info!(address = %config.admin_listen, "Admin endpoints listening.");
    tokio::spawn(admin::serve(
        listener,
        health.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(run_storage_upkeep(config.clone(), shutdown.clone()));
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutdown requested.");
        let _ = stop.send(true);
    });

    match Aggregator::new(config, metrics, health)
        .run(shutdown)
        .await?
    {
        Exit::Shutdown | Exit::Crashed => tracing::info!("Stopped."),
    }
    Ok(())
}

async fn wait_for_signal() {
    let mut terminate = match tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    ) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::error!(error = %e, "Cannot listen for SIGTERM; only Ctrl-C stops the service.");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
