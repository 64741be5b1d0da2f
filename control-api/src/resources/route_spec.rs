//! What a route may say, checked before it reaches the `routes` table: the schema's CHECKs
//! would refuse most of this too, but without naming the field.

use tollgate_core::{UpstreamPolicy, UpstreamTarget, UpstreamTls};

use crate::error::ApiError;
use crate::validate;

/// Most upstreams in one route's pool (the schema's limit).
pub const MAX_UPSTREAMS: usize = 64;
/// Longest path prefix (the schema's limit).
const MAX_PATH_PREFIX: usize = 1024;

/// A route's settings after validation, ready for the `routes` columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// A label.
    pub name: String,
    /// Lower-cased host (optionally with a port); `None` matches any host.
    pub host: Option<String>,
    /// Starts with `/`.
    pub path_prefix: String,
    /// Whether the prefix is removed before forwarding.
    pub strip_prefix: bool,
    /// `host:port`, `http://host[:port][/base]` or `https://host[:port][/base]`, each.
    pub upstreams: Vec<String>,
    /// 1 to 60 000.
    pub connect_timeout_ms: i32,
    /// 1 to 600 000.
    pub read_timeout_ms: i32,
    /// 0 to 5.
    pub retries: i16,
    /// At least 0.
    pub max_body_bytes: i64,
    /// A scope the calling key must hold.
    pub required_scope: Option<String>,
    /// PEM CA bundle `https://` upstreams are verified against (default: system roots).
    pub tls_ca_pem: Option<String>,
    /// PEM client certificate chain for mutual TLS.
    pub tls_client_cert_pem: Option<String>,
    /// PEM key of the client certificate.
    pub tls_client_key_pem: Option<String>,
}

/// Unvalidated route settings as a request states them (after applying defaults or the
/// current values of a partial update).
#[derive(Debug, Clone, Default)]
pub struct RouteInput {
    /// See [`RouteSpec::name`].
    pub name: String,
    /// See [`RouteSpec::host`].
    pub host: Option<String>,
    /// See [`RouteSpec::path_prefix`].
    pub path_prefix: String,
    /// See [`RouteSpec::strip_prefix`].
    pub strip_prefix: bool,
    /// See [`RouteSpec::upstreams`].
    pub upstreams: Vec<String>,
    /// See [`RouteSpec::connect_timeout_ms`].
    pub connect_timeout_ms: u64,
    /// See [`RouteSpec::read_timeout_ms`].
    pub read_timeout_ms: u64,
    /// See [`RouteSpec::retries`].
    pub retries: u64,
    /// See [`RouteSpec::max_body_bytes`].
    pub max_body_bytes: u64,
    /// See [`RouteSpec::required_scope`].
    pub required_scope: Option<String>,
    /// See [`RouteSpec::tls_ca_pem`].
    pub tls_ca_pem: Option<String>,
    /// See [`RouteSpec::tls_client_cert_pem`].
    pub tls_client_cert_pem: Option<String>,
    /// See [`RouteSpec::tls_client_key_pem`].
    pub tls_client_key_pem: Option<String>,
}

impl RouteInput {
    /// Checks every field; the error names the first bad one. Upstreams in internal networks
    /// are refused unless `policy` allows them.
    pub fn validate(self, policy: &UpstreamPolicy) -> Result<RouteSpec, ApiError> {
        let name = validate::optional_text("name", &self.name, 200)?;
        let host = self.host.map(|h| host("host", &h)).transpose()?;
        let path_prefix = path_prefix(&self.path_prefix)?;
        if self.upstreams.is_empty() || self.upstreams.len() > MAX_UPSTREAMS {
            return Err(ApiError::invalid(
                "upstreams",
                format!("must list 1 to {MAX_UPSTREAMS} upstreams"),
            ));
        }
        let upstreams = self
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| upstream(&format!("upstreams[{i}]"), u, policy))
            .collect::<Result<Vec<_>, _>>()?;
        let connect_timeout_ms = bounded("connect_timeout_ms", self.connect_timeout_ms, 1, 60_000)?;
        let read_timeout_ms = bounded("read_timeout_ms", self.read_timeout_ms, 1, 600_000)?;
        let retries = bounded("retries", self.retries, 0, 5)?;
        let max_body_bytes = i64::try_from(self.max_body_bytes)
            .map_err(|_| ApiError::invalid("max_body_bytes", "is too large"))?;
        let required_scope = match self.required_scope {
            Some(scope) => {
                validate::scope("required_scope", &scope)?;
                Some(scope)
            }
            None => None,
        };
        UpstreamTls::from_pem(
            self.tls_ca_pem.as_deref(),
            self.tls_client_cert_pem.as_deref(),
            self.tls_client_key_pem.as_deref(),
        )
        .map_err(|e| ApiError::invalid(e.field, e.reason))?;
        Ok(RouteSpec {
            name,
            host,
            path_prefix,
            strip_prefix: self.strip_prefix,
            upstreams,
            connect_timeout_ms,
            read_timeout_ms,
            retries,
            max_body_bytes,
            required_scope,
            tls_ca_pem: self.tls_ca_pem,
            tls_client_cert_pem: self.tls_client_cert_pem,
            tls_client_key_pem: self.tls_client_key_pem,
        })
    }
}

fn bounded<T: TryFrom<u64>>(field: &str, value: u64, min: u64, max: u64) -> Result<T, ApiError> {
    if (min..=max).contains(&value) {
        T::try_from(value).map_err(|_| ApiError::invalid(field, "is out of range"))
    } else {
        Err(ApiError::invalid(
            field,
            format!("must be between {min} and {max}"),
        ))
    }
}

fn path_prefix(value: &str) -> Result<String, ApiError> {
    const FIELD: &str = "path_prefix";
    if !value.starts_with('/') {
        return Err(ApiError::invalid(FIELD, "must start with '/'"));
    }
    if value.len() > MAX_PATH_PREFIX {
        return Err(ApiError::invalid(
            FIELD,
            format!("must be at most {MAX_PATH_PREFIX} bytes"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '?' || c == '#')
    {
        return Err(ApiError::invalid(
            FIELD,
            "must be a path: no spaces, control characters, '?' or '#'",
        ));
    }
    Ok(value.to_owned())
}

/// A host name (letters, digits, `.`, `-`, a leading `*.` wildcard) with an optional port,
/// lower-cased as hosts compare case-insensitively.
fn host(field: &str, value: &str) -> Result<String, ApiError> {
    let (name, port) = match value.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (value, None),
    };
    let name_ok = (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'*'));
    if !name_ok || port.is_some_and(|p| !valid_port(p)) {
        return Err(ApiError::invalid(
            field,
            "must be a host name with an optional port, e.g. api.example.com or api.example.com:8443",
        ));
    }
    Ok(value.to_ascii_lowercase())
}

/// `host:port`, `http://host[:port][/base]` or `https://host[:port][/base]` (IPv6 in
/// brackets), as [`UpstreamTarget`] reads it, outside the internal networks `policy` refuses.
fn upstream(field: &str, value: &str, policy: &UpstreamPolicy) -> Result<String, ApiError> {
    let target =
        UpstreamTarget::parse(value).map_err(|e| ApiError::invalid(field, e.to_string()))?;
    // A name is checked again by the proxy each time it resolves it.
    if let Err(refusal) = policy.check_host(&target.host) {
        return Err(ApiError::invalid(
            field,
            format!(
                "{value} is {refusal}: routes may not forward to internal networks unless the \
                 operator allows them"
            ),
        ));
    }
    Ok(value.to_owned())
}

fn valid_port(port: &str) -> bool {
    (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> RouteInput {
        RouteInput {
            path_prefix: "/v1".into(),
            upstreams: vec!["127.0.0.1:8080".into()],
            connect_timeout_ms: 2000,
            read_timeout_ms: 30_000,
            retries: 1,
            max_body_bytes: 1024,
            ..RouteInput::default()
        }
    }

    fn loopback_allowed() -> UpstreamPolicy {
        UpstreamPolicy::parse("127.0.0.1/32").unwrap()
    }

    fn field_of(input: RouteInput) -> Option<String> {
        match input.validate(&loopback_allowed()) {
            Err(ApiError::InvalidField { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn upstreams_are_host_port_or_http_urls() {
        for good in [
            "127.0.0.1:8080",
            "http://backend.internal:80",
            "http://backend:80/",
            "[::1]:9000",
            "my_service:1",
            "https://backend:443",
            "https://api.example.com/v2",
            "http://backend:80/path",
        ] {
            assert!(upstream("u", good, &allowing_all()).is_ok(), "{good}");
        }
        for bad in [
            "backend",
            "backend:0",
            "backend:65536",
            "backend:http",
            "ftp://backend:21",
            "https://backend/../admin",
            ":80",
            "[zz]:80",
            "back end:80",
            "-x:80",
        ] {
            assert!(upstream("u", bad, &allowing_all()).is_err(), "{bad}");
        }
    }

    fn allowing_all() -> UpstreamPolicy {
        UpstreamPolicy::parse("0.0.0.0/0,::/0").unwrap()
    }

    #[test]
    fn internal_upstreams_are_refused_naming_the_upstream_unless_allowed() {
        let strict = UpstreamPolicy::strict();
        for internal in [
            "127.0.0.1:8080",
            "http://localhost:9101",
            "[::1]:80",
            "10.0.0.7:80",
            "172.16.1.1:80",
            "192.168.0.10:80",
            "169.254.169.254:80",
            "[fe80::1]:80",
            "[fd00::1]:80",
            "0.0.0.0:80",
        ] {
            let Err(ApiError::InvalidField { field, message }) =
                upstream("upstreams[0]", internal, &strict)
            else {
                panic!("{internal} was accepted");
            };
            assert_eq!(field.as_deref(), Some("upstreams[0]"));
            assert!(message.contains(internal), "{message}");
        }
        assert!(upstream("u", "api.example.com:443", &strict).is_ok());
        assert!(upstream("u", "93.184.216.34:80", &strict).is_ok());
        assert!(upstream("u", "127.0.0.1:8080", &loopback_allowed()).is_ok());
        assert!(upstream("u", "10.0.0.7:80", &loopback_allowed()).is_err());
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            field_of(RouteInput {
                path_prefix: "v1".into(),
                ..input()
            }),
            Some("path_prefix".into())
        );
        assert_eq!(
            field_of(RouteInput {
                upstreams: vec!["a:1".into(), "nope".into()],
                ..input()
            }),
            Some("upstreams[1]".into())
        );
        assert_eq!(
            field_of(RouteInput {
                upstreams: vec![],
                ..input()
            }),
            Some("upstreams".into())
        );
        assert_eq!(
            field_of(RouteInput {
                upstreams: vec!["a:1".into(); MAX_UPSTREAMS + 1],
                ..input()
            }),
            Some("upstreams".into())
        );
        assert_eq!(
            field_of(RouteInput {
                retries: 6,
                ..input()
            }),
            Some("retries".into())
        );
        assert_eq!(
            field_of(RouteInput {
                connect_timeout_ms: 0,
                ..input()
            }),
            Some("connect_timeout_ms".into())
        );
        assert_eq!(
            field_of(RouteInput {
                max_body_bytes: u64::MAX,
                ..input()
            }),
            Some("max_body_bytes".into())
        );
        assert_eq!(
            field_of(RouteInput {
                host: Some("api.example.com:99999".into()),
                ..input()
            }),
            Some("host".into())
        );
        assert_eq!(
            field_of(RouteInput {
                required_scope: Some("Not A Scope".into()),
                ..input()
            }),
            Some("required_scope".into())
        );
    }

    #[test]
    fn a_valid_route_is_normalised() {
        let spec = RouteInput {
            host: Some("API.Example.com:8443".into()),
            required_scope: Some("orders:read".into()),
            ..input()
        }
        .validate(&loopback_allowed())
        .unwrap();
        assert_eq!(spec.host.as_deref(), Some("api.example.com:8443"));
        assert_eq!(spec.retries, 1);
    }
}
