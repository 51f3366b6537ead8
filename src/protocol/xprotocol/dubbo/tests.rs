use super::*;
use proptest::prelude::*;

fn decode_all(codec: &Dubbo, bytes: &[u8]) -> Result<Vec<Frame>, CodecError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = codec.decode(&mut buf)? {
        out.push(f);
    }
    Ok(out)
}

/// A heartbeat as Dubbo 2 sends it: flags 0xe2 (request, two-way, event, Hessian 2), id 1,
/// body one byte, Hessian null.
const HEARTBEAT: [u8; 17] = [
    0xda, 0xbb, 0xe2, 0x00, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0x01, b'N',
];

#[test]
fn heartbeat_is_recognised_and_answered() {
    let d = Dubbo::default();
    let f = decode_all(&d, &HEARTBEAT).unwrap().remove(0);
    assert_eq!(f.kind, FrameKind::Heartbeat);
    assert_eq!(f.request_id, 1);
    let r = d.heartbeat_response(&f);
    assert_eq!(
        &r.raw[..],
        &[
            0xda, 0xbb, 0x22, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, b'N'
        ]
    );
    let back = decode_all(&d, &r.raw).unwrap().remove(0);
    assert_eq!(back.kind, FrameKind::HeartbeatResponse);
}

/// python3-dubbo 0.0.8's heartbeat, byte for byte as its `constants.py` builds it
/// (`CLI_HEARTBEAT_REQ_HEAD` 0xdabbe2 00, the id, `CLI_HEARTBEAT_TAIL` 00000001 4e), and the
/// response it writes to a server's heartbeat (`CLI_HEARTBEAT_RES_HEAD` 0xdabb2214).
#[test]
fn third_party_heartbeat_frames() {
    let d = Dubbo::default();
    let req = [
        0xda, 0xbb, 0xe2, 0x00, 0, 0, 0, 0, 0, 0, 0x30, 0x39, 0, 0, 0, 1, 0x4e,
    ];
    let f = decode_all(&d, &req).unwrap().remove(0);
    assert_eq!((f.kind, f.request_id), (FrameKind::Heartbeat, 12345));
    let res = [
        0xda, 0xbb, 0x22, 0x14, 0, 0, 0, 0, 0, 0, 0x30, 0x39, 0, 0, 0, 1, 0x4e,
    ];
    assert_eq!(&d.heartbeat_response(&f).raw[..], &res[..]);
    let f = decode_all(&d, &res).unwrap().remove(0);
    assert_eq!(f.kind, FrameKind::HeartbeatResponse);
}

#[test]
fn request_headers_are_read_and_body_kept() {
    let d = Dubbo::default();
    let raw = build::request(
        0x1122_3344_5566_7788,
        true,
        "org.apache.dubbo.samples.DemoService",
        "1.0.0",
        "sayHello",
        b"\x12Ljava/lang/String;\x05world\x48\x5a",
    );
    let f = decode_all(&d, &raw).unwrap().remove(0);
    assert_eq!(f.kind, FrameKind::Request);
    assert_eq!(f.request_id, 0x1122_3344_5566_7788);
    assert_eq!(
        f.headers.service.as_deref(),
        Some("org.apache.dubbo.samples.DemoService")
    );
    assert_eq!(f.headers.method.as_deref(), Some("sayHello"));
    assert_eq!(f.headers.version.as_deref(), Some("1.0.0"));
    assert_eq!(f.raw, raw);
    let one = build::request(3, false, "S", "", "m", b"");
    let f = decode_all(&d, &one).unwrap().remove(0);
    assert_eq!(f.kind, FrameKind::Oneway);
    assert_eq!(f.headers.version, None);
}

/// The body python3-dubbo writes: strings, then the attachments map.
#[test]
fn attachments_after_the_arguments_are_read() {
    let mut rest = build::string("Ljava/lang/String;Ljava/lang/String;");
    rest.extend(build::string("a"));
    rest.extend(build::string("b"));
    rest.push(b'H');
    for s in ["path", "S", "group", "blue", "env", "canary"] {
        rest.extend(build::string(s));
    }
    rest.push(b'Z');
    let raw = build::request(1, true, "S", "1.0", "m", &rest);
    let f = decode_all(&Dubbo::default(), &raw).unwrap().remove(0);
    assert_eq!(f.headers.group.as_deref(), Some("blue"));
    assert_eq!(f.headers.get("env"), Some("canary"));
    assert_eq!(f.headers.attachments.len(), 3);
    // An int, a long array and an object argument are skipped to reach the attachments.
    let mut rest = build::string("I[JLcom/example/Car;");
    rest.push(0x91);
    rest.extend_from_slice(&[0x7a, 0xe0, 0xe1]);
    rest.extend_from_slice(&[b'C', 0x03, b'C', b'a', b'r', 0x91, 0x01, b'a', 0x60, 0x90]);
    rest.push(b'H');
    rest.extend(build::string("group"));
    rest.extend(build::string("red"));
    rest.extend(build::string("timeout"));
    rest.push(0x94);
    rest.push(b'Z');
    let raw = build::request(1, true, "S", "1.0", "m", &rest);
    let f = decode_all(&Dubbo::default(), &raw).unwrap().remove(0);
    assert_eq!(f.headers.group.as_deref(), Some("red"));
    assert_eq!(f.headers.attachments.len(), 1);
    // Arguments that do not parse: no attachments, routing still works.
    let mut rest = build::string("I");
    rest.push(0x41);
    let raw = build::request(1, true, "S", "1.0", "m", &rest);
    let f = decode_all(&Dubbo::default(), &raw).unwrap().remove(0);
    assert!(f.headers.attachments.is_empty());
    assert_eq!(f.headers.method.as_deref(), Some("m"));
    assert_eq!(arguments("I[JLcom/example/Car;Ljava/lang/String;"), Some(4));
    assert_eq!(arguments("Lunterminated"), None);
}

#[test]
fn id_rewrite_is_in_place() {
    let d = Dubbo::default();
    let raw = build::request(7, true, "S", "", "m", b"");
    let mut f = decode_all(&d, &raw).unwrap().remove(0);
    f.set_request_id(0x0102_0304_0506_0708);
    assert_eq!(&f.raw[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&f.raw[12..], &raw[12..]);
    let again = decode_all(&d, &f.raw).unwrap().remove(0);
    assert_eq!(again.request_id, 0x0102_0304_0506_0708);
}

#[test]
fn error_responses_carry_dubbo_status_and_message() {
    let d = Dubbo::default();
    let f = decode_all(&d, &build::request(9, true, "S", "", "m", b""))
        .unwrap()
        .remove(0);
    for (kind, code) in [
        (ErrorKind::NoRoute, status::SERVICE_NOT_FOUND),
        (ErrorKind::Timeout, status::SERVER_TIMEOUT),
        (ErrorKind::Overflow, status::SERVER_THREADPOOL_EXHAUSTED),
        (ErrorKind::UpstreamReset, status::SERVER_ERROR),
    ] {
        let r = d.error_response(&f, kind, "no route");
        let back = decode_all(&d, &r.raw).unwrap().remove(0);
        assert_eq!(back.kind, FrameKind::Response);
        assert_eq!(back.request_id, 9);
        assert_eq!(back.status.unwrap().code, u32::from(code));
        assert!(!back.status.unwrap().ok);
        assert_eq!(&back.raw[HEADER_LEN..], &build::string("no route")[..]);
    }
    let g = d.goaway().unwrap();
    assert_eq!(decode_all(&d, &g.raw).unwrap()[0].kind, FrameKind::Goaway);
}

#[test]
fn malformed_and_oversized_frames_are_errors() {
    let d = Dubbo::new(64);
    assert!(matches!(
        decode_all(&d, b"GET / HTTP/1.1\r\n"),
        Err(CodecError::Malformed { .. })
    ));
    assert!(decode_all(&d, &[0xdb]).is_err());
    let mut big = build::request(1, true, "S", "", "m", &[0u8; 100]);
    let e = decode_all(&d, &big[..HEADER_LEN]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "dubbo: frame of 127 bytes exceeds the limit of 64 bytes"
    );
    // A request body that is not Hessian strings.
    big.truncate(HEADER_LEN);
    big[15] = 2;
    big.extend_from_slice(&[0x90, 0x91]);
    let e = decode_all(&Dubbo::default(), &big).unwrap_err();
    assert!(e.to_string().contains("dubbo version"), "{e}");
    // Truncated: not an error, nothing consumed.
    let raw = build::request(1, true, "S", "", "m", b"");
    for n in 0..raw.len() {
        let mut buf = BytesMut::from(&raw[..n]);
        assert_eq!(Dubbo::default().decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), n);
    }
}

#[test]
fn detect_by_magic() {
    let d = Dubbo::default();
    assert_eq!(d.detect(&[]), Detect::NeedMore);
    assert_eq!(d.detect(&[0xda]), Detect::NeedMore);
    assert_eq!(d.detect(&[0xda, 0xbb]), Detect::Matched);
    assert_eq!(d.detect(b"GET"), Detect::NotMatched);
}

fn arb_frame() -> impl Strategy<Value = BytesMut> {
    prop_oneof![
        (
            any::<u64>(),
            any::<bool>(),
            "[a-zA-Z.]{0,40}",
            "[0-9.]{0,8}",
            "[a-zA-Z]{0,20}",
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(id, tw, s, v, m, rest)| build::request(id, tw, &s, &v, &m, &rest)),
        (
            any::<u64>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(id, st, body)| build::response(id, st, &body)),
        any::<u64>().prop_map(build::heartbeat),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// decode ∘ encode is the identity on the bytes, and the frames read back.
    #[test]
    fn encode_decode_roundtrip(frames in proptest::collection::vec(arb_frame(), 1..6)) {
        let d = Dubbo::default();
        let wire: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let decoded = decode_all(&d, &wire).unwrap();
        prop_assert_eq!(decoded.len(), frames.len());
        let mut out = BytesMut::new();
        for f in &decoded {
            d.encode(f, &mut out);
        }
        prop_assert_eq!(&out[..], &wire[..]);
    }

    /// Any split of the input decodes the same as the whole.
    #[test]
    fn splits_decode_the_same(frames in proptest::collection::vec(arb_frame(), 1..4), cut in any::<prop::sample::Index>()) {
        let d = Dubbo::default();
        let wire: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let whole = decode_all(&d, &wire).unwrap();
        let at = cut.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..at]);
        let mut parts = Vec::new();
        while let Some(f) = d.decode(&mut buf).unwrap() {
            parts.push(f);
        }
        buf.extend_from_slice(&wire[at..]);
        while let Some(f) = d.decode(&mut buf).unwrap() {
            parts.push(f);
        }
        prop_assert_eq!(parts, whole);
    }

    /// Arbitrary bytes never panic, and an error or a frame never reads past the input.
    #[test]
    fn arbitrary_bytes_never_panic(prefix in any::<bool>(), bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut input = if prefix { MAGIC.to_vec() } else { Vec::new() };
        input.extend_from_slice(&bytes);
        let _ = decode_all(&Dubbo::new(200), &input);
    }
}
