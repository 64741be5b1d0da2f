//! The phases a request passes before it is forwarded, in order: flood guard, head limit,
//! well-formed head, normal path, authenticate, route, scope, body limit, subscription, limits.
//! Each returns "go on" (`Ok`) or a typed [`Refusal`]; none writes an answer itself.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use pingora_http::RequestHeader;
use tollgate_core::{Outcome, ParsedApiKey, TenantId};

use super::headers::head_bytes;
use super::refusal::Refusal;
use super::{Gateway, RequestCtx};
use crate::credentials::{Credential, extract_credential};
use crate::jwt::JwtPrincipal;
use crate::limits::LimitVerdict;
use crate::path::normalize_path;
use crate::routing::match_route;
use crate::snapshot::{KeyRecord, KeyRejection, LoadedSnapshot, RouteConfig, TenantConfig};

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

impl Gateway {
    /// Runs every phase; `Ok` when the request may be forwarded (its route is in `ctx`).
    pub(super) async fn admit(
        &self,
        request: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<(), Refusal> {
        self.flood_guard(ctx.client_ip)?;
        self.head_limit(request, ctx)?;
        well_formed(request)?;
        if !request.raw_path_is_utf8() {
            // The URI would hold a lossy rendering of what the upstream receives.
            return Err(Refusal::bad_request(
                "malformed_path",
                "the request target is not valid UTF-8",
            ));
        }
        let path = normalize_path(request.uri.path())
            .map_err(|refusal| Refusal::bad_request(refusal.code(), refusal.to_string()))?;
        let snapshot = self.snapshot.load().ok_or_else(|| {
            Refusal::new(
                503,
                "not_ready",
                "the gateway is starting",
                Outcome::Rejected,
            )
            .retry_after(1)
        })?;
        ctx.reached_auth = true;
        let (tenant, principal) = self.authenticate(&snapshot, request, ctx)?;
        let route = route(&snapshot, tenant.id, request, &path)?;
        ctx.route = Some(route.clone());
        if let Cow::Owned(normal) = path {
            ctx.forward_path = Some(normal);
        }
        scope(&route, &principal)?;
        body_limit(&route, request)?;
        let plan = tenant.plan.as_ref().ok_or_else(|| {
            Refusal::new(
                403,
                "no_subscription",
                "the tenant has no active subscription",
                Outcome::Forbidden,
            )
        })?;
        let decision = self.limiter.check(tenant.id, plan).await;
        ctx.limit = Some(decision);
        match decision.verdict {
            LimitVerdict::Allowed => Ok(()),
            LimitVerdict::RateLimited => Err(Refusal::new(
                429,
                "rate_limited",
                format!(
                    "rate limit of {} requests per second (burst {}) exceeded",
                    decision.policy.requests_per_second, decision.policy.burst
                ),
                Outcome::RateLimited,
            )
            .with_limit(decision)),
            LimitVerdict::QuotaExceeded => Err(Refusal::new(
                429,
                "quota_exceeded",
                "the monthly request quota of the plan is used up",
                Outcome::QuotaExceeded,
            )
            .with_limit(decision)),
            LimitVerdict::Unavailable => Err(Refusal::new(
                503,
                "rate_limiter_unavailable",
                "rate limiting is unavailable and the plan fails closed",
                Outcome::Rejected,
            )
            .retry_after(1)),
        }
    }

    /// An address that keeps failing authentication is refused without checking.
    fn flood_guard(&self, client: Option<IpAddr>) -> Result<(), Refusal> {
        let Some(ip) = client else { return Ok(()) };
        let failures = self
            .failed_auth
            .0
            .rate_with(&ip, |rate| rate.prev_samples.max(rate.curr_samples));
        if failures >= isize::try_from(self.settings.flood_threshold).unwrap_or(isize::MAX) {
            self.metrics.flood_refusal();
            return Err(Refusal::new(
                429,
                "too_many_failed_auth",
                "too many failed authentications from this address; slow down",
                Outcome::Rejected,
            )
            .retry_after(1));
        }
        Ok(())
    }

    fn head_limit(&self, request: &RequestHeader, ctx: &mut RequestCtx) -> Result<(), Refusal> {
        let head = head_bytes(request);
        ctx.request_head_bytes = u64::try_from(head).unwrap_or(u64::MAX);
        if head > self.settings.max_header_bytes {
            return Err(Refusal::new(
                431,
                "headers_too_large",
                format!(
                    "the request head exceeds {} bytes",
                    self.settings.max_header_bytes
                ),
                Outcome::Rejected,
            ));
        }
        Ok(())
    }

    fn authenticate<'s>(
        &self,
        snapshot: &'s LoadedSnapshot,
        request: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<(&'s TenantConfig, Principal<'s>), Refusal> {
        let config = &snapshot.config;
        let (tenant, principal) = match extract_credential(request) {
            Ok(Credential::ApiKey(key)) => {
                let key = ParsedApiKey::parse(key).map_err(|e| {
                    Refusal::credential(401, "invalid_api_key", "malformed_api_key", e.to_string())
                })?;
                let (tenant, record) = config
                    .authenticate_key(&key, &self.pepper, ctx.arrived)
                    .map_err(|rejection| {
                        let status = if rejection == KeyRejection::TenantSuspended {
                            403
                        } else {
                            401
                        };
                        Refusal::credential(
                            status,
                            rejection.code(),
                            rejection.metric_label(),
                            rejection.to_string(),
                        )
                    })?;
                ctx.key_id = Some(record.id);
                (tenant, Principal::Key(record))
            }
            Ok(Credential::Jwt(token)) => config
                .authenticate_jwt(token, ctx.arrived)
                .map(|(tenant, principal)| (tenant, Principal::Jwt(principal)))
                .map_err(|rejection| {
                    Refusal::credential(
                        rejection.status(),
                        rejection.code(),
                        rejection.code(),
                        rejection.to_string(),
                    )
                })?,
            Err(rejection) => {
                return Err(Refusal::credential(
                    401,
                    rejection.code(),
                    rejection.code(),
                    rejection.to_string(),
                ));
            }
        };
        ctx.tenant = Some(tenant.id);
        Ok((tenant, principal))
    }
}

/// What Pingora forwards although HTTP/1.1 forbids it: no `Host` (or two), and a
/// `Content-Length` that is not one plain number (`5, 5`, which a server behind may read
/// differently).
fn well_formed(request: &RequestHeader) -> Result<(), Refusal> {
    let mut hosts = request.headers.get_all("host").iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::bad_request(
            "invalid_host",
            "the request has more than one Host header",
        ));
    }
    if host.is_none() && request.version == http::Version::HTTP_11 {
        return Err(Refusal::bad_request(
            "missing_host",
            "an HTTP/1.1 request needs a Host header",
        ));
    }
    let mut lengths = request.headers.get_all("content-length").iter();
    if let Some(length) = lengths.next() {
        let plain = !length.is_empty() && length.as_bytes().iter().all(u8::is_ascii_digit);
        if !plain || lengths.next().is_some() {
            return Err(Refusal::bad_request(
                "invalid_content_length",
                "Content-Length must be a single decimal number",
            ));
        }
    }
    Ok(())
}

fn route(
    snapshot: &LoadedSnapshot,
    tenant: TenantId,
    request: &RequestHeader,
    path: &str,
) -> Result<Arc<RouteConfig>, Refusal> {
    let host = request
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri.host());
    let routes = snapshot
        .config
        .routes
        .get(&tenant)
        .map(Vec::as_slice)
        .unwrap_or_default();
    match_route(routes, host, path).cloned().ok_or_else(|| {
        Refusal::new(
            404,
            "no_route",
            "no route matches this host and path",
            Outcome::Rejected,
        )
    })
}

fn scope(route: &RouteConfig, principal: &Principal<'_>) -> Result<(), Refusal> {
    match &route.required_scope {
        Some(scope) if !principal.scopes().iter().any(|s| s == scope) => Err(Refusal::new(
            403,
            "missing_scope",
            format!("the credential lacks the scope {scope:?}"),
            Outcome::Forbidden,
        )),
        _ => Ok(()),
    }
}

fn body_limit(route: &RouteConfig, request: &RequestHeader) -> Result<(), Refusal> {
    let declared = request
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > route.max_body_bytes) {
        return Err(Refusal::new(
            413,
            "body_too_large",
            format!("the request body exceeds {} bytes", route.max_body_bytes),
            Outcome::Rejected,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: http::Version, headers: &[(&str, &str)]) -> RequestHeader {
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        request.set_version(version);
        for (name, value) in headers {
            request.append_header(name.to_string(), *value).unwrap();
        }
        request
    }

    fn code(result: Result<(), Refusal>) -> Option<&'static str> {
        result.err().map(|refusal| refusal.code)
    }

    #[test]
    fn heads_http_forbids_are_refused() {
        use http::Version;
        assert_eq!(
            code(well_formed(&request(Version::HTTP_11, &[]))),
            Some("missing_host")
        );
        assert_eq!(code(well_formed(&request(Version::HTTP_10, &[]))), None);
        assert_eq!(
            code(well_formed(&request(
                Version::HTTP_11,
                &[("host", "a"), ("host", "b")]
            ))),
            Some("invalid_host")
        );
        for bad in [
            &[("content-length", "5, 5")][..],
            &[("content-length", "5"), ("content-length", "5")],
            &[("content-length", "+5")],
        ] {
            let mut headers = vec![("host", "a")];
            headers.extend_from_slice(bad);
            assert_eq!(
                code(well_formed(&request(Version::HTTP_11, &headers))),
                Some("invalid_content_length"),
                "{bad:?}"
            );
        }
        assert_eq!(
            code(well_formed(&request(
                Version::HTTP_11,
                &[("host", "a"), ("content-length", "5")]
            ))),
            None
        );
    }
}
