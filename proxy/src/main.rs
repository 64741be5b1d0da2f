//! `tollgate-proxy`: the gateway on Pingora. Loads the config snapshot from PostgreSQL (and
//! keeps it current), serves tenants' traffic and the admin endpoints.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use pingora_proxy::HttpProxy;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tollgate_core::{KeyPepper, UpstreamPolicy};
use tollgate_proxy::admin::{AdminApp, DrainWatcher, Draining, TrafficListener};
use tollgate_proxy::connections::{ClientGuard, ConnectionMetrics, ConnectionSettings};
use tollgate_proxy::gateway::{Gateway, GatewaySettings};
use tollgate_proxy::limits::{Limiter, LimiterSettings, SyncSettings, run_sync};
use tollgate_proxy::metrics::GatewayMetrics;
use tollgate_proxy::usage::{UsageConfig, UsageMetrics, UsagePipeline};
use tollgate_proxy::{LoaderMetrics, LoaderSettings, SnapshotHandle, declarative, loader};

/// Peers whose forwarding headers are believed.
const ENV_TRUSTED_PROXIES: &str = "TOLLGATE_PROXY_TRUSTED_PROXIES";

#[derive(Debug, Parser)]
#[command(name = "tollgate-proxy", version, about)]
struct Cli {
    /// PostgreSQL URL the config snapshot is loaded from.
    #[arg(long, env = "TOLLGATE_DATABASE_URL", hide_env_values = true,
          required_unless_present_any = ["config_file", "hash_key"], conflicts_with = "config_file")]
    database_url: Option<String>,
    /// DB-less mode: load the config snapshot from this YAML file (reloaded on change).
    #[arg(long, env = "TOLLGATE_PROXY_CONFIG_FILE")]
    config_file: Option<std::path::PathBuf>,
    /// Read an API key from stdin, print its hash under the pepper (for DB-less files), exit.
    #[arg(long)]
    hash_key: bool,
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
    /// Redis for cluster-wide limits (`redis://…`); without it, limits are per node.
    #[arg(long, env = "TOLLGATE_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Prefix of the limiter's Redis keys.
    #[arg(long, env = "TOLLGATE_REDIS_KEY_PREFIX", default_value = "tollgate:")]
    redis_key_prefix: String,
    /// Proxy replicas sharing the limits; each falls back to `rate ÷ replicas` without Redis.
    #[arg(long, env = "TOLLGATE_PROXY_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    replicas: u32,
    /// Milliseconds between flushes of local admissions to Redis.
    #[arg(long, env = "TOLLGATE_LIMIT_SYNC_MS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    limit_sync_ms: u64,
    /// Deadline of a Redis flush or strict decision, milliseconds.
    #[arg(long, env = "TOLLGATE_REDIS_TIMEOUT_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    redis_timeout_ms: u64,
    /// Largest request head (request line + headers) in bytes; larger ones get 431.
    #[arg(long, env = "TOLLGATE_PROXY_MAX_HEADER_BYTES", default_value_t = 32 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=1_000_000))]
    max_header_bytes: u64,
    /// Failed authentications per second from one address before its requests are refused
    /// unchecked (429).
    #[arg(long, env = "TOLLGATE_PROXY_FLOOD_THRESHOLD", default_value_t = 100)]
    flood_threshold: u32,
    /// Milliseconds from the first byte of a request head to its end; a slower head gets 408
    /// and the connection closes.
    #[arg(long, env = "TOLLGATE_PROXY_HEAD_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    head_timeout_ms: u64,
    /// Seconds a connection may wait for its (next) request before it is closed.
    #[arg(long, env = "TOLLGATE_PROXY_IDLE_TIMEOUT_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    idle_timeout_seconds: u64,
    /// Open connections one client address may hold (0: no limit); more are answered 429.
    /// Trusted proxies are exempt.
    #[arg(
        long,
        env = "TOLLGATE_PROXY_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    max_connections_per_address: u32,
    /// Peers (comma-separated CIDRs, e.g. the ingress) whose `X-Forwarded-For` names the
    /// client; everyone else's forwarding headers are replaced.
    #[arg(long, env = ENV_TRUSTED_PROXIES, default_value = "")]
    trusted_proxies: String,
    /// This instance's name in usage events; defaults to the host name.
    #[arg(long, env = "TOLLGATE_PROXY_INSTANCE")]
    instance: Option<String>,
    /// Kafka bootstrap servers usage events are produced to (required unless usage events
    /// are disabled).
    #[arg(long, env = "TOLLGATE_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Produce no usage events at all (no Kafka, no spool): for benchmarks and deployments
    /// that do not meter. Nothing is billed for requests served this way.
    #[arg(long, env = "TOLLGATE_USAGE_DISABLED")]
    usage_disabled: bool,
    /// Topic of usage events.
    #[arg(long, env = "TOLLGATE_USAGE_TOPIC", default_value = "usage-events")]
    usage_topic: String,
    /// Directory of the usage spool (events kept while Kafka is unreachable).
    #[arg(
        long,
        env = "TOLLGATE_USAGE_SPOOL_DIR",
        default_value = "/var/lib/tollgate/usage-spool"
    )]
    usage_spool_dir: std::path::PathBuf,
    /// Largest size of the usage spool in bytes; beyond it events are dropped and counted.
    #[arg(long, env = "TOLLGATE_USAGE_SPOOL_MAX_BYTES", default_value_t = 1 << 30)]
    usage_spool_max_bytes: u64,
    /// Compression of produced usage events: lz4, snappy, gzip or none.
    #[arg(long, env = "TOLLGATE_USAGE_COMPRESSION", default_value = "lz4")]
    usage_compression: String,
    /// Milliseconds librdkafka waits to fill a batch of usage events (`linger.ms`).
    #[arg(long, env = "TOLLGATE_USAGE_LINGER_MS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=1_000))]
    usage_linger_ms: u32,
    /// Seconds the usage pipeline gets at shutdown to deliver what it holds before spooling it.
    #[arg(long, env = "TOLLGATE_USAGE_FLUSH_SECONDS", default_value_t = 5)]
    usage_flush_seconds: u64,
    /// Milliseconds Kafka may acknowledge nothing before usage events go to the spool instead
    /// of waiting in memory: what a hard crash can lose while the broker is stalled.
    #[arg(long, env = "TOLLGATE_USAGE_STALL_MS", default_value_t = 500)]
    usage_stall_ms: u32,
    /// Internal networks (comma-separated CIDRs) upstreams may be in; loopback, private and
    /// link-local addresses are refused otherwise.
    #[arg(long, env = tollgate_core::ENV_UPSTREAM_ALLOW_NETWORKS, default_value = "")]
    upstream_allow_networks: String,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

/// mimalloc: glibc's malloc took 17 % of the proxy's CPU under load (perf), on the many small,
/// short-lived allocations of the request path; with mimalloc a proxied request costs 11 %
/// less CPU (load test (c)), for some more RSS (README, "Load tests").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let pepper = KeyPepper::from_hex(&cli.key_pepper).context("TOLLGATE_KEY_PEPPER is invalid")?;
    if cli.hash_key {
        return print_key_hash(&pepper);
    }
    let upstream_policy = UpstreamPolicy::parse(&cli.upstream_allow_networks)?;
    let trusted_proxies = tollgate_core::parse_networks(ENV_TRUSTED_PROXIES, &cli.trusted_proxies)?;
    let source = match (&cli.database_url, &cli.config_file) {
        (Some(url), _) => {
            let _: tokio_postgres::Config = url
                .parse()
                .context("TOLLGATE_DATABASE_URL is not a valid PostgreSQL URL")?;
            ConfigSource::Database(url.clone())
        }
        (None, Some(path)) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a runtime to check the config file")?;
            runtime
                .block_on(declarative::load_file(path, &upstream_policy))
                .context("TOLLGATE_PROXY_CONFIG_FILE is invalid")?;
            ConfigSource::File(path.clone())
        }
        (None, None) => anyhow::bail!("set TOLLGATE_DATABASE_URL or TOLLGATE_PROXY_CONFIG_FILE"),
    };
    if let Some(url) = &cli.redis_url {
        redis::Client::open(url.as_str()).context("TOLLGATE_REDIS_URL is not a valid Redis URL")?;
    }
    let usage_config = match (cli.usage_disabled, &cli.kafka_brokers) {
        (true, Some(_)) => anyhow::bail!(
            "TOLLGATE_KAFKA_BROKERS is set but TOLLGATE_USAGE_DISABLED switches usage events off: \
             unset one of them"
        ),
        (true, None) => None,
        (false, None) => anyhow::bail!(
            "set TOLLGATE_KAFKA_BROKERS, or TOLLGATE_USAGE_DISABLED=true to run without usage events"
        ),
        (false, Some(brokers)) => {
            let config = UsageConfig {
                topic: cli.usage_topic.clone(),
                spool_max_bytes: cli.usage_spool_max_bytes,
                compression: cli.usage_compression.clone(),
                stall_ms: cli.usage_stall_ms,
                linger_ms: cli.usage_linger_ms,
                ..UsageConfig::new(brokers.clone(), cli.usage_spool_dir.clone())
            };
            config.validate()?;
            Some(config)
        }
    };
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
    // Background work runs on small runtimes of its own: Pingora owns the main thread.
    let (stop_background, shutdown) = watch::channel(false);
    let loader_metrics = LoaderMetrics::default();
    let loader_thread = spawn_service("config-loader", {
        let (snapshot, shutdown, metrics) =
            (snapshot.clone(), shutdown.clone(), loader_metrics.clone());
        async move {
            match source {
                ConfigSource::Database(url) => {
                    let settings = LoaderSettings {
                        upstream_policy,
                        metrics,
                        ..LoaderSettings::new(url)
                    };
                    loader::run(settings, snapshot, shutdown).await;
                }
                ConfigSource::File(path) => {
                    declarative::run(path, upstream_policy, snapshot, shutdown).await;
                }
            }
        }
    })?;
    let limiter = Arc::new(Limiter::new(LimiterSettings {
        replicas: cli.replicas,
        cluster: cli.redis_url.is_some(),
    }));
    let sync = cli.redis_url.clone().map(|url| SyncSettings {
        key_prefix: cli.redis_key_prefix.clone(),
        interval: Duration::from_millis(cli.limit_sync_ms),
        timeout: Duration::from_millis(cli.redis_timeout_ms),
        ..SyncSettings::new(url)
    });
    let limiter_thread = spawn_service("limiter-sync", {
        let (limiter, shutdown) = (limiter.clone(), shutdown.clone());
        async move { run_sync(limiter, sync, shutdown).await }
    })?;

    let usage = usage_config
        .map(|config| UsagePipeline::start(config, UsageMetrics::default()))
        .transpose()
        .context("starting the usage-event pipeline")?;
    if usage.is_none() {
        tracing::warn!("Usage events are disabled: requests are not metered.");
    }

    let metrics = Arc::new(GatewayMetrics::default());
    let connection_metrics = Arc::new(ConnectionMetrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    connection_metrics.register(&mut registry);
    limiter.metrics().register(&mut registry);
    loader_metrics.register(&mut registry);
    if let Some(usage) = &usage {
        usage.metrics().register(&mut registry);
    }
    let draining = Arc::new(Draining::default());
    let instance = cli
        .instance
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "tollgate-proxy".to_owned());

    let conf = ServerConf {
        threads: cli.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        }),
        // One current-thread runtime per worker thread, as nginx has one event loop per
        // worker: Pingora's default (work stealing) builds a multi-thread runtime, even for one
        // thread, whose wake-ups cross threads (docs/architecture.md, "Proxy cost").
        work_stealing: false,
        grace_period_seconds: Some(cli.grace_seconds),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let max_header_bytes = usize::try_from(cli.max_header_bytes).unwrap_or(usize::MAX);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let gateway = Gateway::new(
        snapshot.clone(),
        Arc::new(pepper),
        limiter,
        metrics.clone(),
        usage.as_ref().map(UsagePipeline::sink),
        GatewaySettings {
            max_header_bytes,
            flood_threshold: cli.flood_threshold,
            instance: Arc::from(instance),
            trusted_proxies: trusted_proxies.clone(),
            keepalive_seconds: cli.idle_timeout_seconds,
        },
    );
    let mut proxy = HttpProxy::new(gateway, server.configuration.clone());
    proxy.handle_init_modules();
    // Request heads are read under a deadline and counted per address before Pingora parses
    // them (see `connections`).
    let guarded = ClientGuard::new(
        Arc::new(proxy),
        ConnectionSettings {
            head_timeout: Duration::from_millis(cli.head_timeout_ms),
            idle_timeout: Duration::from_secs(cli.idle_timeout_seconds),
            max_per_address: cli.max_connections_per_address,
            max_head_bytes: max_header_bytes,
            trusted_proxies,
        },
        connection_metrics,
    );
    let mut proxy = Service::new("gateway".to_owned(), guarded);
    proxy.add_tcp(&cli.listen);
    let mut admin = Service::new(
        "admin".to_owned(),
        AdminApp::new(
            snapshot,
            draining.clone(),
            Arc::new(registry),
            metrics,
            TrafficListener::new(&cli.listen),
        ),
    );
    admin.add_tcp(&cli.admin_listen);
    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(background_service("drain watcher", DrainWatcher(draining)));
    tracing::info!(listen = %cli.listen, admin = %cli.admin_listen, "Gateway starting.");
    server.run(RunArgs::default());

    // In-flight requests are done: deliver (or spool) their usage events, then stop the
    // background services, which flush what they hold.
    if let Some(usage) = usage {
        usage.shutdown(Duration::from_secs(cli.usage_flush_seconds));
    }
    let _ = stop_background.send(true);
    for thread in [limiter_thread, loader_thread] {
        let _ = thread.join();
    }
    tracing::info!("Gateway stopped.");
    Ok(())
}

/// Where the config snapshot comes from.
enum ConfigSource {
    Database(String),
    File(std::path::PathBuf),
}

fn print_key_hash(pepper: &KeyPepper) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the key from stdin")?;
    let key = tollgate_core::ApiKey::parse(line.trim()).context("not an API key")?;
    let hex = tollgate_core::hex::encode(key.hash(pepper).as_bytes());
    writeln!(std::io::stdout(), "id: {}\nhash: {hex}", key.id().as_str())?;
    Ok(())
}

/// Runs `service` to completion on a current-thread runtime in a thread of its own.
fn spawn_service<F>(name: &str, service: F) -> anyhow::Result<std::thread::JoinHandle<()>>
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .with_context(|| format!("starting the {name} runtime"))?;
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || runtime.block_on(service))
        .with_context(|| format!("starting the {name} thread"))
}
