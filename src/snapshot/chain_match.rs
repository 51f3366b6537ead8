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
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::UInt32Value;

    fn cidr(a: &str, len: u32) -> core_pb::CidrRange {
        core_pb::CidrRange {
            address_prefix: a.into(),
            prefix_len: Some(UInt32Value { value: len }),
        }
    }

    fn m(f: impl FnOnce(&mut listener_pb::FilterChainMatch)) -> ChainMatch {
        let mut x = listener_pb::FilterChainMatch::default();
        f(&mut x);
        ChainMatch::compile(Some(&x)).unwrap()
    }

    fn meta(local: &str, remote: &str) -> ConnMeta<'static> {
        ConnMeta {
            local: Some(local.parse().unwrap()),
            remote: Some(remote.parse().unwrap()),
            transport_protocol: "raw_buffer",
            ..Default::default()
        }
    }

    #[test]
    fn destination_port_beats_wildcard_and_excludes_others() {
        let any = ChainMatch::any();
        let p80 = m(|x| x.destination_port = Some(UInt32Value { value: 80 }));
        let p81 = m(|x| x.destination_port = Some(UInt32Value { value: 81 }));
        let chains = [&any, &p80, &p81];
        assert_eq!(
            select(&chains, &meta("10.0.0.1:80", "10.0.0.2:5000")),
            Some(1)
        );
        assert_eq!(
            select(&chains, &meta("10.0.0.1:82", "10.0.0.2:5000")),
            Some(0)
        );
        assert_eq!(
            select(&[&p80, &p81], &meta("10.0.0.1:82", "10.0.0.2:5000")),
            None
        );
    }

    #[test]
    fn longest_prefix_wins_and_no_backtracking() {
        let wide = m(|x| x.prefix_ranges = vec![cidr("10.0.0.0", 8)]);
        let narrow_ = m(|x| {
            x.prefix_ranges = vec![cidr("10.1.0.0", 16)];
            x.transport_protocol = "tls".into();
        });
        // 10.1.x matches the narrow chain on IP; it then fails transport protocol and Envoy
        // does not fall back to the wide chain.
        assert_eq!(
            select(&[&wide, &narrow_], &meta("10.1.2.3:80", "1.1.1.1:1")),
            None
        );
        assert_eq!(
            select(&[&wide, &narrow_], &meta("10.2.2.3:80", "1.1.1.1:1")),
            Some(0)
        );
    }

    #[test]
    fn source_type_and_ports_and_sni() {
        let local = m(|x| x.source_type = 1);
        let any = ChainMatch::any();
        assert_eq!(
            select(&[&any, &local], &meta("127.0.0.1:80", "127.0.0.1:9")),
            Some(1)
        );
        assert_eq!(
            select(&[&any, &local], &meta("10.0.0.1:80", "10.0.0.9:9")),
            Some(0)
        );
        let sp = m(|x| x.source_ports = vec![9]);
        assert_eq!(
            select(&[&any, &sp], &meta("10.0.0.1:80", "10.0.0.9:9")),
            Some(1)
        );
        let wild = m(|x| x.server_names = vec!["*.example.com".into()]);
        let exact = m(|x| x.server_names = vec!["a.example.com".into()]);
        let mut mt = meta("10.0.0.1:443", "10.0.0.9:9");
        mt.server_name = Some("a.example.com");
        assert_eq!(select(&[&wild, &exact], &mt), Some(1));
        mt.server_name = Some("b.example.com");
        assert_eq!(select(&[&wild, &exact], &mt), Some(0));
    }

    #[test]
    fn application_protocols_follow_the_connections_order() {
        let h11 = m(|x| x.application_protocols = vec!["http/1.1".into()]);
        let h2 = m(|x| x.application_protocols = vec!["h2".into(), "h2c".into()]);
        let any = ChainMatch::any();
        let chains = [&h11, &h2, &any];
        let mut mt = meta("10.0.0.1:443", "10.0.0.9:9");
        let alpn = vec!["h2".to_owned(), "http/1.1".to_owned()];
        mt.application_protocols = &alpn;
        assert_eq!(select(&chains, &mt), Some(1));
        let alpn = vec!["http/1.1".to_owned(), "h2".to_owned()];
        mt.application_protocols = &alpn;
        assert_eq!(select(&chains, &mt), Some(0));
        let alpn = vec!["istio-peer-exchange".to_owned(), "h2c".to_owned()];
        mt.application_protocols = &alpn;
        assert_eq!(select(&chains, &mt), Some(1));
        let alpn = vec!["grpc-exp".to_owned()];
        mt.application_protocols = &alpn;
        assert_eq!(select(&chains, &mt), Some(2));
        mt.application_protocols = &[];
        assert_eq!(select(&chains, &mt), Some(2));
        assert_eq!(select(&[&h11, &h2], &mt), None);
    }

    #[test]
    fn server_names_exact_then_longest_wildcard_then_none() {
        let exact = m(|x| x.server_names = vec!["a.b.example.com".into()]);
        let wide = m(|x| x.server_names = vec!["*.example.com".into()]);
        let narrow_ = m(|x| x.server_names = vec!["*.b.example.com".into()]);
        let tls = m(|x| x.transport_protocol = "tls".into());
        let chains = [&wide, &narrow_, &exact, &tls];
        let mut mt = meta("10.0.0.1:443", "10.0.0.9:9");
        mt.transport_protocol = "tls";
        for (sni, want) in [
            (Some("a.b.example.com"), Some(2)),
            (Some("A.B.Example.COM"), Some(2)),
            (Some("c.b.example.com"), Some(1)),
            (Some("x.y.z.b.example.com"), Some(1)),
            (Some("c.example.com"), Some(0)),
            (Some("example.com"), Some(3)),
            (Some("other.org"), Some(3)),
            (None, Some(3)),
        ] {
            mt.server_name = sni;
            assert_eq!(select(&chains, &mt), want, "{sni:?}");
        }
        // Server name comes before transport protocol: a TLS connection whose SNI matches a
        // chain that wants raw_buffer matches nothing (no going back to the catch-all).
        let raw = m(|x| {
            x.server_names = vec!["raw.example.com".into()];
            x.transport_protocol = "raw_buffer".into();
        });
        mt.server_name = Some("raw.example.com");
        assert_eq!(select(&[&raw, &tls], &mt), None);
    }

    #[test]
    fn partial_wildcards_are_rejected() {
        for bad in ["*example.com", "*", "a.*.com", "*.*.com", "www.example.*"] {
            let x = listener_pb::FilterChainMatch {
                server_names: vec!["ok.com".into(), bad.into()],
                ..Default::default()
            };
            let e = ChainMatch::compile(Some(&x)).unwrap_err().to_string();
            assert!(
                e.contains("server_names[1]") && e.contains("partial"),
                "{e}"
            );
        }
        let x = listener_pb::FilterChainMatch {
            server_names: vec!["*.example.com".into()],
            ..Default::default()
        };
        assert!(ChainMatch::compile(Some(&x)).is_ok());
    }

    #[test]
    fn full_precedence_order() {
        // Each chain is the most specific on one criterion and a wildcard on the later ones:
        // the earlier criterion decides.
        let port = m(|x| x.destination_port = Some(UInt32Value { value: 443 }));
        let ip = m(|x| x.prefix_ranges = vec![cidr("10.0.0.0", 8)]);
        let sni = m(|x| x.server_names = vec!["a.example.com".into()]);
        let tp = m(|x| x.transport_protocol = "tls".into());
        let alpn = m(|x| x.application_protocols = vec!["h2".into()]);
        let direct = m(|x| x.direct_source_prefix_ranges = vec![cidr("10.0.0.9", 32)]);
        let st = m(|x| x.source_type = 2);
        let src = m(|x| x.source_prefix_ranges = vec![cidr("10.0.0.0", 24)]);
        let sport = m(|x| x.source_ports = vec![9]);
        let all = [&sport, &src, &st, &direct, &alpn, &tp, &sni, &ip, &port];
        let protos = vec!["h2".to_owned()];
        let mt = ConnMeta {
            server_name: Some("a.example.com"),
            transport_protocol: "tls",
            application_protocols: &protos,
            ..meta("10.0.0.1:443", "10.0.0.9:9")
        };
        // Drop the winner each time: the next criterion in Envoy's order takes over.
        for n in (1..=all.len()).rev() {
            assert_eq!(select(&all[..n], &mt), Some(n - 1), "{n}");
        }
    }

    #[test]
    fn cidr_contains_mapped_v4_and_v6() {
        let c = Cidr::from_proto(&cidr("192.168.0.0", 16)).unwrap();
        assert!(c.contains("::ffff:192.168.1.1".parse().unwrap()));
        assert!(!c.contains("192.169.0.1".parse().unwrap()));
        let c6 = Cidr::from_proto(&cidr("fd00::", 8)).unwrap();
        assert!(c6.contains("fd12::1".parse().unwrap()));
        assert!(Cidr::from_proto(&cidr("1.2.3.4", 33)).is_err());
        assert!(Cidr::from_proto(&cidr("nope", 8)).is_err());
    }
}
