//! The client's address, for the limits per address (`opens_per_address`,
//! `max_sessions_per_address`).
//!
//! The edge sits behind Traefik, which appends the address its client
//! connected from to `X-Forwarded-For`: the last hop is that address,
//! whatever the client wrote in the header itself. Without the header (a
//! client connected straight to the edge: a test, a health check), the
//! connection's peer is the client.
//!
//! Trust assumption, as for the api's login limit: only the proxy can reach
//! the edge. A client that can connect to an edge directly writes its own
//! last hop, and so picks the address it is counted under (it evades the
//! limits per address, not those per user or the edge's total).
//!
//! An IPv6 client is counted by its /64: one host is commonly given a whole
//! /64, and would otherwise have 2^64 addresses to spread over.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use warp::Filter;
use warp::http::HeaderMap;

/// A client address as the limits count it: IPv4 whole, IPv6 by /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(IpAddr);

impl ClientAddress {
    pub fn new(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !u128::from(u64::MAX);
                    Self(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
            v4 => Self(v4),
        }
    }

    /// The address of a request: the last `X-Forwarded-For` hop, else the
    /// peer's; `None` only without either (not on TCP).
    pub fn of(headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<Self> {
        last_forwarded_hop(headers)
            .or(peer.map(|peer| peer.ip()))
            .map(Self::new)
    }
}

impl std::fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => v4.fmt(f),
        }
    }
}

/// The last hop of the last `X-Forwarded-For` header, if it is an address
/// (with or without a port).
fn last_forwarded_hop(headers: &HeaderMap) -> Option<IpAddr> {
    let header = headers.get_all("x-forwarded-for").iter().next_back()?;
    let hop = header.to_str().ok()?.rsplit(',').next()?.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}

/// The peer's address of a request's connection, as the edge's server
/// (`crate::server`) puts it in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The peer's address of a request: from the edge's own server, else from
/// warp's (`warp::test`, which sets warp's own).
pub fn peer() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<Peer>()
        .and(warp::addr::remote())
        .map(|ours: Option<Peer>, warps: Option<SocketAddr>| ours.map(|Peer(addr)| addr).or(warps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_headers as headers;

    fn peer() -> Option<SocketAddr> {
        Some("10.0.0.9:5000".parse().expect("an address"))
    }

    #[test]
    fn the_last_forwarded_hop_is_the_client() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 192.0.2.7")]);
        assert_eq!(
            ClientAddress::of(&h, peer()).map(|a| a.to_string()),
            Some("192.0.2.7".into())
        );
        // Traefik appends to the last header when there are several.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "192.0.2.8:443"),
        ]);
        assert_eq!(
            ClientAddress::of(&h, peer()).map(|a| a.to_string()),
            Some("192.0.2.8".into())
        );
    }

    #[test]
    fn without_a_usable_header_the_peer_is_the_client() {
        for h in [
            headers(&[]),
            headers(&[("x-forwarded-for", "not an address")]),
        ] {
            assert_eq!(
                ClientAddress::of(&h, peer()).map(|a| a.to_string()),
                Some("10.0.0.9".into())
            );
        }
        assert_eq!(ClientAddress::of(&headers(&[]), None), None);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a = ClientAddress::new("2001:db8:1:2:aaaa::1".parse().expect("v6"));
        let b = ClientAddress::new("2001:db8:1:2:bbbb::9".parse().expect("v6"));
        let other = ClientAddress::new("2001:db8:1:3::1".parse().expect("v6"));
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        let mapped = ClientAddress::new("::ffff:192.0.2.1".parse().expect("v6"));
        assert_eq!(mapped.to_string(), "192.0.2.1");
    }
}
