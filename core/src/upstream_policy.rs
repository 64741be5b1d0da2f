//! Which addresses a tenant's route may forward to.
//!
//! A route is written by a tenant, so its upstream is untrusted input: pointed at loopback, a
//! private network or the cloud metadata address, it would let a tenant read the gateway's own
//! admin port, metering's `/metrics` or the control API through the gateway. Such addresses are
//! refused unless the operator allows their network (`TOLLGATE_UPSTREAM_ALLOW_NETWORKS`, a
//! comma-separated list of CIDRs: the local stack allows its demo upstream on `127.0.0.1/32`, an
//! in-cluster deployment its service network). The control API applies the policy when a route
//! is written and the proxy again to every address an upstream name resolves to, because a name
//! may resolve to a private address later.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The setting that lists the networks upstreams may be in despite being internal.
pub const ENV_UPSTREAM_ALLOW_NETWORKS: &str = "TOLLGATE_UPSTREAM_ALLOW_NETWORKS";

/// A network in CIDR notation: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    base: IpAddr,
    prefix: u8,
}

/// A CIDR in a setting that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{setting}: {value:?} is not a network in CIDR notation (e.g. 10.0.0.0/8 or fd00::/8): {reason}"
)]
pub struct NetworkParseError {
    /// The setting it came from.
    pub setting: &'static str,
    /// The text as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a comma-separated list of CIDRs from `setting` (empty for none).
pub fn parse_networks(
    setting: &'static str,
    value: &str,
) -> Result<Vec<IpNetwork>, NetworkParseError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            IpNetwork::parse(part).map_err(|reason| NetworkParseError {
                setting,
                value: part.to_owned(),
                reason,
            })
        })
        .collect()
}

impl IpNetwork {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a bare address (a network of one); the error says
    /// what is wrong.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let base: IpAddr = address.parse().map_err(|_| "not an IP address")?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or("the prefix length is out of range")?,
            None => max,
        };
        let network = Self { base, prefix };
        if network.mask(base) != base {
            return Err("host bits are set below the prefix");
        }
        Ok(network)
    }

    /// Whether any of `networks` contains `ip`.
    pub fn any_contains(networks: &[Self], ip: IpAddr) -> bool {
        networks.iter().any(|n| n.contains(ip))
    }

    /// Whether `ip` is inside this network (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.base.is_ipv4() && self.mask(ip) == self.base
    }

    fn mask(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(bits & mask))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        }
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Why an upstream address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamRefusal {
    /// Loopback (`127.0.0.0/8`, `::1`, `localhost`).
    #[error("loopback")]
    Loopback,
    /// A private network (`10/8`, `172.16/12`, `192.168/16`, `100.64/10`, `fc00::/7`).
    #[error("a private network")]
    Private,
    /// Link-local (`169.254/16` with the cloud metadata address, `fe80::/10`).
    #[error("link-local (this includes the cloud metadata address)")]
    LinkLocal,
    /// `0.0.0.0/8`, `::`, broadcast, multicast or reserved space.
    #[error("an unspecified, broadcast, multicast or reserved address")]
    NotUnicast,
}

/// The operator's exceptions to the default refusal of internal addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamPolicy {
    allowed: Vec<IpNetwork>,
}

impl UpstreamPolicy {
    /// Refuses every internal address (the default).
    pub fn strict() -> Self {
        Self::default()
    }

    /// Also allows `networks`.
    pub fn allowing(networks: Vec<IpNetwork>) -> Self {
        Self { allowed: networks }
    }

    /// Parses the value of [`ENV_UPSTREAM_ALLOW_NETWORKS`]: comma-separated CIDRs, empty for none.
    pub fn parse(value: &str) -> Result<Self, NetworkParseError> {
        parse_networks(ENV_UPSTREAM_ALLOW_NETWORKS, value).map(Self::allowing)
    }

    /// The allowed networks.
    pub fn allowed(&self) -> &[IpNetwork] {
        &self.allowed
    }

    /// `Ok` when a route may forward to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), UpstreamRefusal> {
        match internal_kind(ip) {
            Some(refusal) if !self.allowed.iter().any(|n| n.contains(ip)) => Err(refusal),
            _ => Ok(()),
        }
    }

    /// `Ok` when a route may name `host` (an IP literal, with or without IPv6 brackets, or a
    /// name). Names are checked again once resolved; `localhost` and `*.localhost` resolve to
    /// loopback by definition (RFC 6761), so they are judged as `127.0.0.1` here.
    pub fn check_host(&self, host: &str) -> Result<(), UpstreamRefusal> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check_ip(ip);
        }
        let name = bare.strip_suffix('.').unwrap_or(bare);
        let is_localhost = name.eq_ignore_ascii_case("localhost")
            || name
                .len()
                .checked_sub(".localhost".len())
                .and_then(|at| name.get(at..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(".localhost"));
        if is_localhost {
            return self.check_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        Ok(())
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it stands for.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// What kind of internal address `ip` is; `None` for a public unicast address.
pub fn internal_kind(ip: IpAddr) -> Option<UpstreamRefusal> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some(UpstreamRefusal::Loopback)
            } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
                Some(UpstreamRefusal::Private)
            } else if v4.is_link_local() {
                Some(UpstreamRefusal::LinkLocal)
            } else if a == 0 || a >= 224 {
                // 0/8 "this network" (0.0.0.0 reaches loopback on Linux), multicast, 240/4
                // reserved and broadcast.
                Some(UpstreamRefusal::NotUnicast)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some(UpstreamRefusal::Loopback)
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some(UpstreamRefusal::NotUnicast)
            } else if first & 0xfe00 == 0xfc00 {
                Some(UpstreamRefusal::Private)
            } else if first & 0xffc0 == 0xfe80 {
                Some(UpstreamRefusal::LinkLocal)
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_by_default() {
        let policy = UpstreamPolicy::strict();
        for (address, kind) in [
            ("127.0.0.1", UpstreamRefusal::Loopback),
            ("127.8.9.10", UpstreamRefusal::Loopback),
            ("::1", UpstreamRefusal::Loopback),
            ("::ffff:127.0.0.1", UpstreamRefusal::Loopback),
            ("10.1.2.3", UpstreamRefusal::Private),
            ("172.16.0.1", UpstreamRefusal::Private),
            ("172.31.255.255", UpstreamRefusal::Private),
            ("192.168.1.1", UpstreamRefusal::Private),
            ("100.64.0.1", UpstreamRefusal::Private),
            ("fc00::1", UpstreamRefusal::Private),
            ("fd12:3456::1", UpstreamRefusal::Private),
            ("169.254.169.254", UpstreamRefusal::LinkLocal),
            ("fe80::1", UpstreamRefusal::LinkLocal),
            ("0.0.0.0", UpstreamRefusal::NotUnicast),
            ("::", UpstreamRefusal::NotUnicast),
            ("255.255.255.255", UpstreamRefusal::NotUnicast),
            ("224.0.0.1", UpstreamRefusal::NotUnicast),
        ] {
            assert_eq!(policy.check_ip(ip(address)), Err(kind), "{address}");
        }
        for public in ["93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700::1"] {
            assert_eq!(policy.check_ip(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn hosts_are_judged_as_literals_or_localhost_names() {
        let policy = UpstreamPolicy::strict();
        for refused in [
            "127.0.0.1",
            "[::1]",
            "localhost",
            "LocalHost.",
            "api.localhost",
        ] {
            assert!(policy.check_host(refused).is_err(), "{refused}");
        }
        for accepted in ["api.example.com", "notlocalhost", "[2606:4700::1]"] {
            assert!(policy.check_host(accepted).is_ok(), "{accepted}");
        }
    }

    #[test]
    fn allowed_networks_are_exceptions() {
        let policy = UpstreamPolicy::parse(" 127.0.0.1/32, 10.0.0.0/8 ,fd00::/8").unwrap();
        assert_eq!(policy.allowed().len(), 3);
        assert_eq!(policy.check_ip(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check_host("localhost"), Ok(()));
        assert_eq!(
            policy.check_ip(ip("127.0.0.2")),
            Err(UpstreamRefusal::Loopback)
        );
        assert_eq!(policy.check_ip(ip("10.200.0.1")), Ok(()));
        assert_eq!(policy.check_ip(ip("::ffff:10.0.0.1")), Ok(()));
        assert_eq!(policy.check_ip(ip("fd00::7")), Ok(()));
        assert_eq!(
            policy.check_ip(ip("192.168.0.1")),
            Err(UpstreamRefusal::Private)
        );
        assert_eq!(UpstreamPolicy::parse("").unwrap(), UpstreamPolicy::strict());
    }

    #[test]
    fn bad_networks_name_the_setting() {
        for bad in ["10.0.0.0/33", "10.0.0.1/8", "ten", "::/129", "1.2.3.4/x"] {
            let error = UpstreamPolicy::parse(bad).unwrap_err().to_string();
            assert!(error.contains(ENV_UPSTREAM_ALLOW_NETWORKS), "{error}");
            assert!(error.contains(bad), "{error}");
        }
        assert_eq!(
            IpNetwork::parse("0.0.0.0/0").unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert!(
            IpNetwork::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        assert!(!IpNetwork::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
    }
}
