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
