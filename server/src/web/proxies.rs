//! Who the client is behind a reverse proxy. The peer's address is the
//! client's unless the peer is a proxy Slipway was told to trust
//! (`--trusted-proxies`); then `X-Forwarded-For` is read from the right,
//! skipping the trusted hops, and the first address no trusted proxy
//! stands for is the client. Nobody else can set the address by sending
//! the header: an untrusted peer's header is ignored.

use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;

/// An address or a network (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, canonical(address)) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network (10.0.0.0/8)"))?;
        let most = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => most,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= most)
                .ok_or_else(|| format!("{text:?}: the prefix length is 0 to {most}"))?,
        };
        Ok(Self {
            address: canonical(address),
            prefix,
        })
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is the IPv4 one.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Network>);

impl TrustedProxies {
    pub fn new(networks: Vec<Network>) -> Self {
        Self(networks)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(address))
    }

    /// The client's address: the peer's, or through trusted proxies the
    /// nearest address in `X-Forwarded-For` that is not one of them.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = canonical(peer?);
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        while let Some(hop) = hops.pop() {
            // What a trusted proxy wrote but cannot be read ends the walk at
            // the last address known.
            let Ok(address) = hop.parse::<IpAddr>() else {
                break;
            };
            client = canonical(address);
            if !self.trusts(client) {
                break;
            }
        }
        Some(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|text| text.parse().unwrap()).collect())
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_cannot_name_another_client() {
        let none = TrustedProxies::default();
        let claims = forwarded(&["198.51.100.9"]);
        assert_eq!(none.client(ip("203.0.113.7"), &claims), ip("203.0.113.7"));
        let some = proxies(&["10.0.0.0/8"]);
        assert_eq!(some.client(ip("203.0.113.7"), &claims), ip("203.0.113.7"));
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "fd00::/8", "127.0.0.1"]);
        // A client's own header is kept on the left; its address is what
        // the first trusted proxy appended.
        let chain = forwarded(&["1.2.3.4, 198.51.100.9", "10.1.2.3"]);
        assert_eq!(trusted.client(ip("10.0.0.5"), &chain), ip("198.51.100.9"));
        assert_eq!(
            trusted.client(ip("::ffff:10.0.0.5"), &forwarded(&["198.51.100.9"])),
            ip("198.51.100.9")
        );
        assert_eq!(
            trusted.client(ip("fd00::1"), &forwarded(&["2001:db8::7"])),
            ip("2001:db8::7")
        );
        // No header, or nothing readable: the proxy is all there is.
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5")
        );
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &forwarded(&["unknown"])),
            ip("10.0.0.5")
        );
        // Only trusted hops: the farthest of them.
        assert_eq!(
            trusted.client(ip("127.0.0.1"), &forwarded(&["10.9.9.9"])),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn networks_read_as_written_or_refused_with_why() {
        let network: Network = "192.168.0.0/16".parse().unwrap();
        assert!(network.contains("192.168.40.1".parse().unwrap()));
        assert!(!network.contains("192.169.0.1".parse().unwrap()));
        assert!(!network.contains("::1".parse().unwrap()));
        let everything: Network = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "proxy.internal", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }
}
