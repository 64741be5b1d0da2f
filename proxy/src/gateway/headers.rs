//! Headers the gateway reads or writes besides the credential: the client address behind
//! trusted proxies, the forwarding headers the upstream receives, and the rate-limit headers.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use time::OffsetDateTime;
use tollgate_core::IpNetwork;

use crate::limits::{LimitDecision, LimitVerdict, seconds_until_next_month};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

const FORWARDING_COUNT: usize = 6;

/// Headers a client could use to claim another address or host; an untrusted peer's are
/// dropped before forwarding.
const FORWARDING_HEADERS: [HeaderName; FORWARDING_COUNT] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-real-ip"),
    http::header::FORWARDED,
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-port"),
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
    let peer_value = peer.map(address_value);
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
        let host = upstream.headers.get(http::header::HOST).cloned();
        // Most requests carry none of them: one pass over the names finds those to remove
        // (a removal by name costs a hash and a lookup in each of Pingora's two maps).
        let mut present = [false; FORWARDING_COUNT];
        for name in upstream.headers.keys() {
            if let Some(i) = FORWARDING_HEADERS.iter().position(|f| f == name) {
                present[i] = true;
            }
        }
        for (name, _) in FORWARDING_HEADERS.iter().zip(present).filter(|(_, p)| *p) {
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
        (Some(client), _) => Some(address_value(client)),
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

thread_local! {
    /// The address formatted last on this worker thread: a connection's requests, and every
    /// request through an ingress, come from the same one (formatting it cost ~1,300
    /// instructions per request).
    static LAST_ADDRESS: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
}

/// `ip` as a header value.
fn address_value(ip: IpAddr) -> HeaderValue {
    LAST_ADDRESS.with_borrow_mut(|last| match last {
        Some((known, value)) if *known == ip => value.clone(),
        _ => {
            // An address's text is digits, dots, hex and colons: always a valid value.
            let value = header_value(ip.to_string());
            *last = Some((ip, value.clone()));
            value
        }
    })
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

/// Per-policy header values, computed once per policy and worker thread rather than per
/// response: a proxied request carries eight limit headers, and formatting them was a tenth
/// of its instructions (callgrind, `make profile`).
#[derive(Clone)]
struct PolicyValues {
    key: (u32, u32, Option<u64>),
    /// `"burst";q=…;w=…`
    burst_policy: HeaderValue,
    /// The burst, for `X-RateLimit-Limit`.
    burst: HeaderValue,
    /// The monthly quota, for `X-Quota-Limit`.
    quota_limit: Option<HeaderValue>,
}

/// Policies a worker thread keeps values of (most deployments have a handful of plans).
const POLICY_CACHE_ENTRIES: usize = 16;

thread_local! {
    static POLICY_VALUES: RefCell<Vec<PolicyValues>> = const { RefCell::new(Vec::new()) };
    /// `X-Quota-Reset` of the current second: (unix second, seconds until the next month).
    static QUOTA_RESET: RefCell<Option<(u64, HeaderValue)>> = const { RefCell::new(None) };
}

fn policy_values(decision: &LimitDecision) -> PolicyValues {
    let policy = decision.policy;
    let key = (
        policy.requests_per_second,
        policy.burst,
        decision.quota.map(|q| q.limit),
    );
    POLICY_VALUES.with_borrow_mut(|cache| {
        if let Some(found) = cache.iter().find(|v| v.key == key) {
            return found.clone();
        }
        let window = u64::from(policy.burst)
            .div_ceil(u64::from(policy.requests_per_second.max(1)))
            .max(1);
        let values = PolicyValues {
            key,
            burst_policy: header_value(format!("\"burst\";q={};w={window}", policy.burst)),
            burst: HeaderValue::from(policy.burst),
            quota_limit: key.2.map(HeaderValue::from),
        };
        if cache.len() >= POLICY_CACHE_ENTRIES {
            cache.remove(0);
        }
        cache.push(values.clone());
        values
    })
}

/// Seconds until the next UTC month, as a header value, computed once per second.
fn quota_reset_value() -> HeaderValue {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    QUOTA_RESET.with_borrow_mut(|cached| match cached {
        Some((second, value)) if *second == unix => value.clone(),
        _ => {
            let now = OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(0))
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let value = HeaderValue::from(seconds_until_next_month(now));
            *cached = Some((unix, value.clone()));
            value
        }
    })
}

/// A value the gateway formatted itself (digits, quotes, `;=,` and spaces: always valid).
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Adds the rate-limit (IETF draft and `X-RateLimit-*`) and quota headers of `decision`. They
/// describe the policy that decided: the burst policy, or the monthly quota once it refused.
pub fn apply_limit_headers(header: &mut ResponseHeader, decision: &LimitDecision) -> Result<()> {
    let values = policy_values(decision);
    let quota_reset = decision.quota.map(|_| quota_reset_value());
    match (decision.verdict, decision.quota) {
        (LimitVerdict::QuotaExceeded, Some(quota)) => {
            // Rare (the quota is used up): formatted here.
            let now = OffsetDateTime::now_utc();
            let reset = seconds_until_next_month(now).max(1);
            let window = u64::from(decision.policy.burst)
                .div_ceil(u64::from(decision.policy.requests_per_second.max(1)))
                .max(1);
            header.insert_header(
                "ratelimit-policy",
                format!(
                    "\"quota\";q={};w={}, \"burst\";q={};w={window}",
                    quota.limit,
                    seconds_in_month(now),
                    decision.policy.burst
                ),
            )?;
            header.insert_header("ratelimit", format!("\"quota\";r=0;t={reset}"))?;
            header.insert_header("x-ratelimit-limit", quota.limit)?;
            header.insert_header("x-ratelimit-remaining", HeaderValue::from_static("0"))?;
            header.insert_header("x-ratelimit-reset", reset)?;
            header.insert_header("retry-after", reset)?;
        }
        _ => {
            let reset = ceil_seconds(decision.rate.reset_after);
            header.insert_header("ratelimit-policy", values.burst_policy)?;
            let mut ratelimit = String::with_capacity(32);
            let _ = write!(
                ratelimit,
                "\"burst\";r={};t={reset}",
                decision.rate.remaining
            );
            header.insert_header("ratelimit", header_value(ratelimit))?;
            header.insert_header("x-ratelimit-limit", values.burst)?;
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
    if let (Some(quota), Some(limit), Some(reset)) =
        (decision.quota, values.quota_limit, quota_reset)
    {
        header.insert_header("x-quota-limit", limit)?;
        header.insert_header("x-quota-remaining", quota.remaining())?;
        header.insert_header("x-quota-reset", reset)?;
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
    fn consecutive_addresses_each_get_their_own_value() {
        // One thread, so the second address meets the remembered first one.
        for address in ["5.5.5.5", "2001:db8::1"] {
            let mut upstream = request(&[]);
            set_forwarding_headers(&mut upstream, Some(ip(address)), Some(ip(address)), false)
                .unwrap();
            assert_eq!(upstream.headers["x-forwarded-for"], address);
            assert_eq!(upstream.headers["x-real-ip"], address);
        }
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
