//! A route's upstreams as the request path uses them: each upstream URL resolved to addresses
//! (once per snapshot, never per request), each address with how to speak to it (plain or TLS,
//! server name, base path). Addresses the [`UpstreamPolicy`] refuses are left out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora_core::utils::tls::{CertKey, WrappedX509, parse_x509};
use tollgate_core::{UpstreamPolicy, UpstreamTarget, UpstreamTls};

use crate::snapshot::{EndpointTls, UpstreamEndpoint};

/// How long resolving one upstream name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Builds the TLS settings of a route's `https://` upstreams from its material; `Err` names
/// what is unusable (never its content).
pub fn endpoint_tls(material: Option<&UpstreamTls>) -> Result<Arc<EndpointTls>, &'static str> {
    let Some(material) = material else {
        return Ok(Arc::new(EndpointTls {
            ca: None,
            client: None,
            pool_key: 0,
        }));
    };
    // Pingora's certificate wrappers panic on DER they cannot parse: parse it here first.
    let chain = material.client.iter().flat_map(|(chain, _)| chain);
    if material
        .ca
        .iter()
        .chain(chain)
        .any(|der| x509_parser::parse_x509_certificate(der).is_err())
    {
        return Err("a certificate is not a valid X.509 certificate");
    }
    let ca = (!material.ca.is_empty()).then(|| {
        let certificates: Vec<WrappedX509> = material
            .ca
            .iter()
            .map(|der| WrappedX509::new(der.clone(), parse_x509))
            .collect();
        Arc::from(certificates)
    });
    let client = match &material.client {
        Some((chain, key)) => {
            // Pingora's connector unwraps this conversion on every handshake: check it here.
            if rustls_pki_types::PrivateKeyDer::try_from(key.clone()).is_err() {
                return Err("the client key is not a PKCS#8, PKCS#1 or SEC1 private key");
            }
            if chain.first().is_none_or(Vec::is_empty) {
                return Err("the client certificate chain is empty");
            }
            Some(Arc::new(CertKey::new(chain.clone(), key.clone())))
        }
        None => None,
    };
    let pool_key = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        material.ca.hash(&mut hasher);
        material
            .client
            .as_ref()
            .map(|(chain, _)| chain)
            .hash(&mut hasher);
        // 0 stays the system roots' key.
        hasher.finish().max(1)
    };
    Ok(Arc::new(EndpointTls {
        ca,
        client,
        pool_key,
    }))
}

/// Resolves `upstream` into its addresses, each with its endpoint. An upstream that does not
/// parse or resolve within 2 s, and every address `policy` refuses (loopback, private,
/// link-local…; checked on each resolution because a name may come to resolve to one), is
/// left out with a warning; a route left with none answers 502.
pub async fn resolve(
    upstream: &str,
    tls: &Arc<EndpointTls>,
    policy: &UpstreamPolicy,
) -> Vec<(SocketAddr, Arc<UpstreamEndpoint>)> {
    let target = match UpstreamTarget::parse(upstream) {
        Ok(target) => target,
        Err(error) => {
            tracing::warn!(upstream, %error, "Upstream skipped: unreadable.");
            return Vec::new();
        }
    };
    let authority = target.authority();
    let resolved =
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(&authority)).await {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(error)) => {
                tracing::warn!(upstream, %error, "Upstream does not resolve; skipped.");
                return Vec::new();
            }
            Err(_) => {
                tracing::warn!(upstream, "Resolving the upstream timed out; skipped.");
                return Vec::new();
            }
        };
    let host_header = if !target.tls || target.port == 443 {
        authority_host(&target)
    } else {
        authority.clone()
    };
    let endpoint = Arc::new(UpstreamEndpoint {
        tls: target.tls.then(|| tls.clone()),
        host: target.host.clone(),
        host_header,
        base_path: target.base_path.clone(),
    });
    resolved
        .filter(|addr| match policy.check_ip(addr.ip()) {
            Ok(()) => true,
            Err(refusal) => {
                tracing::warn!(upstream, address = %addr.ip(), %refusal,
                    "Upstream address refused: an internal network not allowed by \
                     TOLLGATE_UPSTREAM_ALLOW_NETWORKS; skipped.");
                false
            }
        })
        .map(|addr| (addr, endpoint.clone()))
        .collect()
}

/// The host as a `Host` header names it (IPv6 in brackets).
fn authority_host(target: &UpstreamTarget) -> String {
    if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upstreams_resolve_with_their_endpoint_and_internal_ones_are_refused() {
        let tls = endpoint_tls(None).unwrap();
        let allow = UpstreamPolicy::parse("127.0.0.1/32").unwrap();
        let found = resolve("https://127.0.0.1:8443/v2/", &tls, &allow).await;
        assert_eq!(found.len(), 1);
        let (addr, endpoint) = &found[0];
        assert_eq!(addr.port(), 8443);
        assert!(endpoint.tls.is_some());
        assert_eq!(endpoint.base_path, "/v2");
        assert_eq!(endpoint.host_header, "127.0.0.1:8443");
        let plain = resolve("127.0.0.1:80", &tls, &allow).await;
        assert!(plain[0].1.tls.is_none());
        assert!(
            resolve("127.0.0.1:80", &tls, &UpstreamPolicy::strict())
                .await
                .is_empty()
        );
        assert!(resolve("ftp://x:1", &tls, &allow).await.is_empty());
    }

    #[test]
    fn material_pingora_cannot_read_is_refused_up_front() {
        let material = UpstreamTls {
            ca: vec![vec![1, 2, 3]],
            client: None,
        };
        assert!(endpoint_tls(Some(&material)).is_err());
    }
}
