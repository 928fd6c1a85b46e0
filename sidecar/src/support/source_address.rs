//! Who is asking: the source address of a request, for throttling per source rather than per victim.
//!
//! The source is the peer address of the connection, unless that peer is a trusted proxy (an Envoy or load
//! balancer in front of the sidecar, listed by the operator in `trusted_proxies`). Then `x-forwarded-for` is read
//! from the right, past every trusted proxy, and the first address not trusted is the source: the entries left of
//! it were written by the client and prove nothing. With no trusted proxies, `x-forwarded-for` is ignored, so a
//! client cannot pick the address it is throttled under, nor frame another.

use std::net::{IpAddr, Ipv6Addr};

/// Networks whose connections may name the client's address in `x-forwarded-for`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Parses a list of addresses and CIDR networks separated by commas or spaces (`127.0.0.1, 10.0.0.0/8,
    /// ::1`); an empty list trusts no proxy.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for item in value
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|item| !item.is_empty())
        {
            let (address, prefix) = match item.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (item, None),
            };
            let address: IpAddr = address
                .parse()
                .map_err(|_| format!("{item:?} is not an IP address or CIDR network"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(prefix) => prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|prefix| *prefix <= max)
                    .ok_or_else(|| format!("{item:?} has an invalid prefix length"))?,
            };
            networks.push((address, prefix));
        }
        Ok(Self { networks })
    }

    /// Whether `ip` is in one of the trusted networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks
            .iter()
            .any(|(network, prefix)| match (canonical(*network), ip) {
                (IpAddr::V4(net), IpAddr::V4(ip)) => {
                    same_prefix(&net.octets(), &ip.octets(), *prefix)
                }
                (IpAddr::V6(net), IpAddr::V6(ip)) => {
                    same_prefix(&net.octets(), &ip.octets(), *prefix)
                }
                _ => false,
            })
    }

    /// The client's address for a connection from `peer` carrying these `x-forwarded-for` header values (in the
    /// order received).
    pub fn client_address(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let mut client = canonical(peer);
        if !self.contains(client) {
            return client;
        }
        let hops = forwarded_for
            .iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.into_iter().rev() {
            // An entry that is not an address stops the walk: what lies left of it cannot be trusted either.
            let Ok(address) = hop.parse::<IpAddr>() else {
                break;
            };
            client = canonical(address);
            if !self.contains(client) {
                break;
            }
        }
        client
    }
}

/// The throttling key of a client address: an IPv4 address, or the /64 network of an IPv6 address (one host
/// usually holds a whole /64, so counting single IPv6 addresses would let it sidestep its own throttle).
pub fn source_key(address: IpAddr) -> String {
    match canonical(address) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let network = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{network}/64")
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, from a dual-stack listener) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a.get(..full) != b.get(..full) {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    match (a.get(full), b.get(full)) {
        (Some(x), Some(y)) => x & mask == y & mask,
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let trusted = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8 fd00::/16").unwrap();
        assert!(trusted.contains(ip("127.0.0.1")));
        assert!(!trusted.contains(ip("127.0.0.2")));
        assert!(trusted.contains(ip("10.200.3.4")));
        assert!(trusted.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped");
        assert!(trusted.contains(ip("fd00:1::5")));
        assert!(!trusted.contains(ip("fd01::5")));
        assert!(!trusted.contains(ip("11.0.0.1")));
        let odd = TrustedProxies::parse("192.168.1.0/23").unwrap();
        assert!(odd.contains(ip("192.168.0.9")));
        assert!(!odd.contains(ip("192.168.2.9")));
        assert_eq!(
            TrustedProxies::parse("").unwrap(),
            TrustedProxies::default()
        );
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "example.com",
            "10.0.0.1/x",
            "1.2.3",
        ] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_address(ip("203.0.113.9"), &["198.51.100.1"]),
            ip("203.0.113.9"),
            "a client cannot choose its source"
        );
        let envoy = TrustedProxies::parse("127.0.0.1,10.0.0.0/8").unwrap();
        assert_eq!(
            envoy.client_address(ip("127.0.0.1"), &["198.51.100.1"]),
            ip("198.51.100.1")
        );
        // The client wrote the left entries itself; the walk stops at the first untrusted hop from the right.
        assert_eq!(
            envoy.client_address(ip("127.0.0.1"), &["1.1.1.1, 198.51.100.1", "10.0.0.3"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            envoy.client_address(ip("127.0.0.1"), &["1.1.1.1, not-an-ip, 10.0.0.3"]),
            ip("10.0.0.3"),
            "garbage stops the walk at the last trusted hop"
        );
        assert_eq!(envoy.client_address(ip("127.0.0.1"), &[]), ip("127.0.0.1"));
        assert_eq!(
            envoy.client_address(ip("203.0.113.9"), &["198.51.100.1"]),
            ip("203.0.113.9"),
            "an untrusted peer's header is ignored"
        );
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        assert_eq!(source_key(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            source_key(ip("2001:db8:1:2:bbbb::7")),
            source_key(ip("2001:db8:1:2:aaaa::1"))
        );
        assert_ne!(
            source_key(ip("2001:db8:1:3::1")),
            source_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(source_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
    }
}
