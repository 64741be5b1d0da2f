//! Keeps the [`SnapshotHandle`] current from PostgreSQL.
//!
//! The loader LISTENs on the config channel *before* reading, so no change can fall between
//! the read and the subscription; every notification (debounced briefly, so a bulk change
//! costs one reload) and a periodic timer trigger a full, consistent reload in one
//! repeatable-read transaction. When PostgreSQL is unreachable the last good snapshot keeps
//! serving and the loader reconnects with capped backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tollgate_core::migrations::CONFIG_CHANNEL;
use tollgate_core::plan::PlanSpec;
use tollgate_core::{
    FailureMode, KeyHash, KeyId, Plan, PlanId, Pricing, Quota, QuotaCap, RatePolicy, RouteId,
    TenantId,
};
use uuid::Uuid;

use crate::jwt::JwtIssuer;
use crate::snapshot::{
    ConfigSnapshot, JwtIssuerConfig, KeyRecord, RouteConfig, SnapshotHandle, TenantConfig,
    TenantStatus,
};

/// Loading failed; the previous snapshot stays in place.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// PostgreSQL could not be reached or a query failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The connection carrying notifications ended.
    #[error("the config notification connection was lost")]
    ConnectionLost,
}

/// How the loader behaves.
#[derive(Debug, Clone)]
pub struct LoaderSettings {
    /// PostgreSQL URL.
    pub database_url: String,
    /// Full reload even without notifications (a safety net for missed ones).
    pub full_reload_every: Duration,
    /// Notifications arriving within this window are handled by one reload.
    pub debounce: Duration,
}

impl LoaderSettings {
    /// Defaults: a full reload every 30 s, 20 ms debounce.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            full_reload_every: Duration::from_secs(30),
            debounce: Duration::from_millis(20),
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Keeps `handle` current until `shutdown` turns true.
pub async fn run(
    settings: LoaderSettings,
    handle: Arc<SnapshotHandle>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_START;
    loop {
        match follow(&settings, &handle, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis(),
                    "Config source unavailable; serving the last snapshot.");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(&mut shutdown) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection's life: listen, load, reload on notifications. `Ok` only on shutdown.
async fn follow(
    settings: &LoaderSettings,
    handle: &SnapshotHandle,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), LoadError> {
    let mut config: tokio_postgres::Config = settings.database_url.parse()?;
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .application_name("tollgate-proxy");
    let (mut client, mut connection) = config.connect(NoTls).await?;
    let (notify, mut notifications) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if notify.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "Config connection failed.");
                    return;
                }
            }
        }
    });
    let result = async {
        client
            .batch_execute(&format!("LISTEN {CONFIG_CHANNEL}"))
            .await?;
        reload(&mut client, handle).await?;
        let mut timer = tokio::time::interval(settings.full_reload_every);
        timer.tick().await;
        loop {
            tokio::select! {
                received = notifications.recv() => {
                    if received.is_none() {
                        // The connection ended; reconnect.
                        return Err(LoadError::ConnectionLost);
                    }
                    tokio::time::sleep(settings.debounce).await;
                    while notifications.try_recv().is_ok() {}
                    reload(&mut client, handle).await?;
                }
                _ = timer.tick() => reload(&mut client, handle).await?,
                () = stopped(shutdown) => return Ok(()),
            }
        }
    }
    .await;
    driver.abort();
    result
}

/// Resolves once shutdown is signalled (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it here, not in the caller's select.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn reload(client: &mut Client, handle: &SnapshotHandle) -> Result<(), LoadError> {
    let started = std::time::Instant::now();
    let snapshot = load_snapshot(client).await?;
    let (tenants, keys) = (snapshot.tenants.len(), snapshot.keys.len());
    handle.store(snapshot);
    tracing::debug!(
        tenants,
        keys,
        elapsed_ms = started.elapsed().as_millis(),
        "Config snapshot loaded."
    );
    Ok(())
}

/// Reads the whole configuration in one consistent (repeatable-read) transaction.
pub async fn load_snapshot(client: &mut Client) -> Result<ConfigSnapshot, LoadError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut snapshot = ConfigSnapshot::default();

    for row in tx
        .query(
            "SELECT id, name, rate_per_second, burst, quota_included_requests, quota_cap, \
                    failure_mode, pricing, rate_strict FROM plans",
            &[],
        )
        .await?
    {
        let id: Uuid = row.get(0);
        match plan_from_row(&row) {
            Ok(plan) => {
                snapshot.plans.insert(PlanId::from_uuid(id), Arc::new(plan));
            }
            Err(message) => tracing::error!(plan_id = %id, %message, "Plan skipped: invalid."),
        }
    }

    // Tenants and keys may number in the hundreds of thousands: their maps are sized once
    // (growing them leaves the outgrown tables behind in the allocator) and their rows are
    // streamed in instead of being collected first, which would double the memory peak.
    let counts = tx
        .query_one(
            "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM api_keys)",
            &[],
        )
        .await?;
    let capacity = |column| usize::try_from(counts.get::<_, i64>(column)).unwrap_or(0);
    snapshot.tenants.reserve(capacity(0));
    snapshot.keys.reserve(capacity(1));
    let tenants = stream(
        &tx,
        // The view picks the subscription in force now, as the control API and invoicing do.
        "SELECT t.id, t.slug, t.status, s.plan_id FROM tenants t \
         LEFT JOIN current_subscriptions s ON s.tenant_id = t.id",
    )
    .await?;
    futures_util::pin_mut!(tenants);
    while let Some(row) = tenants.next().await.transpose()? {
        let id: Uuid = row.get(0);
        let status: &str = row.get(2);
        let plan = row
            .get::<_, Option<Uuid>>(3)
            .and_then(|plan| snapshot.plans.get(&PlanId::from_uuid(plan)))
            .cloned();
        snapshot.tenants.insert(
            TenantId::from_uuid(id),
            TenantConfig {
                id: TenantId::from_uuid(id),
                slug: row.get(1),
                status: if status == "active" {
                    TenantStatus::Active
                } else {
                    TenantStatus::Suspended
                },
                plan,
            },
        );
    }

    let keys = stream(
        &tx,
        "SELECT id, tenant_id, secret_hmac, status, scopes, expires_at FROM api_keys",
    )
    .await?;
    futures_util::pin_mut!(keys);
    while let Some(row) = keys.next().await.transpose()? {
        let id: &str = row.get(0);
        let (Ok(key_id), Some(hash)) = (KeyId::parse(id), KeyHash::from_slice(row.get(2))) else {
            tracing::error!(key_id = id, "API key skipped: malformed id or hash.");
            continue;
        };
        let status: &str = row.get(3);
        snapshot.keys.insert(
            key_id,
            KeyRecord {
                id: key_id,
                tenant_id: TenantId::from_uuid(row.get(1)),
                hash,
                active: status == "active",
                scopes: row.get(4),
                expires_at: row.get::<_, Option<OffsetDateTime>>(5),
            },
        );
    }

    let mut routes = Vec::new();
    for row in tx
        .query(
            "SELECT id, tenant_id, host, path_prefix, strip_prefix, upstreams, connect_timeout_ms, \
                    read_timeout_ms, retries, max_body_bytes, required_scope FROM routes",
            &[],
        )
        .await?
    {
        let route = RouteConfig {
            id: RouteId::from_uuid(row.get(0)),
            tenant_id: TenantId::from_uuid(row.get(1)),
            host: row.get(2),
            path_prefix: row.get(3),
            strip_prefix: row.get(4),
            upstreams: row.get(5),
            upstream_addrs: Vec::new(),
            connect_timeout_ms: u32::try_from(row.get::<_, i32>(6)).unwrap_or(2000),
            read_timeout_ms: u32::try_from(row.get::<_, i32>(7)).unwrap_or(30_000),
            retries: u8::try_from(row.get::<_, i16>(8)).unwrap_or(0),
            max_body_bytes: u64::try_from(row.get::<_, i64>(9)).unwrap_or(0),
            required_scope: row.get(10),
        };
        routes.push(route);
    }

    for row in tx
        .query(
            "SELECT tenant_id, issuer, audience, algorithm, key_material FROM jwt_issuers",
            &[],
        )
        .await?
    {
        let config = JwtIssuerConfig {
            tenant_id: TenantId::from_uuid(row.get(0)),
            issuer: row.get(1),
            audience: row.get(2),
            algorithm: row.get(3),
            key_material: row.get(4),
        };
        // A bad row costs its issuer only; the error never carries the key material.
        match JwtIssuer::prepare(&config) {
            Ok(issuer) => {
                snapshot.issuers.insert(issuer);
            }
            Err(error) => tracing::warn!(
                tenant_id = %config.tenant_id,
                issuer = %config.issuer,
                audience = %config.audience,
                %error,
                "JWT issuer skipped: invalid."
            ),
        }
    }
    tx.commit().await?;
    // Outside the transaction: name resolution may take a while.
    let mut resolved = HashMap::new();
    for mut route in routes {
        for upstream in &route.upstreams {
            if !resolved.contains_key(upstream) {
                let addrs = resolve_upstream(upstream).await;
                resolved.insert(upstream.clone(), addrs);
            }
            route
                .upstream_addrs
                .extend(resolved.get(upstream).into_iter().flatten().copied());
        }
        snapshot
            .routes
            .entry(route.tenant_id)
            .or_default()
            .push(Arc::new(route));
    }
    snapshot
        .routes
        .values_mut()
        .for_each(|routes| order_routes(routes));
    Ok(snapshot)
}

/// The rows of a parameterless query, as they arrive.
async fn stream(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
) -> Result<tokio_postgres::RowStream, tokio_postgres::Error> {
    tx.query_raw(
        sql,
        std::iter::empty::<&(dyn tokio_postgres::types::ToSql + Sync)>(),
    )
    .await
}

/// Most specific first: a longer prefix, then a route bound to a host.
pub(crate) fn order_routes(routes: &mut [Arc<RouteConfig>]) {
    routes.sort_by(|a, b| {
        b.path_prefix
            .len()
            .cmp(&a.path_prefix.len())
            .then(b.host.is_some().cmp(&a.host.is_some()))
    });
}

/// Resolves `host:port` (optionally `http://host:port`). An upstream that does not resolve
/// within 2 s, or asks for TLS (not built in), is left out with a warning; a route left with
/// none answers 502.
pub(crate) async fn resolve_upstream(upstream: &str) -> Vec<std::net::SocketAddr> {
    if upstream.starts_with("https://") {
        tracing::warn!(
            upstream,
            "TLS to upstreams is not supported by this build; skipped."
        );
        return Vec::new();
    }
    let target = upstream.strip_prefix("http://").unwrap_or(upstream);
    let target = target.strip_suffix('/').unwrap_or(target);
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host(target)).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(error)) => {
            tracing::warn!(upstream, %error, "Upstream does not resolve; skipped.");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!(upstream, "Resolving the upstream timed out; skipped.");
            Vec::new()
        }
    }
}

fn plan_from_row(row: &tokio_postgres::Row) -> Result<Plan, String> {
    let rate = RatePolicy {
        requests_per_second: u32::try_from(row.get::<_, i32>(2)).map_err(|e| e.to_string())?,
        burst: u32::try_from(row.get::<_, i32>(3)).map_err(|e| e.to_string())?,
        strict: row.get(8),
    };
    let quota = match (row.get::<_, Option<i64>>(4), row.get::<_, Option<&str>>(5)) {
        (Some(included), Some(cap)) => Some(Quota {
            included_requests: u64::try_from(included).map_err(|e| e.to_string())?,
            cap: if cap == "hard" {
                QuotaCap::Hard
            } else {
                QuotaCap::Soft
            },
        }),
        _ => None,
    };
    let failure_mode = match row.get::<_, &str>(6) {
        "closed" => FailureMode::Closed,
        _ => FailureMode::Open,
    };
    let pricing: Pricing =
        serde_json::from_value(row.get::<_, serde_json::Value>(7)).map_err(|e| e.to_string())?;
    Plan::new(PlanSpec {
        id: PlanId::from_uuid(row.get(0)),
        name: row.get(1),
        rate,
        quota,
        failure_mode,
        pricing,
    })
    .map_err(|e| e.to_string())
}
