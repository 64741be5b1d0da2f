//! Keeps the [`SnapshotHandle`] current from PostgreSQL.
//!
//! The loader LISTENs on the config channel *before* reading, so no change can fall between
//! the read and the subscription; every notification (debounced briefly, so a bulk change
//! costs one reload) and a periodic timer trigger a full, consistent reload in one
//! repeatable-read transaction. When PostgreSQL is unreachable the last good snapshot keeps
//! serving and the loader reconnects with capped backoff.
//!
//! Rows are decoded strictly (plans through [`tollgate_core::PlanRow`], tenant status through
//! its `FromStr`): a row that cannot be decoded or used is left out of the snapshot with an
//! error log and a count in `gateway_snapshot_rows_skipped_total{kind}`, never read as a
//! permissive default. A left-out plan leaves its tenants without a plan (their requests are
//! refused), a left-out tenant leaves its keys refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tollgate_core::migrations::CONFIG_CHANNEL;
use tollgate_core::{
    KeyHash, KeyId, PLAN_COLUMNS, PlanId, PlanRow, RouteId, TenantId, UpstreamPolicy, UpstreamTls,
    VerifiedKey,
};
use uuid::Uuid;

use crate::jwt::JwtIssuer;
use crate::snapshot::{
    ConfigSnapshot, JwtIssuerConfig, KeyRecord, RouteConfig, SnapshotHandle, TenantConfig,
    TenantStatus,
};
use crate::upstreams;

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
    /// Which internal networks upstreams may resolve to (none by default).
    pub upstream_policy: UpstreamPolicy,
    /// Where skipped rows are counted.
    pub metrics: LoaderMetrics,
}

impl LoaderSettings {
    /// Defaults: a full reload every 30 s, 20 ms debounce.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            full_reload_every: Duration::from_secs(30),
            debounce: Duration::from_millis(20),
            upstream_policy: UpstreamPolicy::strict(),
            metrics: LoaderMetrics::default(),
        }
    }
}

/// The kinds of row a snapshot is built from: the `kind` label of skipped rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// A `plans` row.
    Plan,
    /// A `tenants` row.
    Tenant,
    /// An `api_keys` row.
    ApiKey,
    /// A `routes` row.
    Route,
    /// A `jwt_issuers` row.
    JwtIssuer,
}

impl RowKind {
    const ALL: [Self; 5] = [
        Self::Plan,
        Self::Tenant,
        Self::ApiKey,
        Self::Route,
        Self::JwtIssuer,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plan => "plan",
            Self::Tenant => "tenant",
            Self::ApiKey => "api_key",
            Self::Route => "route",
            Self::JwtIssuer => "jwt_issuer",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SkipLabels {
    kind: &'static str,
}

/// The loader's metrics; clones share their counters.
#[derive(Debug, Clone)]
pub struct LoaderMetrics {
    rows_skipped: Family<SkipLabels, Counter>,
}

impl Default for LoaderMetrics {
    /// Every kind starts at 0, so an alert on the counter sees the series before the first skip.
    fn default() -> Self {
        let rows_skipped = Family::<SkipLabels, Counter>::default();
        for kind in RowKind::ALL {
            // The family's guard is released at once.
            drop(rows_skipped.get_or_create(&SkipLabels {
                kind: kind.as_str(),
            }));
        }
        Self { rows_skipped }
    }
}

impl LoaderMetrics {
    /// Registers `gateway_snapshot_rows_skipped_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_snapshot_rows_skipped",
            "Rows left out of a config snapshot because they cannot be decoded or used, by kind; \
             every load counts a bad row again until it is fixed",
            self.rows_skipped.clone(),
        );
    }

    /// Rows of `kind` skipped so far.
    pub fn rows_skipped(&self, kind: RowKind) -> u64 {
        self.rows_skipped
            .get_or_create(&SkipLabels {
                kind: kind.as_str(),
            })
            .get()
    }

    fn skipped(&self, kind: RowKind) {
        self.rows_skipped
            .get_or_create(&SkipLabels {
                kind: kind.as_str(),
            })
            .inc();
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
        reload(&mut client, handle, settings).await?;
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
                    reload(&mut client, handle, settings).await?;
                }
                _ = timer.tick() => reload(&mut client, handle, settings).await?,
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

async fn reload(
    client: &mut Client,
    handle: &SnapshotHandle,
    settings: &LoaderSettings,
) -> Result<(), LoadError> {
    let started = std::time::Instant::now();
    let snapshot =
        load_snapshot_counting(client, &settings.upstream_policy, &settings.metrics).await?;
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

/// Reads the whole configuration in one consistent (repeatable-read) transaction. Upstream
/// addresses `policy` refuses are left out of their routes; rows that cannot be decoded are
/// left out and logged (see [`load_snapshot_counting`] to count them too).
pub async fn load_snapshot(
    client: &mut Client,
    policy: &UpstreamPolicy,
) -> Result<ConfigSnapshot, LoadError> {
    load_snapshot_counting(client, policy, &LoaderMetrics::default()).await
}

/// [`load_snapshot`], counting every row it leaves out in `metrics`.
pub async fn load_snapshot_counting(
    client: &mut Client,
    policy: &UpstreamPolicy,
    metrics: &LoaderMetrics,
) -> Result<ConfigSnapshot, LoadError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut snapshot = ConfigSnapshot::default();

    for row in tx
        .query(&format!("SELECT {PLAN_COLUMNS} FROM plans"), &[])
        .await?
    {
        let decoded = PlanRow::from_row(&row).and_then(|plan| Ok((plan.id, plan.into_plan()?)));
        match decoded {
            Ok((id, plan)) => {
                snapshot.plans.insert(id, Arc::new(plan));
            }
            Err(error) => {
                // Never a guessed plan: its tenants are left without one and refused. The id
                // is read leniently: the row may be undecodable because of it.
                let id: Option<Uuid> = row.try_get(0).ok();
                metrics.skipped(RowKind::Plan);
                tracing::error!(plan_id = ?id, %error, "Plan skipped: its row cannot be decoded.");
            }
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
        let status = match row.get::<_, &str>(2).parse::<TenantStatus>() {
            Ok(status) => status,
            Err(error) => {
                // Left out, the tenant's keys are refused like a suspended tenant's.
                metrics.skipped(RowKind::Tenant);
                tracing::error!(tenant_id = %id, %error, "Tenant skipped: its row cannot be decoded.");
                continue;
            }
        };
        let plan = row
            .get::<_, Option<Uuid>>(3)
            .and_then(|plan| snapshot.plans.get(&PlanId::from_uuid(plan)))
            .cloned();
        snapshot.tenants.insert(
            TenantId::from_uuid(id),
            TenantConfig {
                id: TenantId::from_uuid(id),
                slug: row.get(1),
                status,
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
            metrics.skipped(RowKind::ApiKey);
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
                verified: VerifiedKey::default(),
            },
        );
    }

    let mut routes = Vec::new();
    let system_roots = upstreams::endpoint_tls(None).unwrap_or_else(|_| {
        Arc::new(crate::snapshot::EndpointTls {
            ca: None,
            client: None,
            pool_key: 0,
        })
    });
    for row in tx
        .query(
            "SELECT id, tenant_id, host, path_prefix, strip_prefix, upstreams, connect_timeout_ms, \
                    read_timeout_ms, retries, max_body_bytes, required_scope, tls_ca_pem, \
                    tls_client_cert_pem, tls_client_key_pem FROM routes",
            &[],
        )
        .await?
    {
        let id = RouteId::from_uuid(row.get(0));
        // Routes without material of their own share one setting (and so their resolutions).
        let tls = UpstreamTls::from_pem(row.get(11), row.get(12), row.get(13))
            .map_err(|e| e.to_string())
            .and_then(|material| match material {
                None => Ok(system_roots.clone()),
                Some(material) => upstreams::endpoint_tls(Some(&material)).map_err(str::to_owned),
            });
        let tls = match tls {
            Ok(tls) => tls,
            Err(error) => {
                metrics.skipped(RowKind::Route);
                // Never the material itself.
                tracing::error!(route_id = %id, %error, "Route skipped: unusable TLS material.");
                continue;
            }
        };
        let route = RouteConfig {
            id,
            tenant_id: TenantId::from_uuid(row.get(1)),
            host: row.get(2),
            path_prefix: row.get(3),
            strip_prefix: row.get(4),
            upstreams: row.get(5),
            upstream_addrs: Vec::new(),
            upstream_endpoints: Vec::new(),
            connect_timeout_ms: u32::try_from(row.get::<_, i32>(6)).unwrap_or(2000),
            read_timeout_ms: u32::try_from(row.get::<_, i32>(7)).unwrap_or(30_000),
            retries: u8::try_from(row.get::<_, i16>(8)).unwrap_or(0),
            max_body_bytes: u64::try_from(row.get::<_, i64>(9)).unwrap_or(0),
            required_scope: row.get(10),
        };
        routes.push((route, tls));
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
            Err(error) => {
                metrics.skipped(RowKind::JwtIssuer);
                tracing::warn!(
                    tenant_id = %config.tenant_id,
                    issuer = %config.issuer,
                    audience = %config.audience,
                    %error,
                    "JWT issuer skipped: invalid."
                );
            }
        }
    }
    for (issuer, audience, tenant_id) in snapshot.issuers.shared_keys() {
        tracing::warn!(
            %tenant_id,
            issuer,
            audience,
            "JWT issuer refused: another tenant registered the same key for this issuer and \
             audience, so its tokens cannot tell the tenants apart; remove the copy."
        );
    }
    tx.commit().await?;
    // Outside the transaction: name resolution may take a while.
    // Routes sharing an upstream (and the system roots) resolve it once.
    let mut resolved = HashMap::new();
    for (mut route, tls) in routes {
        for upstream in &route.upstreams {
            let found = if Arc::ptr_eq(&tls, &system_roots) {
                if !resolved.contains_key(upstream) {
                    let found = upstreams::resolve(upstream, &tls, policy).await;
                    resolved.insert(upstream.clone(), found);
                }
                resolved.get(upstream).cloned().unwrap_or_default()
            } else {
                upstreams::resolve(upstream, &tls, policy).await
            };
            for (addr, endpoint) in found {
                route.upstream_addrs.push(addr);
                route.upstream_endpoints.push(endpoint);
            }
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
