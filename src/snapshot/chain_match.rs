//! `FilterChainMatch`, compiled, and Envoy's selection order: destination port, destination
//! IP, server name, transport protocol, application protocols, direct source IP, source type,
//! source IP, source port. At each step the most specific matching chains survive; chains that
//! leave the criterion empty survive only when no chain matches it specifically, and there is
//! no going back to an earlier step. "Most specific" is: the exact port; the longest matching
//! prefix; the exact server name, else the longest `*.suffix`; the exact transport protocol;
//! the connection's earliest application protocol that some chain lists; for source type, the
//! chains for the connection's kind (local or external) over ANY.

use crate::config::{Cidr, ConfigError};
use envoy_types::pb::envoy::config::core::v3 as core_pb;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use std::net::{IpAddr, SocketAddr};

/// `FilterChainMatch.source_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceType {
    /// ANY.
    Any,
    /// SAME_IP_OR_LOOPBACK.
    Local,
    /// EXTERNAL.
    External,
}

/// A compiled `FilterChainMatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainMatch {
    destination_port: Option<u16>,
    prefix_ranges: Vec<Cidr>,
    server_names: Vec<String>,
    transport_protocol: Option<String>,
    application_protocols: Vec<String>,
    direct_source_prefix_ranges: Vec<Cidr>,
    source_type: SourceType,
    source_prefix_ranges: Vec<Cidr>,
    source_ports: Vec<u16>,
}

/// What is known of a connection when its filter chain is chosen.
#[derive(Debug, Clone, Default)]
pub struct ConnMeta<'a> {
    /// The local (or original destination) address.
    pub local: Option<SocketAddr>,
    /// The peer address.
    pub remote: Option<SocketAddr>,
    /// The directly connected peer (differs from `remote` with PROXY protocol).
    pub direct_remote: Option<SocketAddr>,
    /// TLS SNI, when a TLS inspector saw one.
    pub server_name: Option<&'a str>,
    /// `raw_buffer` or `tls`.
    pub transport_protocol: &'a str,
    /// ALPN or HTTP inspector results.
    pub application_protocols: &'a [String],
}

fn ranges(list: &[core_pb::CidrRange], field: &str) -> Result<Vec<Cidr>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, c)| Cidr::from_proto(c).map_err(|e| e.within(format!("{field}[{i}]"))))
        .collect()
}

impl ChainMatch {
    /// Compile; absent means "match everything".
    pub fn compile(m: Option<&listener_pb::FilterChainMatch>) -> Result<Self, ConfigError> {
        let Some(m) = m else {
            return Ok(Self::any());
        };
        let destination_port = match &m.destination_port {
            Some(p) => Some(
                u16::try_from(p.value)
                    .map_err(|_| ConfigError::new("destination_port", "out of range"))?,
            ),
            None => None,
        };
        let source_type =
            match listener_pb::filter_chain_match::ConnectionSourceType::try_from(m.source_type) {
                Ok(listener_pb::filter_chain_match::ConnectionSourceType::SameIpOrLoopback) => {
                    SourceType::Local
                }
                Ok(listener_pb::filter_chain_match::ConnectionSourceType::External) => {
                    SourceType::External
                }
                _ => SourceType::Any,
            };
        let mut source_ports = Vec::new();
        for p in &m.source_ports {
            source_ports.push(
                u16::try_from(*p)
                    .map_err(|_| ConfigError::new("source_ports", format!("{p} out of range")))?,
            );
        }
        if !m.address_suffix.is_empty() || m.suffix_len.is_some() {
            return Err(ConfigError::new(
                "address_suffix",
                "is not supported (nor by Envoy)",
            ));
        }
        for (i, name) in m.server_names.iter().enumerate() {
            let whole_label = name
                .strip_prefix("*.")
                .is_some_and(|rest| !rest.contains('*'));
            if name.contains('*') && !whole_label {
                return Err(ConfigError::new(
                    format!("server_names[{i}]"),
                    format!(
                        "partial wildcards are not supported: {name:?} (a wildcard is a whole \
                         first label, as in \"*.example.com\")"
                    ),
                ));
            }
        }
        Ok(Self {
            destination_port,
            prefix_ranges: ranges(&m.prefix_ranges, "prefix_ranges")?,
            server_names: m
                .server_names
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            transport_protocol: Some(m.transport_protocol.clone()).filter(|s| !s.is_empty()),
            application_protocols: m.application_protocols.clone(),
            direct_source_prefix_ranges: ranges(
                &m.direct_source_prefix_ranges,
                "direct_source_prefix_ranges",
            )?,
            source_type,
            source_prefix_ranges: ranges(&m.source_prefix_ranges, "source_prefix_ranges")?,
            source_ports,
        })
    }

    fn any() -> Self {
        Self {
            destination_port: None,
            prefix_ranges: Vec::new(),
            server_names: Vec::new(),
            transport_protocol: None,
            application_protocols: Vec::new(),
            direct_source_prefix_ranges: Vec::new(),
            source_type: SourceType::Any,
            source_prefix_ranges: Vec::new(),
            source_ports: Vec::new(),
        }
    }
}

/// How well one chain matches one criterion: `None` = excluded, `Some(0)` = wildcard, higher
/// = more specific.
type Score = Option<u32>;

fn narrow(cands: &mut Vec<usize>, score: impl Fn(usize) -> Score) {
    let best = cands.iter().filter_map(|&i| score(i)).max();
    match best {
        None => cands.clear(),
        Some(b) => cands.retain(|&i| score(i) == Some(b)),
    }
}

fn cidr_score(ranges: &[Cidr], ip: Option<IpAddr>) -> Score {
    if ranges.is_empty() {
        return Some(0);
    }
    let ip = ip?;
    ranges
        .iter()
        .filter(|r| r.contains(ip))
        .map(|r| u32::from(r.prefix_len()) + 1)
        .max()
}

fn server_name_score(names: &[String], sni: Option<&str>) -> Score {
    if names.is_empty() {
        return Some(0);
    }
    let sni = sni?.to_ascii_lowercase();
    let mut best = None;
    for n in names {
        if *n == sni {
            return Some(u32::MAX);
        }
        // `*.example.com` matches any name under `example.com`, the longest suffix first.
        if let Some(suffix) = n.strip_prefix('*')
            && sni.ends_with(suffix)
        {
            best = best.max(Some(suffix.len() as u32 + 1));
        }
    }
    best
}

fn is_local(remote: Option<SocketAddr>, local: Option<SocketAddr>) -> bool {
    match remote {
        Some(r) => r.ip().is_loopback() || local.is_some_and(|l| l.ip() == r.ip()),
        None => true,
    }
}

/// Something a filter chain's match can be read from: a compiled chain, or the match itself.
pub trait HasMatch {
    /// The chain's match.
    fn chain_match(&self) -> &ChainMatch;
}

impl HasMatch for &ChainMatch {
    fn chain_match(&self) -> &ChainMatch {
        self
    }
}

/// Index of the chain Envoy would choose, if any.
pub fn select<T: HasMatch>(chains: &[T], meta: &ConnMeta<'_>) -> Option<usize> {
    let mut c: Vec<usize> = (0..chains.len()).collect();
    let local_ip = meta.local.map(|a| a.ip());
    let remote_ip = meta.remote.map(|a| a.ip());
    let direct_ip = meta.direct_remote.or(meta.remote).map(|a| a.ip());
    narrow(&mut c, |i| match chains[i].chain_match().destination_port {
        None => Some(0),
        Some(p) => (meta.local.map(|a| a.port()) == Some(p)).then_some(1),
    });
    narrow(&mut c, |i| {
        cidr_score(&chains[i].chain_match().prefix_ranges, local_ip)
    });
    narrow(&mut c, |i| {
        server_name_score(&chains[i].chain_match().server_names, meta.server_name)
    });
    narrow(&mut c, |i| {
        match &chains[i].chain_match().transport_protocol {
            None => Some(0),
            Some(t) => (t == meta.transport_protocol).then_some(1),
        }
    });
    // The connection's protocols in its own order (the client's ALPN preference): the chains
    // that list the first protocol any chain lists win.
    let protocols = meta.application_protocols;
    narrow(&mut c, |i| {
        let a = &chains[i].chain_match().application_protocols;
        if a.is_empty() {
            Some(0)
        } else {
            protocols
                .iter()
                .position(|p| a.contains(p))
                .map(|pos| (protocols.len() - pos) as u32)
        }
    });
    narrow(&mut c, |i| {
        cidr_score(
            &chains[i].chain_match().direct_source_prefix_ranges,
            direct_ip,
        )
    });
    narrow(&mut c, |i| match chains[i].chain_match().source_type {
        SourceType::Any => Some(0),
        SourceType::Local => is_local(meta.remote, meta.local).then_some(1),
        SourceType::External => (!is_local(meta.remote, meta.local)).then_some(1),
    });
    narrow(&mut c, |i| {
        cidr_score(&chains[i].chain_match().source_prefix_ranges, remote_ip)
    });
    narrow(&mut c, |i| {
        let p = &chains[i].chain_match().source_ports;
        if p.is_empty() {
            Some(0)
        } else {
            meta.remote
                .is_some_and(|r| p.contains(&r.port()))
                .then_some(1)
        }
    });
    c.first().copied()
}

#[cfg(test)]
mod tests;
