//! Headers the gateway reads or writes besides the credential: the client address behind
//! trusted proxies, the forwarding headers the upstream receives, and the rate-limit headers.

use std::net::IpAddr;

use http::HeaderValue;
use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use time::OffsetDateTime;
use tollgate_core::IpNetwork;

use crate::limits::{LimitDecision, LimitVerdict, seconds_until_next_month};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Headers a client could use to claim another address or host; an untrusted peer's are
/// dropped before forwarding.
const FORWARDING_HEADERS: [&str; 6] = [
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
];

/// The client's address: the peer's, or, when the peer is one of `trusted` (an ingress in
/// front of the gateway), the rightmost `X-Forwarded-For` entry that is not itself trusted.
/// The second value says whether the peer is trusted.
pub fn client_address(
    peer: Option<IpAddr>,
    request: &RequestHeader,
    trusted: &[IpNetwork],
) -> (Option<IpAddr>, bool) {
    let Some(peer_ip) = peer.filter(|ip| IpNetwork::any_contains(trusted, *ip)) else {
        return (peer, false);
    };
    let mut client = None;
    // Several headers count as one list, in order (RFC 9110 §5.3).
    for value in request.headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else { continue };
        for entry in value.split(',') {
            if let Ok(ip) = entry.trim().parse::<IpAddr>() {
                // The last untrusted hop wins; a trusted one only while nothing else is known.
                if !IpNetwork::any_contains(trusted, ip) || client.is_none() {
                    client = Some(ip);
                }
            }
        }
    }
    (Some(client.unwrap_or(peer_ip)), true)
}

/// Rewrites the forwarding headers of `upstream`: from an untrusted peer, every client-supplied
/// one is dropped and the gateway's own are set; from a trusted proxy they are kept and the
/// peer is appended to `X-Forwarded-For`. `X-Real-IP` is always the client address.
pub fn set_forwarding_headers(
    upstream: &mut RequestHeader,
    peer: Option<IpAddr>,
    client: Option<IpAddr>,
    peer_trusted: bool,
) -> Result<()> {
    // Each address is formatted once; a header value is shared, not copied.
    let peer_value = peer.and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok());
    if peer_trusted {
        if let Some(peer) = &peer_value {
            let mut chain = String::new();
            for value in upstream.headers.get_all("x-forwarded-for") {
                if let Ok(value) = value.to_str() {
                    chain.push_str(value);
                    chain.push_str(", ");
                }
            }
            if chain.is_empty() {
                upstream.insert_header("x-forwarded-for", peer.clone())?;
            } else {
                chain.push_str(peer.to_str().unwrap_or_default());
                upstream.insert_header("x-forwarded-for", chain)?;
            }
        }
    } else {
        let host = upstream.headers.get("host").cloned();
        for name in FORWARDING_HEADERS {
            upstream.remove_header(name);
        }
        if let Some(peer) = &peer_value {
            upstream.insert_header("x-forwarded-for", peer.clone())?;
        }
        upstream.insert_header("x-forwarded-proto", HeaderValue::from_static("http"))?;
        if let Some(host) = host {
            upstream.insert_header("x-forwarded-host", host)?;
        }
    }
    let client_value = match (client, &peer_value) {
        (Some(client), Some(value)) if Some(client) == peer => Some(value.clone()),
        (Some(client), _) => HeaderValue::from_str(&client.to_string()).ok(),
        (None, _) => None,
    };
    match client_value {
        Some(value) => upstream.insert_header("x-real-ip", value)?,
        None => {
            upstream.remove_header("x-real-ip");
        }
    }
    Ok(())
}

/// Bytes of the request line and headers, as received (give or take whitespace).
pub fn head_bytes(request: &RequestHeader) -> usize {
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

/// Seconds in the UTC month of `now`: the window of a monthly quota.
fn seconds_in_month(now: OffsetDateTime) -> u64 {
    u64::from(now.month().length(now.year())) * 86_400
}

/// Adds the rate-limit (IETF draft and `X-RateLimit-*`) and quota headers of `decision`. They
/// describe the policy that decided: the burst policy, or the monthly quota once it refused.
pub fn apply_limit_headers(header: &mut ResponseHeader, decision: &LimitDecision) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    let policy = decision.policy;
    let window = u64::from(policy.burst)
        .div_ceil(u64::from(policy.requests_per_second.max(1)))
        .max(1);
    match (decision.verdict, decision.quota) {
        (LimitVerdict::QuotaExceeded, Some(quota)) => {
            let reset = seconds_until_next_month(now).max(1);
            header.insert_header(
                "ratelimit-policy",
                format!(
                    "\"quota\";q={};w={}, \"burst\";q={};w={window}",
                    quota.limit,
                    seconds_in_month(now),
                    policy.burst
                ),
            )?;
            header.insert_header("ratelimit", format!("\"quota\";r=0;t={reset}"))?;
            header.insert_header("x-ratelimit-limit", quota.limit)?;
            header.insert_header("x-ratelimit-remaining", 0)?;
            header.insert_header("x-ratelimit-reset", reset)?;
            header.insert_header("retry-after", reset)?;
        }
        _ => {
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
            if decision.verdict == LimitVerdict::RateLimited {
                header.insert_header(
                    "retry-after",
                    ceil_seconds(decision.rate.retry_after).max(1),
                )?;
            }
        }
    }
    if let Some(quota) = decision.quota {
        header.insert_header("x-quota-limit", quota.limit)?;
        header.insert_header("x-quota-remaining", quota.remaining())?;
        header.insert_header("x-quota-reset", seconds_until_next_month(now))?;
        if quota.used > quota.limit {
            header.insert_header("x-quota-overage", quota.used - quota.limit)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tollgate_core::{QuotaCap, RatePolicy};

    use super::*;
    use crate::gcra::RateDecision;
    use crate::limits::QuotaState;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        for (name, value) in headers {
            request.append_header(name.to_string(), *value).unwrap();
        }
        request
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted = [IpNetwork::parse("10.0.0.0/8").unwrap()];
        let claims = request(&[
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4"),
            ("x-forwarded-for", "10.0.0.9"),
        ]);
        assert_eq!(
            client_address(Some(ip("5.5.5.5")), &claims, &trusted),
            (Some(ip("5.5.5.5")), false)
        );
        assert_eq!(
            client_address(Some(ip("10.1.1.1")), &claims, &trusted),
            (Some(ip("1.2.3.4")), true)
        );
        assert_eq!(
            client_address(Some(ip("10.1.1.1")), &request(&[]), &trusted),
            (Some(ip("10.1.1.1")), true)
        );
        assert_eq!(
            client_address(Some(ip("10.1.1.1")), &claims, &[]),
            (Some(ip("10.1.1.1")), false)
        );
    }

    #[test]
    fn an_untrusted_peers_forwarding_headers_are_replaced() {
        let mut upstream = request(&[
            ("host", "api.example.com"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-host", "admin.internal"),
        ]);
        set_forwarding_headers(
            &mut upstream,
            Some(ip("5.5.5.5")),
            Some(ip("5.5.5.5")),
            false,
        )
        .unwrap();
        let get = |name| upstream.headers.get(name).map(|v| v.to_str().unwrap());
        assert_eq!(get("x-forwarded-for"), Some("5.5.5.5"));
        assert_eq!(get("x-real-ip"), Some("5.5.5.5"));
        assert_eq!(get("x-forwarded-host"), Some("api.example.com"));
        assert_eq!(get("forwarded"), None);
        assert_eq!(
            upstream.headers.get_all("x-forwarded-for").iter().count(),
            1
        );
    }

    #[test]
    fn a_trusted_proxys_chain_is_extended() {
        let mut upstream = request(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "7.7.7.7"),
        ]);
        set_forwarding_headers(
            &mut upstream,
            Some(ip("10.0.0.2")),
            Some(ip("7.7.7.7")),
            true,
        )
        .unwrap();
        let get = |name| upstream.headers.get(name).map(|v| v.to_str().unwrap());
        assert_eq!(get("x-forwarded-for"), Some("1.2.3.4, 7.7.7.7, 10.0.0.2"));
        assert_eq!(get("x-real-ip"), Some("7.7.7.7"));
    }

    #[test]
    fn a_quota_refusal_reports_the_quota_not_the_burst() {
        let decision = LimitDecision {
            verdict: LimitVerdict::QuotaExceeded,
            policy: RatePolicy {
                requests_per_second: 10,
                burst: 20,
                strict: false,
            },
            rate: RateDecision {
                allowed: true,
                remaining: 0,
                reset_after: 0,
                retry_after: 0,
            },
            quota: Some(QuotaState {
                limit: 1000,
                used: 1000,
                cap: QuotaCap::Hard,
            }),
        };
        let mut header = ResponseHeader::build(429, None).unwrap();
        apply_limit_headers(&mut header, &decision).unwrap();
        let get = |name| {
            header
                .headers
                .get(name)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        };
        let reset = get("retry-after");
        assert!(reset.parse::<u64>().unwrap() >= 1);
        assert_eq!(get("x-ratelimit-reset"), reset);
        assert_eq!(get("x-ratelimit-limit"), "1000");
        assert_eq!(get("x-ratelimit-remaining"), "0");
        assert_eq!(get("ratelimit"), format!("\"quota\";r=0;t={reset}"));
        assert!(get("ratelimit-policy").starts_with("\"quota\";q=1000;w="));
        assert_eq!(header.headers.get_all("retry-after").iter().count(), 1);
    }
}
