//! The Pingora `ProxyHttp` implementation, a thin dispatcher over the request path's phases
//! ([`admission`]: flood guard, head limit, well-formed head, normal path, authentication from
//! the snapshot, route, scope, body limit, subscription, plan limits), forwarding without the
//! credential, with `X-Tenant-Id` / `X-Request-Id` and forwarding headers the client cannot
//! forge ([`headers`]), and one usage event per request that reached auth.
//!
//! Every early answer is a [`Refusal`], written in one place.

mod admission;
pub mod headers;
mod refusal;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::modules::http::HttpModules;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_limits::rate::Rate;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use time::OffsetDateTime;
use tollgate_core::{
    EventId, IpNetwork, KeyId, KeyPepper, Outcome, TenantId, UsageData, UsageEvent,
};

pub use self::refusal::Refusal;
use crate::limits::{LimitDecision, Limiter};
use crate::metrics::GatewayMetrics;
use crate::snapshot::{RouteConfig, SnapshotHandle, UpstreamEndpoint};
use crate::upstream_health::UpstreamHealth;
use crate::usage::UsageSink;

/// The credential header besides `Authorization`, removed before forwarding.
const X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");

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
    /// Peers (an ingress in front) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNetwork>,
    /// Seconds a kept-alive connection may wait for its next request.
    pub keepalive_seconds: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            max_header_bytes: 32 * 1024,
            flood_threshold: 100,
            instance: Arc::from("tollgate-proxy"),
            trusted_proxies: Vec::new(),
            keepalive_seconds: 60,
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
    /// The connection's peer.
    peer_ip: Option<IpAddr>,
    /// The client: the peer, or the address a trusted proxy forwarded for.
    client_ip: Option<IpAddr>,
    peer_trusted: bool,
    /// The normal form of the path when it differs from the request's.
    forward_path: Option<String>,
    /// The upstream chosen for this attempt.
    endpoint: Option<Arc<UpstreamEndpoint>>,
    /// `request_id` as a header value, encoded once (it goes upstream and back).
    request_id_value: Option<http::HeaderValue>,
}

impl RequestCtx {
    /// The request id as a header value (hyphenated, lower case).
    fn request_id_value(&mut self) -> http::HeaderValue {
        if let Some(value) = &self.request_id_value {
            return value.clone();
        }
        let mut buf = uuid::Uuid::encode_buffer();
        let text = self.request_id.hyphenated().encode_lower(&mut buf);
        let value = http::HeaderValue::from_str(text)
            .unwrap_or_else(|_| http::HeaderValue::from_static(""));
        self.request_id_value = Some(value.clone());
        value
    }
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

    /// Records what a refusal means (outcome, metrics, flood guard) and writes it.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        refusal: &Refusal,
    ) -> Result<bool> {
        ctx.outcome = Some(refusal.outcome);
        if let Some(label) = refusal.auth_failure {
            self.metrics.auth_failure(label);
        }
        // Only failed credentials feed the flood guard: a valid key of a suspended tenant is
        // not guessing.
        if refusal.guessing
            && let Some(ip) = ctx.client_ip
        {
            self.failed_auth.0.observe(&ip, 1);
        }
        refusal
            .write(
                session,
                ctx.request_id_value(),
                self.settings.keepalive_seconds,
            )
            .await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    /// No downstream modules: Pingora's default adds a response-compression module that is
    /// disabled but still runs for every request and body chunk.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

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
            peer_ip: None,
            client_ip: None,
            peer_trusted: false,
            forward_path: None,
            endpoint: None,
            request_id_value: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        self.metrics.in_flight(1);
        ctx.counted_in_flight = true;
        ctx.peer_ip = match session.client_addr() {
            Some(SocketAddr::Inet(addr)) => Some(addr.ip()),
            _ => None,
        };
        (ctx.client_ip, ctx.peer_trusted) = headers::client_address(
            ctx.peer_ip,
            session.req_header(),
            &self.settings.trusted_proxies,
        );
        match self.admit(session.req_header(), ctx).await {
            Ok(()) => {
                if let Some(route) = &ctx.route {
                    ctx.retries_left = route.retries;
                }
                Ok(false)
            }
            Err(refusal) => self.refuse(session, ctx, &refusal).await,
        }
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
        let picked = self
            .health
            .pick_index(&route.upstream_addrs, start)
            .and_then(|i| {
                Some((
                    *route.upstream_addrs.get(i)?,
                    route.upstream_endpoints.get(i)?,
                ))
            });
        let Some((addr, endpoint)) = picked else {
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                "no upstream of the route resolved",
            ));
        };
        let mut peer = match &endpoint.tls {
            // Verified against the route's CA or the system roots, for the upstream's name.
            Some(tls) => {
                let mut peer = HttpPeer::new(addr, true, endpoint.host.clone());
                peer.options.ca.clone_from(&tls.ca);
                peer.client_cert_key.clone_from(&tls.client);
                peer.group_key = tls.pool_key;
                peer
            }
            None => HttpPeer::new(addr, false, String::new()),
        };
        ctx.endpoint = Some(endpoint.clone());
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
        upstream_request.remove_header(&http::header::AUTHORIZATION);
        upstream_request.remove_header(&X_API_KEY);
        if let Some(tenant) = ctx.tenant {
            let mut buf = uuid::Uuid::encode_buffer();
            let id = tenant.as_uuid().hyphenated().encode_lower(&mut buf);
            upstream_request.insert_header("x-tenant-id", &*id)?;
        }
        upstream_request.insert_header("x-request-id", ctx.request_id_value())?;
        headers::set_forwarding_headers(
            upstream_request,
            ctx.peer_ip,
            ctx.client_ip,
            ctx.peer_trusted,
        )?;
        let base = ctx.endpoint.as_ref().map_or("", |e| e.base_path.as_str());
        if let Some(route) = &ctx.route {
            forward_path(upstream_request, route, ctx.forward_path.as_deref(), base)?;
        }
        // A TLS upstream is addressed by its own name, as its certificate and SNI are (a
        // client's Host would be answered 421 or with the wrong site).
        if let Some(endpoint) = ctx.endpoint.as_ref().filter(|e| e.tls.is_some()) {
            upstream_request.insert_header("host", endpoint.host_header.as_str())?;
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
            headers::apply_limit_headers(upstream_response, decision)?;
        }
        upstream_response.insert_header("x-request-id", ctx.request_id_value())?;
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
            let refusal = Refusal::new(status, code, message, Outcome::Rejected);
            let _ = refusal
                .write(
                    session,
                    ctx.request_id_value(),
                    self.settings.keepalive_seconds,
                )
                .await;
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
        self.metrics.observe_duration(elapsed);
        if let Some(upstream) = ctx.upstream_elapsed {
            self.metrics.observe_upstream(upstream);
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

/// Sets the path the upstream receives: the upstream's base path, then the normal form
/// (`normal`, when it differs from the request's) without the route's prefix when the route
/// strips it; the query is kept. An absolute-form target is forwarded in origin form.
fn forward_path(
    upstream_request: &mut RequestHeader,
    route: &RouteConfig,
    normal: Option<&str>,
    base: &str,
) -> Result<()> {
    let strip = route.strip_prefix && route.path_prefix != "/";
    // Pingora keeps an absolute-form target verbatim for the wire; its URI holds the path.
    let absolute_form = !upstream_request.raw_path().starts_with(b"/");
    let uri = &upstream_request.uri;
    if !strip && normal.is_none() && base.is_empty() && !absolute_form {
        return Ok(());
    }
    let path = normal.unwrap_or_else(|| uri.path());
    let rest = if strip {
        path.get(route.path_prefix.len()..).unwrap_or_default()
    } else {
        path
    };
    let query = uri.query();
    let mut forwarded =
        String::with_capacity(base.len() + rest.len() + 2 + query.map_or(0, str::len));
    forwarded.push_str(base);
    // `rest` is empty when the whole prefix was stripped: the base path alone is the target.
    let bare_base = rest.is_empty() && !base.is_empty();
    if !rest.starts_with('/') && !bare_base {
        forwarded.push('/');
    }
    forwarded.push_str(rest);
    if let Some(query) = query {
        forwarded.push('?');
        forwarded.push_str(query);
    }
    let uri = http::Uri::try_from(forwarded)
        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "rewriting the path", e))?;
    upstream_request.set_uri(uri);
    Ok(())
}
