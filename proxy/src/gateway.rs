//! The Pingora `ProxyHttp` implementation, a thin dispatcher over the policy modules:
//! flood guard and header limit, authentication from the snapshot, route match, plan limits
//! ([`crate::limits`]), forwarding without the credential and with `X-Tenant-Id` /
//! `X-Request-Id`, and one usage event per request that reached auth.
//!
//! Early answers are JSON `{"error":{"code","message"}}` with a Content-Length, written so that
//! the client connection stays open.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_limits::rate::Rate;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use time::OffsetDateTime;
use tollgate_core::{
    EventId, KeyId, KeyPepper, Outcome, ParsedApiKey, TenantId, UsageData, UsageEvent,
};

use crate::credentials::{Credential, extract_credential};
use crate::jwt::JwtPrincipal;
use crate::limits::{LimitDecision, LimitVerdict, Limiter, seconds_until_next_month};
use crate::metrics::GatewayMetrics;
use crate::routing::match_route;
use crate::snapshot::{KeyRecord, KeyRejection, RouteConfig, SnapshotHandle};
use crate::upstream_health::UpstreamHealth;
use crate::usage::UsageSink;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Gateway settings that do not come from the config snapshot.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Largest request head (request line and headers) accepted; beyond it, 431.
    pub max_header_bytes: usize,
    /// Failed authentications per second from one client address before the flood guard
    /// refuses its requests without checking them.
    pub flood_threshold: u32,
    /// The `source` of usage events: this proxy instance.
    pub instance: Arc<str>,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            flood_threshold: 100,
            instance: Arc::from("tollgate-proxy"),
        }
    }
}

/// Per-request state.
#[derive(Debug)]
pub struct RequestCtx {
    started: Instant,
    arrived: OffsetDateTime,
    request_id: uuid::Uuid,
    reached_auth: bool,
    counted_in_flight: bool,
    tenant: Option<TenantId>,
    key_id: Option<KeyId>,
    route: Option<Arc<RouteConfig>>,
    outcome: Option<Outcome>,
    limit: Option<LimitDecision>,
    request_head_bytes: u64,
    upstream_started: Option<Instant>,
    upstream_elapsed: Option<Duration>,
    retries_left: u8,
    body_seen: u64,
}

/// Failed authentications per client address (a count-min sketch; approximate by design).
struct FailedAuthRate(Rate);

impl std::fmt::Debug for FailedAuthRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailedAuthRate")
    }
}

/// The gateway.
#[derive(Debug)]
pub struct Gateway {
    snapshot: Arc<SnapshotHandle>,
    pepper: Arc<KeyPepper>,
    limiter: Arc<Limiter>,
    metrics: Arc<GatewayMetrics>,
    /// `None` when usage events are switched off (`TOLLGATE_USAGE_DISABLED`).
    usage: Option<UsageSink>,
    failed_auth: FailedAuthRate,
    settings: GatewaySettings,
    next_upstream: AtomicUsize,
    health: UpstreamHealth,
}

impl Gateway {
    /// A gateway reading `snapshot`, verifying keys under `pepper`, limiting with `limiter`
    /// and handing usage events to `usage` (none: no events are built).
    pub fn new(
        snapshot: Arc<SnapshotHandle>,
        pepper: Arc<KeyPepper>,
        limiter: Arc<Limiter>,
        metrics: Arc<GatewayMetrics>,
        usage: Option<UsageSink>,
        settings: GatewaySettings,
    ) -> Self {
        Self {
            snapshot,
            pepper,
            limiter,
            metrics,
            usage,
            failed_auth: FailedAuthRate(Rate::new(Duration::from_secs(1))),
            settings,
            next_upstream: AtomicUsize::new(0),
            health: UpstreamHealth::default(),
        }
    }

    fn client_ip(session: &Session) -> Option<IpAddr> {
        match session.client_addr() {
            Some(SocketAddr::Inet(addr)) => Some(addr.ip()),
            _ => None,
        }
    }

    /// Refuses a credential: counted for the flood guard and in the metrics.
    async fn refuse_credential(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        status: u16,
        code: &'static str,
        message: &str,
    ) -> Result<bool> {
        // Only failed credentials feed the flood guard: a valid key of a suspended tenant is
        // not guessing.
        if status == 401
            && let Some(ip) = Self::client_ip(session)
        {
            self.failed_auth.0.observe(&ip, 1);
        }
        self.metrics.auth_failure(code);
        ctx.outcome = Some(if status == 403 {
            Outcome::Forbidden
        } else {
            Outcome::Unauthorized
        });
        reject(session, ctx.request_id, status, code, message, None).await
    }
}

/// Who a request authenticated as.
enum Principal<'a> {
    /// An API key's record in the snapshot.
    Key(&'a KeyRecord),
    /// A verified JWT's claims.
    Jwt(Arc<JwtPrincipal>),
}

impl Principal<'_> {
    fn scopes(&self) -> &[String] {
        match self {
            Self::Key(record) => &record.scopes,
            Self::Jwt(principal) => &principal.scopes,
        }
    }
}

/// Bytes of the request line and headers, as received (give or take whitespace).
fn head_bytes(request: &RequestHeader) -> usize {
    let line = request.method.as_str().len()
        + request.uri.path_and_query().map_or(1, |p| p.as_str().len())
        + 12;
    request.headers.iter().fold(line, |total, (name, value)| {
        total + name.as_str().len() + value.len() + 4
    })
}

fn ceil_seconds(nanos: u64) -> u64 {
    nanos.div_ceil(NANOS_PER_SECOND)
}

/// Adds the rate-limit (IETF draft and `X-RateLimit-*`) and quota headers of `decision`.
fn apply_limit_headers(header: &mut ResponseHeader, decision: &LimitDecision) -> Result<()> {
    let policy = decision.policy;
    let window = u64::from(policy.burst)
        .div_ceil(u64::from(policy.requests_per_second.max(1)))
        .max(1);
    let reset = ceil_seconds(decision.rate.reset_after);
    header.insert_header(
        "ratelimit-policy",
        format!("\"burst\";q={};w={window}", policy.burst),
    )?;
    header.insert_header(
        "ratelimit",
        format!("\"burst\";r={};t={reset}", decision.rate.remaining),
    )?;
    header.insert_header("x-ratelimit-limit", policy.burst)?;
    header.insert_header("x-ratelimit-remaining", decision.rate.remaining)?;
    header.insert_header("x-ratelimit-reset", reset)?;
    if let Some(quota) = decision.quota {
        header.insert_header("x-quota-limit", quota.limit)?;
        header.insert_header("x-quota-remaining", quota.remaining())?;
        header.insert_header(
            "x-quota-reset",
            seconds_until_next_month(OffsetDateTime::now_utc()),
        )?;
        if quota.used > quota.limit {
            header.insert_header("x-quota-overage", quota.used - quota.limit)?;
        }
    }
    match decision.verdict {
        LimitVerdict::RateLimited => {
            header.insert_header(
                "retry-after",
                ceil_seconds(decision.rate.retry_after).max(1),
            )?;
        }
        LimitVerdict::QuotaExceeded => {
            header.insert_header(
                "retry-after",
                seconds_until_next_month(OffsetDateTime::now_utc()).max(1),
            )?;
        }
        LimitVerdict::Allowed | LimitVerdict::Unavailable => {}
    }
    Ok(())
}

fn request_has_body(request: &RequestHeader) -> bool {
    request
        .headers
        .get("content-length")
        .is_some_and(|v| v.as_bytes() != b"0")
        || request.headers.contains_key("transfer-encoding")
}

/// Writes a JSON error with a Content-Length, keeping the connection when the request has no
/// unread body. Returns `Ok(true)`: the request is answered.
async fn reject(
    session: &mut Session,
    request_id: uuid::Uuid,
    status: u16,
    code: &str,
    message: &str,
    limit: Option<&LimitDecision>,
) -> Result<bool> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut header = ResponseHeader::build(status, Some(12))?;
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len())?;
    let mut id = uuid::Uuid::encode_buffer();
    header.insert_header(
        "x-request-id",
        &*request_id.hyphenated().encode_lower(&mut id),
    )?;
    if status == 401 {
        header.insert_header("www-authenticate", "Bearer")?;
    }
    if let Some(decision) = limit {
        apply_limit_headers(&mut header, decision)?;
    }
    if status == 503 || code == "too_many_failed_auth" {
        header.insert_header("retry-after", 1)?;
    }
    if !request_has_body(session.req_header()) {
        session.set_keepalive(Some(60));
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await?;
    Ok(true)
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            started: Instant::now(),
            arrived: OffsetDateTime::now_utc(),
            request_id: uuid::Uuid::now_v7(),
            reached_auth: false,
            counted_in_flight: false,
            tenant: None,
            key_id: None,
            route: None,
            outcome: None,
            limit: None,
            request_head_bytes: 0,
            upstream_started: None,
            upstream_elapsed: None,
            retries_left: 0,
            body_seen: 0,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        self.metrics.in_flight(1);
        ctx.counted_in_flight = true;
        if let Some(ip) = Self::client_ip(session) {
            let failures = self
                .failed_auth
                .0
                .rate_with(&ip, |rate| rate.prev_samples.max(rate.curr_samples));
            if failures >= isize::try_from(self.settings.flood_threshold).unwrap_or(isize::MAX) {
                self.metrics.flood_refusal();
                ctx.outcome = Some(Outcome::Rejected);
                return reject(
                    session,
                    ctx.request_id,
                    429,
                    "too_many_failed_auth",
                    "too many failed authentications from this address; slow down",
                    None,
                )
                .await;
            }
        }
        let head = head_bytes(session.req_header());
        ctx.request_head_bytes = u64::try_from(head).unwrap_or(u64::MAX);
        if head > self.settings.max_header_bytes {
            ctx.outcome = Some(Outcome::Rejected);
            let message = format!(
                "the request head exceeds {} bytes",
                self.settings.max_header_bytes
            );
            return reject(
                session,
                ctx.request_id,
                431,
                "headers_too_large",
                &message,
                None,
            )
            .await;
        }
        let Some(snapshot) = self.snapshot.load() else {
            ctx.outcome = Some(Outcome::Rejected);
            return reject(
                session,
                ctx.request_id,
                503,
                "not_ready",
                "the gateway is starting",
                None,
            )
            .await;
        };
        ctx.reached_auth = true;
        let authenticated = match extract_credential(session.req_header()) {
            Ok(Credential::ApiKey(key)) => match ParsedApiKey::parse(key) {
                Ok(key) => snapshot
                    .config
                    .authenticate_key(&key, &self.pepper, ctx.arrived)
                    .map(|(tenant, record)| (tenant, Principal::Key(record)))
                    .map_err(|rejection| {
                        let status = if rejection == KeyRejection::TenantSuspended {
                            403
                        } else {
                            401
                        };
                        (status, rejection.code(), rejection.to_string())
                    }),
                Err(e) => Err((401, "invalid_api_key", e.to_string())),
            },
            Ok(Credential::Jwt(token)) => snapshot
                .config
                .authenticate_jwt(token, ctx.arrived)
                .map(|(tenant, principal)| (tenant, Principal::Jwt(principal)))
                .map_err(|rejection| (rejection.status(), rejection.code(), rejection.to_string())),
            Err(rejection) => Err((401, rejection.code(), rejection.to_string())),
        };
        let (tenant, principal) = match authenticated {
            Ok(found) => found,
            Err((status, code, message)) => {
                return self
                    .refuse_credential(session, ctx, status, code, &message)
                    .await;
            }
        };
        ctx.tenant = Some(tenant.id);
        if let Principal::Key(record) = &principal {
            ctx.key_id = Some(record.id);
        }
        let request = session.req_header();
        let host = request
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri.host());
        let routes = snapshot
            .config
            .routes
            .get(&tenant.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let Some(route) = match_route(routes, host, request.uri.path()) else {
            ctx.outcome = Some(Outcome::Rejected);
            let message = "no route matches this host and path";
            return reject(session, ctx.request_id, 404, "no_route", message, None).await;
        };
        ctx.route = Some(route.clone());
        if let Some(scope) = &route.required_scope
            && !principal.scopes().iter().any(|s| s == scope)
        {
            ctx.outcome = Some(Outcome::Forbidden);
            let message = format!("the credential lacks the scope {scope:?}");
            return reject(
                session,
                ctx.request_id,
                403,
                "missing_scope",
                &message,
                None,
            )
            .await;
        }
        let declared = request
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > route.max_body_bytes) {
            ctx.outcome = Some(Outcome::Rejected);
            let message = format!("the request body exceeds {} bytes", route.max_body_bytes);
            return reject(
                session,
                ctx.request_id,
                413,
                "body_too_large",
                &message,
                None,
            )
            .await;
        }
        let Some(plan) = &tenant.plan else {
            ctx.outcome = Some(Outcome::Forbidden);
            let message = "the tenant has no active subscription";
            return reject(
                session,
                ctx.request_id,
                403,
                "no_subscription",
                message,
                None,
            )
            .await;
        };
        let decision = self.limiter.check(tenant.id, plan).await;
        ctx.limit = Some(decision);
        match decision.verdict {
            LimitVerdict::Allowed => {}
            LimitVerdict::RateLimited => {
                ctx.outcome = Some(Outcome::RateLimited);
                let message = format!(
                    "rate limit of {} requests per second (burst {}) exceeded",
                    decision.policy.requests_per_second, decision.policy.burst
                );
                return reject(
                    session,
                    ctx.request_id,
                    429,
                    "rate_limited",
                    &message,
                    Some(&decision),
                )
                .await;
            }
            LimitVerdict::QuotaExceeded => {
                ctx.outcome = Some(Outcome::QuotaExceeded);
                let message = "the monthly request quota of the plan is used up";
                return reject(
                    session,
                    ctx.request_id,
                    429,
                    "quota_exceeded",
                    message,
                    Some(&decision),
                )
                .await;
            }
            LimitVerdict::Unavailable => {
                ctx.outcome = Some(Outcome::Rejected);
                let message = "rate limiting is unavailable and the plan fails closed";
                return reject(
                    session,
                    ctx.request_id,
                    503,
                    "rate_limiter_unavailable",
                    message,
                    None,
                )
                .await;
            }
        }
        ctx.retries_left = route.retries;
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // A chunked body has no declared length: count it as it streams.
        if let (Some(chunk), Some(route)) = (body.as_ref(), ctx.route.as_ref()) {
            ctx.body_seen += u64::try_from(chunk.len()).unwrap_or(u64::MAX);
            if ctx.body_seen > route.max_body_bytes {
                ctx.outcome = Some(Outcome::Rejected);
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body over the route's limit",
                ));
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route selected"))?;
        let start = self.next_upstream.fetch_add(1, Ordering::Relaxed);
        let Some(addr) = self.health.pick(&route.upstream_addrs, start) else {
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                "no upstream of the route resolved",
            ));
        };
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout =
            Some(Duration::from_millis(u64::from(route.connect_timeout_ms)));
        peer.options.read_timeout = Some(Duration::from_millis(u64::from(route.read_timeout_ms)));
        ctx.upstream_started = Some(Instant::now());
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let SocketAddr::Inet(addr) = peer.address() {
            self.health.mark_down(*addr);
        }
        // Nothing was sent yet, but only idempotent requests are retried (on the next
        // upstream of the pool).
        if ctx.retries_left > 0 && session.req_header().method.is_idempotent() {
            ctx.retries_left -= 1;
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        upstream_request.remove_header("authorization");
        upstream_request.remove_header("x-api-key");
        if let Some(tenant) = ctx.tenant {
            upstream_request.insert_header("x-tenant-id", tenant.to_string())?;
        }
        let mut id = uuid::Uuid::encode_buffer();
        let id = ctx.request_id.hyphenated().encode_lower(&mut id);
        upstream_request.insert_header("x-request-id", &*id)?;
        if let Some(route) = &ctx.route
            && route.strip_prefix
            && route.path_prefix != "/"
        {
            let uri = &upstream_request.uri;
            let path = uri.path();
            let rest = path.get(route.path_prefix.len()..).unwrap_or_default();
            let mut stripped = String::with_capacity(rest.len() + 1);
            if !rest.starts_with('/') {
                stripped.push('/');
            }
            stripped.push_str(rest);
            if let Some(query) = uri.query() {
                stripped.push('?');
                stripped.push_str(query);
            }
            let uri = http::Uri::try_from(stripped).map_err(|e| {
                Error::because(ErrorType::InvalidHTTPHeader, "stripping the prefix", e)
            })?;
            upstream_request.set_uri(uri);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(started) = ctx.upstream_started {
            ctx.upstream_elapsed = Some(started.elapsed());
        }
        if let Some(decision) = &ctx.limit {
            apply_limit_headers(upstream_response, decision)?;
        }
        let mut id = uuid::Uuid::encode_buffer();
        upstream_response.insert_header(
            "x-request-id",
            &*ctx.request_id.hyphenated().encode_lower(&mut id),
        )?;
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let (status, code, message) = match e.etype() {
            ErrorType::HTTPStatus(413) => (
                413,
                "body_too_large",
                "the request body exceeds the route's limit",
            ),
            ErrorType::HTTPStatus(status) => (*status, "error", "the request failed"),
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Upstream =>
            {
                (
                    504,
                    "upstream_timeout",
                    "the upstream did not answer in time",
                )
            }
            ErrorType::ConnectNoRoute | ErrorType::ConnectRefused | ErrorType::ConnectError => (
                502,
                "upstream_unavailable",
                "the upstream could not be reached",
            ),
            _ => match e.esource() {
                ErrorSource::Upstream => (
                    502,
                    "upstream_unavailable",
                    "the upstream could not be reached",
                ),
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        (0, "", "")
                    }
                    _ => (400, "bad_request", "the request could not be read"),
                },
                ErrorSource::Internal | ErrorSource::Unset => (
                    500,
                    "internal_error",
                    "the gateway failed to handle the request",
                ),
            },
        };
        if ctx.outcome.is_none() && matches!(status, 502 | 504) {
            ctx.outcome = Some(Outcome::UpstreamError);
        }
        let written = session.response_written().is_some();
        if status > 0 && !written {
            let _ = reject(session, ctx.request_id, status, code, message, None).await;
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut Self::CTX) {
        if ctx.counted_in_flight {
            self.metrics.in_flight(-1);
        }
        let elapsed = ctx.started.elapsed();
        // 499: the client went away before an answer (nginx's convention).
        let status = session
            .response_written()
            .map_or(499, |response| response.status.as_u16());
        let outcome = ctx.outcome.unwrap_or(if error.is_some() && status >= 500 {
            Outcome::UpstreamError
        } else {
            Outcome::Proxied
        });
        self.metrics.count_request(status, outcome);
        self.metrics.observe_duration(elapsed.as_secs_f64());
        if let Some(upstream) = ctx.upstream_elapsed {
            self.metrics.observe_upstream(upstream.as_secs_f64());
        }
        let Some(usage) = self.usage.as_ref().filter(|_| ctx.reached_auth) else {
            return;
        };
        let response_head = session.response_written().map_or(0, |r| {
            r.headers
                .iter()
                .fold(17, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
        });
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // Never blocks: a full queue goes to the spool, and a drop is counted there.
        let _ = usage.submit(UsageEvent {
            id: EventId::from_uuid(ctx.request_id),
            source: self.settings.instance.clone(),
            time: ctx.arrived,
            tenant_id: ctx.tenant,
            data: UsageData {
                key_id: ctx.key_id,
                route_id: ctx.route.as_ref().map(|r| r.id),
                method: session.req_header().method.as_str().to_owned(),
                status,
                outcome,
                request_bytes: ctx.request_head_bytes
                    + u64::try_from(session.body_bytes_read()).unwrap_or(0),
                response_bytes: u64::try_from(response_head + session.body_bytes_sent())
                    .unwrap_or(0),
                upstream_latency_us: ctx.upstream_elapsed.map(micros),
                total_latency_us: micros(elapsed),
            },
        });
    }
}
