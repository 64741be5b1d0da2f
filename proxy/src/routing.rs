//! Picking a tenant's route for a request: host (if the route names one) and path prefix on a
//! segment boundary, most specific first (the snapshot keeps routes in that order).

use std::sync::Arc;

use crate::snapshot::RouteConfig;

/// The first route matching `host` and `path`.
pub fn match_route<'a>(
    routes: &'a [Arc<RouteConfig>],
    host: Option<&str>,
    path: &str,
) -> Option<&'a Arc<RouteConfig>> {
    let host = host.map(|h| {
        h.rsplit_once(':').map_or(h, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                h
            }
        })
    });
    routes.iter().find(|route| {
        let host_ok = match (&route.host, host) {
            (None, _) => true,
            (Some(want), Some(have)) => {
                let want = want
                    .rsplit_once(':')
                    .map_or(want.as_str(), |(name, _)| name);
                want.eq_ignore_ascii_case(have)
            }
            (Some(_), None) => false,
        };
        host_ok && prefix_matches(&route.path_prefix, path)
    })
}

/// `/v1` matches `/v1` and `/v1/x`, not `/v10`; and `/v1;v=2`, since servers that take
/// `;` parameters off a segment (Tomcat, Spring) read that as `/v1`: the more specific route,
/// with its scope, must apply to it.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with(['/', ';']),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use tollgate_core::{RouteId, TenantId};

    use super::*;

    fn route(host: Option<&str>, prefix: &str) -> Arc<RouteConfig> {
        Arc::new(RouteConfig {
            id: RouteId::new(),
            tenant_id: TenantId::new(),
            host: host.map(str::to_owned),
            path_prefix: prefix.into(),
            strip_prefix: false,
            upstreams: vec!["127.0.0.1:1".into()],
            upstream_addrs: vec![std::net::SocketAddr::from(([127, 0, 0, 1], 1))],
            upstream_endpoints: vec![Arc::default()],
            connect_timeout_ms: 1000,
            read_timeout_ms: 1000,
            retries: 0,
            max_body_bytes: 1024,
            required_scope: None,
        })
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let routes = [route(None, "/v1")];
        assert!(match_route(&routes, None, "/v1").is_some());
        assert!(match_route(&routes, None, "/v1/orders").is_some());
        assert!(match_route(&routes, None, "/v10").is_none());
        assert!(match_route(&routes, None, "/v1;jsessionid=x/orders").is_some());
        assert!(match_route(&[route(None, "/")], None, "/anything").is_some());
    }

    #[test]
    fn host_routes_need_their_host_ignoring_port_and_case() {
        let routes = [route(Some("api.example.com"), "/"), route(None, "/public")];
        assert!(std::ptr::eq(
            match_route(&routes, Some("API.example.com:8080"), "/x").unwrap(),
            &routes[0]
        ));
        assert!(match_route(&routes, Some("other.example.com"), "/x").is_none());
        assert!(std::ptr::eq(
            match_route(&routes, Some("other.example.com"), "/public/a").unwrap(),
            &routes[1]
        ));
    }
}
