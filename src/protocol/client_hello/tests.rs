use super::*;
use proptest::prelude::*;

fn hello(p: Parse) -> ClientHello {
    match p {
        Parse::Hello(h) => h,
        other => panic!("not a hello: {other:?}"),
    }
}

#[test]
fn sni_and_alpn() {
    let bytes = build(Some("a.example.com"), &["h2", "http/1.1"], 0, 1 << 14);
    let h = hello(parse(&bytes));
    assert_eq!(h.server_name.as_deref(), Some("a.example.com"));
    assert_eq!(h.alpn, ["h2", "http/1.1"]);
    assert!(h.alpn_present);
    assert_eq!(h.consumed, bytes.len());
    // Bytes after the ClientHello (early data, a second flight) are not its business.
    let mut more = bytes.clone();
    more.extend_from_slice(b"\x17\x03\x03\x00\x01x");
    assert_eq!(hello(parse(&more)).consumed, bytes.len());
}

#[test]
fn no_extensions_no_sni_no_alpn() {
    let h = hello(parse(&build(None, &[], 0, 1 << 14)));
    assert_eq!(h.server_name, None);
    assert!(h.alpn.is_empty() && !h.alpn_present);
    // A TLS 1.0-style hello that ends after the compression methods.
    let mut body = vec![3, 1];
    body.extend_from_slice(&[0; 32]);
    body.extend_from_slice(&[0, 0, 2, 0, 0x2f, 1, 0]);
    let mut rec = vec![
        22,
        3,
        1,
        0,
        (body.len() + 4) as u8,
        1,
        0,
        0,
        body.len() as u8,
    ];
    rec.extend_from_slice(&body);
    assert_eq!(
        hello(parse(&rec)),
        ClientHello {
            consumed: rec.len(),
            ..Default::default()
        }
    );
}

#[test]
fn needs_whole_records() {
    let bytes = build(Some("x.test"), &[], 0, 1 << 14);
    assert_eq!(parse(&[]), Parse::NeedMore(5));
    assert_eq!(parse(&bytes[..4]), Parse::NeedMore(5));
    assert_eq!(parse(&bytes[..5]), Parse::NeedMore(bytes.len()));
    assert_eq!(
        parse(&bytes[..bytes.len() - 1]),
        Parse::NeedMore(bytes.len())
    );
    // Split into 10-byte records: after the first record, the handshake header says how much
    // is still missing.
    let split = build(Some("x.test"), &[], 0, 10);
    match parse(&split[..15]) {
        Parse::NeedMore(n) => assert!(n > 15 && n <= split.len(), "{n}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn plaintext_and_other_records_are_not_tls() {
    for (bytes, at) in [
        (&b"GET / HTTP/1.1\r\n"[..], 1),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1),
        (b"\x17\x03\x03\x00\x10", 1),
        (b"\x16\x02\x00\x00\x10", 2),
        (b"\x16\x03\x01\x00\x00", 5),
        (b"\x16\x03\x01\x40\x01", 5),
        // A ServerHello where a ClientHello belongs.
        (b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", 10),
    ] {
        assert!(
            matches!(parse(bytes), Parse::NotTls { at: a, .. } if a == at),
            "{bytes:?}: {:?}",
            parse(bytes)
        );
    }
}

#[test]
fn malformed_hellos_are_not_tls() {
    let good = build(Some("a.example"), &["h2"], 0, 1 << 14);
    // Offsets into the record: 5 header, 4 handshake header, 2 version.
    let mut old = good.clone();
    old[9..11].copy_from_slice(&[3, 0]);
    assert!(matches!(parse(&old), Parse::NotTls { .. }));
    let mut long_session = good.clone();
    long_session[43] = 33;
    assert!(matches!(parse(&long_session), Parse::NotTls { .. }));
    // A handshake length that ends inside the body: the extensions overrun it.
    let mut short = good.clone();
    short[8] -= 1;
    assert!(matches!(parse(&short), Parse::NotTls { .. }));
    // An empty host name and one longer than 255 bytes.
    for name in ["", &"x".repeat(256)] {
        let mut e = Vec::new();
        let mut list = vec![0];
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name.as_bytes());
        e.extend_from_slice(&(list.len() as u16).to_be_bytes());
        e.extend_from_slice(&list);
        assert!(server_name(&e).is_err(), "{name:?}");
    }
    assert!(server_name(&[0, 8, 0, 0, 1, b'a', 1, 0, 1, b'b']).is_err());
    assert!(server_name(&[0, 4, 0, 0, 1, 0]).is_err());
    assert_eq!(server_name(&[0, 4, 0, 0, 1, b'a']).as_deref(), Ok("a"));
}

#[test]
fn malformed_alpn_is_ignored_not_fatal() {
    assert_eq!(alpn(&[0, 3, 2, b'h', b'2']), Some(vec!["h2".to_owned()]));
    assert_eq!(alpn(&[0, 3, 2, b'h']), None);
    assert_eq!(alpn(&[0, 2, 0, 0]), None);
    assert_eq!(alpn(&[0, 0]), None);
}

#[test]
fn duplicate_extensions_are_refused() {
    let mut exts = Vec::new();
    for _ in 0..2 {
        exts.extend_from_slice(&[0, 16, 0, 5, 0, 3, 2, b'h', b'2']);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 1, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut rec = vec![
        22,
        3,
        1,
        0,
        (body.len() + 4) as u8,
        1,
        0,
        0,
        body.len() as u8,
    ];
    rec.extend_from_slice(&body);
    assert!(matches!(
        parse(&rec),
        Parse::NotTls {
            reason: "duplicate extension",
            ..
        }
    ));
}

/// Host names as clients send them: DNS labels.
fn host() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", 1..5).prop_map(|l| l.join("."))
}

proptest! {
    /// A generated ClientHello, in records of any size, cut at any byte: every prefix is
    /// undecided (and asks for more than it has), and the whole parses to what was put in.
    #[test]
    fn any_split_parses_the_same(
        name in proptest::option::of(host()),
        alpn in proptest::collection::vec("[!-~]{1,20}", 0..4),
        padding in 0usize..3000,
        record in 1usize..5000,
        cut in any::<prop::sample::Index>(),
    ) {
        let alpn: Vec<&str> = alpn.iter().map(String::as_str).collect();
        let bytes = build(name.as_deref(), &alpn, padding, record);
        let h = hello(parse(&bytes));
        prop_assert_eq!(h.server_name.as_deref(), name.as_deref());
        prop_assert_eq!(&h.alpn, &alpn);
        prop_assert_eq!(h.consumed, bytes.len());
        let cut = cut.index(bytes.len());
        match parse(&bytes[..cut]) {
            Parse::NeedMore(n) => prop_assert!(n > cut && n <= bytes.len(), "{} {}", n, cut),
            other => prop_assert!(false, "prefix {}: {:?}", cut, other),
        }
    }

    /// Feeding the bytes as they would arrive, in chunks of any sizes, reaches the same
    /// answer, and `NeedMore` never asks for fewer bytes than are already there.
    #[test]
    fn incremental_arrival(
        name in host(),
        chunks in proptest::collection::vec(1usize..200, 1..50),
    ) {
        let bytes = build(Some(&name), &["h2"], 500, 300);
        let mut have = 0;
        let mut chunks = chunks.into_iter().cycle();
        loop {
            match parse(&bytes[..have]) {
                Parse::NeedMore(n) => {
                    prop_assert!(n > have);
                    have = (have + chunks.next().unwrap_or(1)).min(bytes.len());
                }
                Parse::Hello(h) => {
                    prop_assert_eq!(h.server_name, Some(name));
                    break;
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }

    /// Garbage never panics, and every answer is consistent with the input's length.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        match parse(&bytes) {
            Parse::NeedMore(n) => prop_assert!(n > bytes.len()),
            Parse::NotTls { at, .. } => prop_assert!(at <= bytes.len()),
            Parse::Hello(h) => prop_assert!(h.consumed <= bytes.len()),
        }
    }

    /// Garbage behind a valid record header and handshake header reaches the body parser.
    #[test]
    fn garbage_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        rec.extend_from_slice(&[1, 0]);
        rec.extend_from_slice(&(body.len() as u16).to_be_bytes());
        rec.extend_from_slice(&body);
        let _ = parse(&rec);
    }
}
