//! The Pingora `ProxyHttp` implementation: authenticate the tenant from the snapshot, pick its
//! route, forward without the credential and with `X-Tenant-Id` / `X-Request-Id`.
//!
//! Early answers (401, 403, 404, 413, 503) are JSON `{"error":{"code","message"}}` with a
//! Content-Length, written so that the client connection stays open.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{ProxyHttp, Session};
use time::OffsetDateTime;
use tollgate_core::{KeyPepper, ParsedApiKey, TenantId};

use crate::credentials::{Credential, extract_credential};
use crate::routing::match_route;
use crate::snapshot::{RouteConfig, SnapshotHandle};

/// Per-request state.
#[derive(Debug, Default)]
pub struct RequestCtx {
    tenant: Option<TenantId>,
    route: Option<Arc<RouteConfig>>,
    request_id: String,
}

/// The gateway.
#[derive(Debug)]
pub struct Gateway {
    snapshot: Arc<SnapshotHandle>,
    pepper: Arc<KeyPepper>,
    next_upstream: AtomicUsize,
}

impl Gateway {
    /// A gateway reading `snapshot` and verifying keys under `pepper`.
    pub fn new(snapshot: Arc<SnapshotHandle>, pepper: Arc<KeyPepper>) -> Self {
        Self {
            snapshot,
            pepper,
            next_upstream: AtomicUsize::new(0),
        }
    }
}

/// Writes a JSON error with a Content-Length, keeping the connection when the request has no
/// unread body. Returns `Ok(true)`: the request is answered.
async fn reject(session: &mut Session, status: u16, code: &str, message: &str) -> Result<bool> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut header = ResponseHeader::build(status, Some(3))?;
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len().to_string())?;
    if status == 401 {
        header.insert_header("www-authenticate", "Bearer")?;
    }
    let has_body = session
        .req_header()
        .headers
        .get("content-length")
        .is_some_and(|v| v.as_bytes() != b"0")
        || session
            .req_header()
            .headers
            .contains_key("transfer-encoding");
    if !has_body {
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
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        ctx.request_id = uuid::Uuid::now_v7().to_string();
        let Some(snapshot) = self.snapshot.load() else {
            return reject(session, 503, "not_ready", "the gateway is starting").await;
        };
        let credential = match extract_credential(session.req_header()) {
            Ok(Credential::ApiKey(key)) => key,
            Err(rejection) => {
                return reject(session, 401, rejection.code(), &rejection.to_string()).await;
            }
        };
        let key = match ParsedApiKey::parse(credential) {
            Ok(key) => key,
            Err(e) => return reject(session, 401, "invalid_api_key", &e.to_string()).await,
        };
        let (tenant, record) =
            match snapshot
                .config
                .authenticate_key(&key, &self.pepper, OffsetDateTime::now_utc())
            {
                Ok(found) => found,
                Err(rejection) => {
                    let status = if rejection.code() == "tenant_suspended" {
                        403
                    } else {
                        401
                    };
                    return reject(session, status, rejection.code(), &rejection.to_string()).await;
                }
            };
        ctx.tenant = Some(tenant.id);
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
            return reject(
                session,
                404,
                "no_route",
                "no route matches this host and path",
            )
            .await;
        };
        if let Some(scope) = &route.required_scope
            && !record.scopes.iter().any(|s| s == scope)
        {
            let message = format!("the API key lacks the scope {scope:?}");
            return reject(session, 403, "missing_scope", &message).await;
        }
        let declared = request
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > route.max_body_bytes) {
            let message = format!("the request body exceeds {} bytes", route.max_body_bytes);
            return reject(session, 413, "body_too_large", &message).await;
        }
        ctx.route = Some(route.clone());
        Ok(false)
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
        if route.upstreams.is_empty() {
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                "route has no upstreams",
            ));
        }
        let index = self.next_upstream.fetch_add(1, Ordering::Relaxed) % route.upstreams.len();
        let mut peer = HttpPeer::new(route.upstreams[index].as_str(), false, String::new());
        peer.options.connection_timeout =
            Some(Duration::from_millis(u64::from(route.connect_timeout_ms)));
        peer.options.read_timeout = Some(Duration::from_millis(u64::from(route.read_timeout_ms)));
        Ok(Box::new(peer))
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
        upstream_request.insert_header("x-request-id", ctx.request_id.as_str())?;
        Ok(())
    }
}
