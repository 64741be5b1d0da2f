//! How a route names one upstream: `host:port`, `http://host[:port][/base]` or
//! `https://host[:port][/base]`. The control API validates with it and the proxy resolves with
//! it, so both read an upstream the same way.

/// A parsed upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// `https://`: TLS to the upstream, verified against its host name.
    pub tls: bool,
    /// Host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// Port (80 or 443 when the URL names none).
    pub port: u16,
    /// Path prefixed to every forwarded path: empty, or `/…` without a trailing `/`.
    pub base_path: String,
}

/// An upstream that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be host:port, http://host[:port][/base/path] or https://host[:port][/base/path], e.g. \
     10.0.0.7:8080 or https://api.example.com/v2 ({reason})"
)]
pub struct UpstreamTargetError {
    /// What is wrong.
    pub reason: &'static str,
}

fn error(reason: &'static str) -> UpstreamTargetError {
    UpstreamTargetError { reason }
}

impl UpstreamTarget {
    /// Parses an upstream as a route states it.
    pub fn parse(text: &str) -> Result<Self, UpstreamTargetError> {
        let (tls, rest, scheme) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest, true)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest, true)
        } else if text.contains("://") {
            return Err(error("the scheme must be http or https"));
        } else {
            (false, text, false)
        };
        let (authority, path) = match rest.find('/') {
            Some(at) if scheme => rest.split_at(at),
            Some(_) => return Err(error("a path needs http:// or https://")),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            Some(port) => port,
            None if scheme => {
                if tls {
                    443
                } else {
                    80
                }
            }
            None => return Err(error("the port is missing")),
        };
        Ok(Self {
            tls,
            host,
            port,
            base_path: base_path(path)?,
        })
    }

    /// `host:port`, with brackets around an IPv6 address: what name resolution takes.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), UpstreamTargetError> {
    let bracketed = authority.starts_with('[');
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (address, after) = inner
            .split_once(']')
            .ok_or(error("an IPv6 address needs its closing bracket"))?;
        address
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| error("not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(error("junk after the address"))?),
        };
        (address, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_ok = bracketed
        || ((1..=253).contains(&host.len())
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            && !host.starts_with(['.', '-']));
    if !host_ok {
        return Err(error("not a host name or IP address"));
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0 && p.to_string().len() <= 5)
                .ok_or(error("the port must be 1 to 65535"))
        })
        .transpose()?;
    Ok((host.to_ascii_lowercase(), port))
}

/// A base path: plain segments only (no dot segments, no percent-encoding, no query), so that
/// prefixing it cannot change what the forwarded path means.
fn base_path(path: &str) -> Result<String, UpstreamTargetError> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed.len() > 1024 {
        return Err(error("the base path is longer than 1024 bytes"));
    }
    for segment in trimmed.split('/').skip(1) {
        let plain = !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'-' | b'.'
                            | b'_'
                            | b'~'
                            | b'!'
                            | b'$'
                            | b'&'
                            | b'\''
                            | b'('
                            | b')'
                            | b'*'
                            | b'+'
                            | b','
                            | b';'
                            | b'='
                            | b':'
                            | b'@'
                    )
            });
        if !plain {
            return Err(error(
                "the base path may hold only plain segments: no '.', '..', '//', '%', '?' or '#'",
            ));
        }
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(tls: bool, host: &str, port: u16, base: &str) -> UpstreamTarget {
        UpstreamTarget {
            tls,
            host: host.into(),
            port,
            base_path: base.into(),
        }
    }

    #[test]
    fn every_form_reads_as_scheme_host_port_and_base_path() {
        for (text, want) in [
            ("10.0.0.7:8080", target(false, "10.0.0.7", 8080, "")),
            ("http://backend:80/", target(false, "backend", 80, "")),
            ("http://Backend", target(false, "backend", 80, "")),
            (
                "https://api.example.com",
                target(true, "api.example.com", 443, ""),
            ),
            (
                "https://api.example.com:8443/v2/",
                target(true, "api.example.com", 8443, "/v2"),
            ),
            ("[::1]:9000", target(false, "::1", 9000, "")),
            (
                "https://[2001:db8::1]/a/b",
                target(true, "2001:db8::1", 443, "/a/b"),
            ),
            ("my_service:1", target(false, "my_service", 1, "")),
        ] {
            assert_eq!(UpstreamTarget::parse(text), Ok(want), "{text}");
        }
        assert_eq!(
            UpstreamTarget::parse("[2001:db8::1]:80")
                .unwrap()
                .authority(),
            "[2001:db8::1]:80"
        );
    }

    #[test]
    fn what_cannot_be_read_unambiguously_is_refused() {
        for bad in [
            "backend",
            "backend:0",
            "backend:65536",
            "backend:http",
            "ftp://backend:21",
            "backend:80/path",
            ":80",
            "[zz]:80",
            "back end:80",
            "-x:80",
            "https://a/../admin",
            "https://a/%2e",
            "https://a/x?y",
            "https://a//x",
            "https://a:/x",
            "::1:80",
            "a:b:80",
        ] {
            assert!(UpstreamTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
