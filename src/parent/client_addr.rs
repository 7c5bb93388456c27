//! Who is on the other end of a request: the socket peer, and — only when that peer is one of
//! `cascade.trusted_proxies` — what the proxy says in `X-Forwarded-For`, `-Host` and `-Proto`.
//! One place for the rule, used by login throttling and by feed self-links.
//!
//! Also the address blocks ([`Cidr`]) both settings and `cascade.callback_allow` are written in.

use super::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{HeaderMap, request::Parts};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An address block: `10.0.0.0/8`, `fc00::/7`, or one address (`127.0.0.1`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// A text that is neither an address nor a block.
#[derive(Debug, Clone, thiserror::Error)]
#[error("'{0}' is not an IP address or CIDR block")]
pub struct BadCidr(pub String);

impl std::str::FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadCidr(s.to_string());
        let text = s.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        Ok(Self { net, prefix })
    }
}

impl Cidr {
    /// Whether `ip` lies in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Parses a config list of addresses and blocks; `key` names the setting in errors.
///
/// # Errors
/// The first entry that is not an address or block, naming `key`.
pub fn parse_cidrs(key: &str, list: &[String]) -> anyhow::Result<Vec<Cidr>> {
    list.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.parse::<Cidr>()
                .map_err(|e| anyhow::anyhow!("config key 'cascade.{key}': {e}"))
        })
        .collect()
}

/// `cascade.trusted_proxies`: the reverse proxies whose forwarded headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<Cidr>,
}

impl TrustedProxies {
    /// From the config list.
    ///
    /// # Errors
    /// An entry that is not an address or block.
    pub fn from_config(list: &[String]) -> anyhow::Result<Self> {
        Ok(Self {
            nets: parse_cidrs("trusted_proxies", list)?,
        })
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client's address: `peer` itself unless it is a trusted proxy; then the right-most
    /// `X-Forwarded-For` hop that is not a trusted proxy (hops to its left are the client's
    /// own claims). When every hop is trusted, the left-most one; when a hop cannot be read,
    /// the last trusted hop before it.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_values(headers, "x-forwarded-for").rev() {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// Every comma-separated value of every `name` header, in order.
fn forwarded_values<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> impl DoubleEndedIterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>()
        .into_iter()
}

/// One `X-Forwarded-For` hop: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| hop.trim_start_matches('[').trim_end_matches(']').parse())
        .ok()
        .map(|ip: IpAddr| ip.to_canonical())
}

/// The right-most value of a forwarded header (the one the nearest proxy wrote).
pub fn forwarded_last<'a>(headers: &'a HeaderMap, name: &'static str) -> Option<&'a str> {
    forwarded_values(headers, name)
        .next_back()
        .filter(|v| !v.is_empty())
}

/// The client of a request, as far as the parent can tell (an extractor; never fails).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr {
    /// The client's address (see [`TrustedProxies::client_ip`]).
    pub ip: IpAddr,
    /// Whether the socket peer is a trusted proxy, so its forwarded headers are believed.
    pub via_trusted_proxy: bool,
}

impl ClientAddr {
    /// The key login throttling counts under: the address, an IPv6 one widened to its /64
    /// (one subscriber's usual allotment, which a single attacker can rotate through).
    pub fn throttle_key(&self) -> IpAddr {
        match self.ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
            v4 => v4,
        }
    }
}

/// The socket peer of a request (served with connect info), or `0.0.0.0` when the server
/// did not record one.
fn peer_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| {
            c.0.ip().to_canonical()
        })
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = peer_ip(parts);
        let proxies = &state.trusted_proxies;
        Ok(Self {
            ip: proxies.client_ip(peer, &parts.headers),
            via_trusted_proxy: proxies.trusts(peer),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c: Cidr = "10.0.0.0/8".parse().expect("cidr");
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(
            c.contains(ip("::ffff:10.1.2.3")),
            "mapped IPv6 counts as IPv4"
        );
        let one: Cidr = "127.0.0.1".parse().expect("one");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "fc00::/7".parse().expect("v6");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("all");
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        assert!(
            "[::1]"
                .parse::<Cidr>()
                .expect("bracketed")
                .contains(ip("::1"))
        );
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/x",
            "host.example",
            "",
            "::1/129",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let err = parse_cidrs("trusted_proxies", &["10.0.0.0/8".into(), "nope".into()])
            .expect_err("bad entry");
        assert!(err.to_string().contains("cascade.trusted_proxies"), "{err}");
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies_right_to_left() {
        let none = TrustedProxies::default();
        let headers = xff(&["6.6.6.6"]);
        assert_eq!(none.client_ip(ip("10.0.0.1"), &headers), ip("10.0.0.1"));

        let proxies = TrustedProxies::from_config(&["10.0.0.0/8".into()]).expect("proxies");
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), &headers), ip("6.6.6.6"));
        // The client forged a left-most hop; the proxies appended the real one.
        let chain = xff(&["1.1.1.1, 2.2.2.2", "10.0.0.9"]);
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), &chain), ip("2.2.2.2"));
        // A peer outside the list: its header is ignored.
        assert_eq!(proxies.client_ip(ip("9.9.9.9"), &chain), ip("9.9.9.9"));
        // Every hop trusted: the left-most.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), &xff(&["10.0.0.7, 10.0.0.8"])),
            ip("10.0.0.7")
        );
        // Unreadable hop: the last trusted one before it.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), &xff(&["garbage, 10.0.0.8"])),
            ip("10.0.0.8")
        );
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), &xff(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        // No header at all: the proxy itself.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv6_clients_are_throttled_per_64() {
        let a = ClientAddr {
            ip: ip("2001:db8:1:2:aaaa::1"),
            via_trusted_proxy: false,
        };
        let b = ClientAddr {
            ip: ip("2001:db8:1:2:bbbb::9"),
            via_trusted_proxy: false,
        };
        assert_eq!(a.throttle_key(), b.throttle_key());
        let v4 = ClientAddr {
            ip: ip("::ffff:192.0.2.1"),
            via_trusted_proxy: false,
        };
        assert_eq!(v4.throttle_key(), ip("192.0.2.1"));
    }
}
