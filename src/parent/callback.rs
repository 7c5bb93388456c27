//! Calls to node callbacks (`callback_url`: notify and test-connection) under one policy, so a
//! node cannot make the parent call into its own network (SSRF):
//!
//! * at registration the URL must be plain http(s) without control characters or userinfo;
//!   it is stored normalised (`127.1` and `2130706433` become `127.0.0.1`);
//! * at send time the URL is checked again, and its host's addresses are checked **as
//!   resolved**, by the client's own DNS resolver, so the connection goes only to a vetted
//!   address (no rebinding between check and connect);
//! * loopback, private (RFC 1918, ULA), CGNAT, link-local, multicast, unspecified, broadcast
//!   and other special-purpose addresses (also inside IPv4-mapped IPv6) are refused unless
//!   `cascade.callback_allow` lists the host name or a block holding the address.

use super::client_addr::{Cidr, parse_cidrs};
use crate::config::Config;
use anyhow::Context;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Why a callback URL is refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refused {
    /// Not an absolute http(s) URL with a host.
    #[error("callback_url is not an absolute http(s) URL")]
    NotHttp,
    /// CR, LF or another control character (header or request splitting).
    #[error("callback_url must not contain control characters (CR, LF, …)")]
    ControlCharacters,
    /// `user:password@` in the authority.
    #[error("callback_url must not contain a user name or password")]
    UserInfo,
    /// The host is, or resolves only to, an internal address.
    #[error(
        "callback address {0} is internal (loopback, private, link-local, …); list it in cascade.callback_allow to allow it"
    )]
    Internal(String),
}

/// `cascade.callback_allow`: host names and address blocks the parent may call back although
/// they are internal.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    hosts: Vec<String>,
    nets: Vec<Cidr>,
}

impl Policy {
    /// From the config list: each entry an address, a CIDR block or a host name.
    ///
    /// # Errors
    /// An entry that is none of these, naming the key.
    pub fn from_config(list: &[String]) -> anyhow::Result<Self> {
        let mut policy = Self::default();
        for entry in list.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if let Ok(net) = entry.parse::<Cidr>() {
                policy.nets.push(net);
            } else if is_host_name(entry) {
                policy
                    .hosts
                    .push(entry.trim_end_matches('.').to_ascii_lowercase());
            } else {
                parse_cidrs("callback_allow", &[entry.to_string()]).context(
                    "expected an IP address, a CIDR block or a host name (without scheme or port)",
                )?;
            }
        }
        Ok(policy)
    }

    /// Whether the operator allowed this host name (any address it resolves to).
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// Whether the parent may connect to `ip`: a public address, or one the operator allowed.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.nets.iter().any(|n| n.contains(ip))
    }

    /// The send-time check of a URL's text: [`normalise`] plus, for an address literal, the
    /// address policy (names are checked as resolved, by [`Callbacks`]' resolver).
    ///
    /// # Errors
    /// Why the URL may not be called.
    pub fn check(&self, raw: &str) -> Result<Url, Refused> {
        let url = normalise(raw)?;
        if let Some(ip) = literal_ip(&url)
            && !self.allows_ip(ip)
        {
            return Err(Refused::Internal(ip.to_string()));
        }
        Ok(url)
    }
}

/// Host names as `callback_allow` accepts them: letters, digits, `-`, `_` and dots.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Parses a callback URL as registered: no control characters anywhere (the URL parser would
/// silently drop CR/LF/tab), http or https with a host, no userinfo; the result is the
/// normalised form (lower-case host, numeric IPv4 forms as dotted quads, `/` path).
///
/// # Errors
/// Why the URL is unusable.
pub fn normalise(raw: &str) -> Result<Url, Refused> {
    if raw.chars().any(char::is_control) {
        return Err(Refused::ControlCharacters);
    }
    let url = Url::parse(raw.trim()).map_err(|_| Refused::NotHttp)?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(Refused::NotHttp);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::UserInfo);
    }
    Ok(url)
}

/// The host of `url` when it is an address literal.
pub fn literal_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
}

/// Whether `ip` is refused by default: anything but a globally routable unicast address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

/// IPv4 blocks refused by default: every special-purpose block that is not globally
/// reachable (RFC 6890 and successors).
const V4_INTERNAL: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),       // "this network", unspecified
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // carrier-grade NAT
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation
    ([203, 0, 113, 0], 24),  // documentation
    ([224, 0, 0, 0], 3),     // multicast, reserved, broadcast
];

/// IPv6 blocks refused by default (IPv4-mapped, NAT64 and 6to4 forms are judged by the IPv4
/// address they carry).
const V6_INTERNAL: &[([u16; 8], u8)] = &[
    ([0, 0, 0, 0, 0, 0, 0, 0], 96), // ::, ::1, IPv4-compatible (deprecated)
    ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), // local-use NAT64
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64), // discard
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), // Teredo
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), // unique local
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), // link-local
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), // site-local (deprecated)
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), // multicast
];

fn in_block(bits: u128, width: u32, net: u128, prefix: u8) -> bool {
    let mask = u128::MAX
        .checked_shl(width - u32::from(prefix))
        .unwrap_or(0)
        & (u128::MAX >> (128 - width));
    bits & mask == net & mask
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    V4_INTERNAL.iter().any(|(net, prefix)| {
        in_block(
            u128::from(u32::from(ip)),
            32,
            u128::from(u32::from(Ipv4Addr::from(*net))),
            *prefix,
        )
    })
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let embedded_v4 = |shift: u32| {
        Ipv4Addr::from(u32::try_from((bits >> shift) & 0xffff_ffff).unwrap_or(u32::MAX))
    };
    if in_block(
        bits,
        128,
        u128::from(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0)),
        96,
    ) {
        return is_internal_v4(embedded_v4(0)); // NAT64
    }
    if in_block(
        bits,
        128,
        u128::from(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0)),
        16,
    ) {
        return is_internal_v4(embedded_v4(80)); // 6to4
    }
    V6_INTERNAL
        .iter()
        .any(|(net, prefix)| in_block(bits, 128, u128::from(Ipv6Addr::from(*net)), *prefix))
}

/// The resolver of the callback client: resolves with the system resolver, then keeps only
/// the addresses the policy allows, so the connection can only go to a vetted address.
struct GuardedResolver {
    policy: Arc<Policy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let trusted_name = policy.allows_host(&host);
            let kept: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| trusted_name || policy.allows_ip(a.ip()))
                .collect();
            if kept.is_empty() {
                let shown = found
                    .first()
                    .map_or_else(|| host.clone(), |a| a.ip().to_string());
                return Err(Box::new(Refused::Internal(shown)) as Box<_>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// Why a callback call did not get a 2xx answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The policy refused the URL or every address of its host; nothing was sent.
    #[error("{0}")]
    Refused(Refused),
    /// The request failed (connect, timeout, TLS…).
    #[error("{0}")]
    Failed(reqwest::Error),
}

/// The client for node callbacks: the policy, a guarded resolver, no proxy (a proxy would
/// resolve names itself), no redirects, `notify_timeout`.
#[derive(Clone)]
pub struct Callbacks {
    policy: Arc<Policy>,
    http: reqwest::Client,
}

impl Callbacks {
    /// Builds the client from `cascade.callback_allow` and `cascade.notify_timeout`.
    ///
    /// # Errors
    /// A `callback_allow` entry that is not an address, block or host name; a client that
    /// cannot be built.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let policy = Arc::new(Policy::from_config(&config.cascade.callback_allow)?);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .timeout(Duration::from_secs(config.cascade.notify_timeout.max(1)))
            .build()
            .context("while building the callback HTTP client")?;
        Ok(Self { policy, http })
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// POSTs `body` as JSON to the callback `url` with `authorization`, if the policy allows
    /// it. Answers other than 2xx count as failures (the status is only logged).
    ///
    /// # Errors
    /// [`CallError::Refused`] when nothing was sent, [`CallError::Failed`] otherwise.
    pub async fn post(
        &self,
        url: &str,
        authorization: &str,
        body: &serde_json::Value,
    ) -> Result<reqwest::StatusCode, CallError> {
        let url = self.policy.check(url).map_err(CallError::Refused)?;
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .json(body)
            .send()
            .await;
        match sent {
            Ok(r) => Ok(r.status()),
            Err(e) => {
                Err(refusal_in(&e).map_or(CallError::Failed(e.without_url()), CallError::Refused))
            }
        }
    }
}

/// Our resolver's refusal, if that is what failed the request.
fn refusal_in(e: &reqwest::Error) -> Option<Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn internal_addresses_are_refused_by_default() {
        for s in [
            "127.0.0.1",
            "127.255.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
            "2001::1",
        ] {
            assert!(is_internal(ip(s)), "{s} must be refused");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(!is_internal(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn registration_normalises_and_refuses_smuggling() {
        let n = |s: &str| normalise(s).map(|u| u.to_string());
        assert_eq!(
            n("http://2130706433:8002/n").expect("ok"),
            "http://127.0.0.1:8002/n"
        );
        assert_eq!(n("http://127.1/").expect("ok"), "http://127.0.0.1/");
        assert_eq!(n("http://0x7f.0.0.1").expect("ok"), "http://127.0.0.1/");
        assert_eq!(
            n("HTTP://Child.Example:80/x").expect("ok"),
            "http://child.example/x"
        );
        assert_eq!(
            n("http://[::FFFF:7f00:1]/").expect("ok"),
            "http://[::ffff:7f00:1]/"
        );
        assert!(matches!(
            normalise("http://a/\r\nX-Evil: 1"),
            Err(Refused::ControlCharacters)
        ));
        assert!(matches!(
            normalise("http://a\t/"),
            Err(Refused::ControlCharacters)
        ));
        assert!(matches!(
            normalise("http://user:pw@a/"),
            Err(Refused::UserInfo)
        ));
        assert!(matches!(
            normalise("http://user@a/"),
            Err(Refused::UserInfo)
        ));
        assert!(matches!(
            normalise("file:///etc/passwd"),
            Err(Refused::NotHttp)
        ));
        assert!(matches!(normalise("gopher://a/"), Err(Refused::NotHttp)));
        assert!(matches!(normalise("not a url"), Err(Refused::NotHttp)));
    }

    #[test]
    fn the_allowlist_opens_hosts_and_blocks() {
        let p = Policy::from_config(&[
            "127.0.0.1".into(),
            "10.0.0.0/8".into(),
            "Child.Internal.".into(),
        ])
        .expect("policy");
        assert!(p.check("http://127.1:9/").is_ok());
        assert!(p.check("http://10.9.9.9/").is_ok());
        assert!(matches!(
            p.check("http://127.0.0.2/"),
            Err(Refused::Internal(_))
        ));
        assert!(matches!(
            p.check("http://[::1]/"),
            Err(Refused::Internal(_))
        ));
        assert!(p.allows_host("child.internal"));
        assert!(!p.allows_host("other.internal"));
        let none = Policy::default();
        assert!(matches!(
            none.check("http://2130706433/"),
            Err(Refused::Internal(_))
        ));
        assert!(none.check("http://8.8.8.8/").is_ok());
        assert!(
            none.check("http://child.example/").is_ok(),
            "names are checked when resolved"
        );
        let bad = Policy::from_config(&["http://x/".into()]).expect_err("not an entry");
        assert!(
            format!("{bad:#}").contains("cascade.callback_allow"),
            "{bad:#}"
        );
    }
}
