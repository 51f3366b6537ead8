use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Frames written by sofa-bolt-node 2.0.1 (the npm package the integration tests drive),
/// captured byte for byte from its encoder (hessian 2 content in its hessian "4.0" mode).
const HEARTBEAT: &str = "0101000001000000070100000bb80000000000000000";
const HESSIAN2_REQUEST: &str = "0101000101000000010100000bb8002c0024000000c1636f6d2e616c697061792e736f66612e7270632e636f72652e726571756573742e536f666152657175657374000000077365727669636500000015636f6d2e6578616d706c652e48656c6c6f3a312e3043302c636f6d2e616c697061792e736f66612e7270632e636f72652e726571756573742e536f666152657175657374950a6d6574686f644e616d650d6d6574686f64417267536967731774617267657453657276696365556e697175654e616d650d7461726765744170704e616d650c7265717565737450726f707360046563686f71115b6a6176612e6c616e672e537472696e67106a6176612e6c616e672e537472696e6715636f6d2e6578616d706c652e48656c6c6f3a312e304e4e026869";
const HESSIAN2_ONEWAY: &str = "0102000101000000020100000bb8002c0024000000c3636f6d2e616c697061792e736f66612e7270632e636f72652e726571756573742e536f666152657175657374000000077365727669636500000015636f6d2e6578616d706c652e48656c6c6f3a312e3043302c636f6d2e616c697061792e736f66612e7270632e636f72652e726571756573742e536f666152657175657374950a6d6574686f644e616d650d6d6574686f64417267536967731774617267657453657276696365556e697175654e616d650d7461726765744170704e616d650c7265717565737450726f707360066e6f7469667971115b6a6176612e6c616e672e537472696e67106a6176612e6c616e672e537472696e6715636f6d2e6578616d706c652e48656c6c6f3a312e304e4e026869";
const PROTOBUF_REQUEST: &str = "0101000101000000030b00000bb8002c009e00000004636f6d2e616c697061792e736f66612e7270632e636f72652e726571756573742e536f6661526571756573740000000773657276696365000000197465726e2e746573742e4563686f536572766963653a312e3000000015736f66615f686561645f6d6574686f645f6e616d65000000046563686f00000014736f66615f686561645f7461726765745f6170700000000000000018736f66615f686561645f7461726765745f73657276696365000000197465726e2e746573742e4563686f536572766963653a312e300a026869";
const HESSIAN2_RESPONSE: &str = "010000020100000001010000002e000000000064636f6d2e616c697061792e736f66612e7270632e636f72652e726573706f6e73652e536f6661526573706f6e736543302e636f6d2e616c697061792e736f66612e7270632e636f72652e726573706f6e73652e536f6661526573706f6e7365940769734572726f72086572726f724d73670b617070526573706f6e73650d726573706f6e736550726f707360464e0268694e";
const HEARTBEAT_ACK: &str = "0100000001000000070100000000000000000000";

fn one(bytes: &[u8]) -> Command {
    let mut buf = BytesMut::from(bytes);
    let frame = Command::decode(&mut buf, DEFAULT_MAX_FRAME_SIZE)
        .unwrap()
        .unwrap();
    assert!(buf.is_empty(), "{} bytes left", buf.len());
    frame
}

#[test]
fn sofa_bolt_node_frames_decode() {
    let hb = one(&hex(HEARTBEAT));
    assert!(hb.is_heartbeat() && hb.is_request() && !hb.is_oneway());
    assert_eq!(hb.request_id(), 7);
    assert_eq!(hb.timeout_ms(), Some(3000));
    assert_eq!(hb.layout().ver2, 1);
    assert!(hb.class_name_bytes().is_empty() && hb.content().is_empty());

    let rq = one(&hex(HESSIAN2_REQUEST));
    assert!(rq.is_request() && !rq.is_heartbeat() && !rq.is_oneway());
    assert_eq!(rq.request_id(), 1);
    assert_eq!(rq.codec(), CODEC_HESSIAN2);
    assert_eq!(rq.class_name(), Some(SOFA_REQUEST_CLASS));
    assert_eq!(rq.service(), Some("com.example.Hello:1.0"));
    assert_eq!(
        rq.method(),
        None,
        "sofa-bolt-node's hessian requests name no method"
    );
    assert_eq!(
        rq.headers(),
        vec![(&b"service"[..], &b"com.example.Hello:1.0"[..])]
    );
    assert_eq!(rq.content().len(), 0xc1);
    assert_eq!(rq.content().last(), Some(&b'i'));

    let ow = one(&hex(HESSIAN2_ONEWAY));
    assert!(ow.is_oneway() && ow.is_request());
    assert_eq!(ow.request_id(), 2);

    let pb = one(&hex(PROTOBUF_REQUEST));
    assert_eq!(pb.codec(), CODEC_PROTOBUF);
    assert_eq!(pb.service(), Some("tern.test.EchoService:1.0"));
    assert_eq!(pb.method(), Some("echo"));
    assert_eq!(pb.header_str(header_key::TARGET_APP), Some(""));
    assert_eq!(pb.content(), b"\x0a\x02hi");

    let rs = one(&hex(HESSIAN2_RESPONSE));
    assert!(!rs.is_request() && !rs.is_heartbeat());
    assert_eq!(rs.status(), ResponseStatus::SUCCESS);
    assert_eq!(rs.class_name(), Some(SOFA_RESPONSE_CLASS));
    assert_eq!(rs.timeout_ms(), None);

    let ack = one(&hex(HEARTBEAT_ACK));
    assert!(ack.is_heartbeat() && !ack.is_request());
    assert_eq!(ack.request_id(), 7);
}

/// tern's heartbeat answer is byte for byte what sofa-bolt-node answers.
#[test]
fn heartbeat_ack_matches_sofa_bolt_node() {
    let hb = one(&hex(HEARTBEAT));
    assert_eq!(hb.heartbeat_ack().as_bytes(), &hex(HEARTBEAT_ACK)[..]);
}

/// A request built field by field from the layout in SOFABolt's `RpcProtocol` documentation
/// (`proto type cmdcode ver2 requestId codec timeout classLen headerLen contentLen`, then
/// class name, header map, content), decoded and re-encoded unchanged.
#[test]
fn spec_layout_request() {
    let mut b = vec![
        0x01, // proto: Bolt v1
        0x01, // type: request
        0x00, 0x01, // cmdcode: RPC request
        0x01, // ver2
        0x00, 0x00, 0x01, 0x02, // requestId 258
        0x0b, // codec: protobuf
        0x00, 0x00, 0x03, 0xe8, // timeout 1000 ms
        0x00, 0x03, // classLen 3
        0x00, 0x15, // headerLen 21 = 4 + 7 + 4 + 6
        0x00, 0x00, 0x00, 0x02, // contentLen 2
    ];
    b.extend_from_slice(b"Foo");
    b.extend_from_slice(&[0, 0, 0, 7]);
    b.extend_from_slice(b"service");
    b.extend_from_slice(&[0, 0, 0, 6]);
    b.extend_from_slice(b"a.B:1");
    b.push(b'0');
    b.extend_from_slice(b"\x08\x01");
    let f = one(&b);
    assert_eq!(f.request_id(), 258);
    assert_eq!(f.timeout_ms(), Some(1000));
    assert_eq!(f.class_name(), Some("Foo"));
    assert_eq!(f.service(), Some("a.B:10"));
    assert_eq!(f.content(), b"\x08\x01");
    let built = Command::build(
        CommandHead::request(258, false, 1000).codec(CODEC_PROTOBUF),
        b"Foo",
        &[(b"service", b"a.B:10")],
        b"\x08\x01",
    )
    .unwrap();
    assert_eq!(built.as_bytes(), &b[..]);
}

#[test]
fn error_response_layout() {
    let rq = one(&hex(PROTOBUF_REQUEST));
    let e = rq.error_response(ResponseStatus::CONNECTION_CLOSED);
    assert_eq!(
        e.as_bytes(),
        &[
            0x01, 0x00, 0x00, 0x02, 0x01, 0x00, 0x00, 0x00, 0x03, 0x0b, 0x00, 0x10, 0, 0, 0, 0, 0,
            0, 0, 0
        ][..]
    );
    assert_eq!(e.status().name(), Some("CONNECTION_CLOSED"));
    assert_eq!(
        ResponseStatus(0x0012).name(),
        Some("SERVER_DESERIAL_EXCEPTION")
    );
    assert_eq!(ResponseStatus(0x000a).name(), None);
}

#[test]
fn set_request_id_rewrites_in_place() {
    let mut f = one(&hex(HESSIAN2_REQUEST));
    f.set_request_id(0xdead_beef);
    let again = one(f.as_bytes());
    assert_eq!(again.request_id(), 0xdead_beef);
    assert_eq!(again.content(), one(&hex(HESSIAN2_REQUEST)).content());
}

#[test]
fn bad_frames() {
    let max = DEFAULT_MAX_FRAME_SIZE;
    let hb = hex(HEARTBEAT);
    let with = |at: usize, bytes: &[u8]| {
        let mut b = hb.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    assert_eq!(
        peek(b"GET / HTTP/1.1", max),
        Err(BoltError::ProtocolCode(b'G'))
    );
    let v2 = peek(&with(0, &[2]), max).unwrap_err();
    assert!(v2.to_string().contains("Bolt v2 is not supported"), "{v2}");
    assert_eq!(peek(&with(1, &[3]), max), Err(BoltError::CmdType(3)));
    // A request type with the response command code, and an unknown code.
    assert_eq!(
        peek(&with(2, &[0, 2]), max),
        Err(BoltError::CmdCode {
            cmd_type: 1,
            code: 2
        })
    );
    assert!(matches!(
        peek(&with(2, &[0, 9]), max),
        Err(BoltError::CmdCode { .. })
    ));
    assert_eq!(
        peek(&with(14, &[0xff, 0xff]), max),
        Err(BoltError::NegativeLength {
            field: "class",
            len: -1
        })
    );
    assert_eq!(
        peek(&with(18, &[0x80, 0, 0, 0]), max),
        Err(BoltError::NegativeLength {
            field: "content",
            len: i32::MIN
        })
    );
    // Too large is known from the header alone, before the content arrives.
    assert_eq!(
        peek(&with(18, &[0, 0, 0x10, 0]), 1024),
        Err(BoltError::TooLarge {
            len: 22 + 4096,
            max: 1024
        })
    );
    // A header map whose value length runs past its end.
    let mut b = with(16, &[0, 8]);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9]);
    assert!(matches!(
        peek(&b, max),
        Err(BoltError::HeaderMap { at: 8, .. })
    ));
    // A null value (-1) is accepted and reads as empty; -2 is not.
    let mut b = with(16, &[0, 9]);
    b.extend_from_slice(&[0, 0, 0, 1, b'k', 0xff, 0xff, 0xff, 0xff]);
    let f = one(&b);
    assert_eq!(f.header("k"), Some(&b""[..]));
    let n = b.len();
    b[n - 1] = 0xfe;
    assert!(matches!(peek(&b, max), Err(BoltError::HeaderMap { .. })));
    // Building a frame with a part that cannot fit is an error, not a wrong length.
    let big = vec![0u8; 40_000];
    assert!(matches!(
        Command::build(CommandHead::heartbeat(1), &big, &[], &[]),
        Err(BoltError::PartTooLong { field: "class", .. })
    ));
    assert!(matches!(
        Command::build(
            CommandHead::heartbeat(1),
            &[],
            &[(&big[..20_000], &big[..20_000])],
            &[]
        ),
        Err(BoltError::PartTooLong {
            field: "header",
            ..
        })
    ));
}

#[test]
fn several_frames_in_one_buffer() {
    let mut all = Vec::new();
    for f in [
        HEARTBEAT,
        HESSIAN2_REQUEST,
        PROTOBUF_REQUEST,
        HESSIAN2_RESPONSE,
    ] {
        all.extend(hex(f));
    }
    all.extend(&hex(HESSIAN2_ONEWAY)[..30]);
    let (frames, rest) = decode_all(&all, DEFAULT_MAX_FRAME_SIZE);
    assert_eq!(frames.len(), 4);
    assert_eq!(rest, Ok(30));
}

fn arb_frame() -> impl Strategy<Value = Command> {
    let head = prop_oneof![
        (any::<u32>(), any::<bool>(), any::<i32>())
            .prop_map(|(id, ow, t)| CommandHead::request(id, ow, t)),
        any::<u32>().prop_map(CommandHead::heartbeat),
        (any::<u32>(), any::<u16>())
            .prop_map(|(id, s)| CommandHead::response(id, ResponseStatus(s))),
        (any::<u32>(), any::<u16>()).prop_map(|(id, s)| {
            CommandHead::response(id, ResponseStatus(s)).cmd_code(CmdCode::Heartbeat)
        }),
    ];
    let bytes = |n| proptest::collection::vec(any::<u8>(), 0..n);
    (
        head,
        any::<u8>(),
        any::<u8>(),
        bytes(40),
        proptest::collection::vec((bytes(12), bytes(12)), 0..4),
        bytes(200),
    )
        .prop_map(|(head, codec, ver2, class, map, content)| {
            let map: Vec<(&[u8], &[u8])> = map.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            Command::build(head.codec(codec).ver2(ver2), &class, &map, &content).unwrap()
        })
}

proptest! {
    /// decode ∘ encode is the identity, fields included.
    #[test]
    fn round_trip(frame in arb_frame()) {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf);
        let back = Command::decode(&mut buf, DEFAULT_MAX_FRAME_SIZE).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(&back, &frame);
        prop_assert_eq!(back.headers().len(), frame.headers().len());
    }

    /// Every strict prefix of a frame needs more bytes, and says how many at most.
    #[test]
    fn truncation_needs_more(frame in arb_frame()) {
        let bytes = frame.as_bytes();
        for cut in 0..bytes.len() {
            match peek(&bytes[..cut], DEFAULT_MAX_FRAME_SIZE) {
                Ok(Peek::NeedMore(n)) => prop_assert!(n > cut && n <= bytes.len()),
                other => prop_assert!(false, "cut {} of {}: {:?}", cut, bytes.len(), other),
            }
        }
    }

    /// A stream of frames split anywhere decodes to the same frames as in one piece.
    #[test]
    fn any_split_decodes_the_same(
        frames in proptest::collection::vec(arb_frame(), 1..4),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut all = Vec::new();
        for f in &frames {
            all.extend_from_slice(f.as_bytes());
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(all.len() + 1)).collect();
        cuts.push(all.len());
        cuts.sort();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut from = 0;
        for cut in cuts {
            buf.extend_from_slice(&all[from..cut]);
            from = cut;
            while let Some(f) = Command::decode(&mut buf, DEFAULT_MAX_FRAME_SIZE).unwrap() {
                got.push(f);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }

    /// Arbitrary bytes never panic, and whatever decodes re-encodes to the bytes it came from.
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300), max in 0usize..400) {
        let (frames, rest) = decode_all(&bytes, max);
        let mut used = 0;
        for f in &frames {
            prop_assert!(f.as_bytes().len() <= max);
            prop_assert_eq!(f.as_bytes(), &bytes[used..used + f.as_bytes().len()]);
            used += f.as_bytes().len();
            let _ = (f.headers(), f.service(), f.method(), f.class_name(), f.timeout_ms());
        }
        if let Ok(rest) = rest {
            prop_assert_eq!(used + rest, bytes.len());
        }
    }

    /// Mostly-valid frames with one byte changed never panic either.
    #[test]
    fn mutated_frames(frame in arb_frame(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = frame.as_bytes().to_vec();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let (frames, _) = decode_all(&bytes, DEFAULT_MAX_FRAME_SIZE);
        for f in frames {
            let _ = (f.headers(), f.service(), f.method());
        }
    }
}

fn framed(hexed: &str) -> Frame {
    let mut buf = BytesMut::from(&hex(hexed)[..]);
    let f = Bolt::default().decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    f
}

#[test]
fn xprotocol_kinds_and_route_headers() {
    assert_eq!(framed(HEARTBEAT).kind, FrameKind::Heartbeat);
    assert_eq!(framed(HEARTBEAT_ACK).kind, FrameKind::HeartbeatResponse);
    assert_eq!(framed(HESSIAN2_ONEWAY).kind, FrameKind::Oneway);
    let rs = framed(HESSIAN2_RESPONSE);
    assert_eq!(rs.kind, FrameKind::Response);
    assert_eq!(rs.status, Some(Status { code: 0, ok: true }));
    assert_eq!(rs.headers, RouteHeaders::default());

    let rq = framed(HESSIAN2_REQUEST);
    assert_eq!(rq.kind, FrameKind::Request);
    // No method in the header map: read from the hessian SofaRequest's first field.
    assert_eq!(rq.headers.get("method"), Some("echo"));
    assert_eq!(
        framed(HESSIAN2_ONEWAY).headers.get("method"),
        Some("notify")
    );
    assert_eq!(rq.request_id, 1);
    assert_eq!(rq.status, None);
    assert_eq!(rq.headers.get("service"), Some("com.example.Hello:1.0"));
    assert_eq!(rq.headers.get("version"), Some("1.0"));
    assert_eq!(rq.headers.get("group"), None);
    assert_eq!(rq.headers.get(CLASS_NAME_KEY), Some(SOFA_REQUEST_CLASS));

    let pb = framed(PROTOBUF_REQUEST);
    assert_eq!(pb.headers.get("method"), Some("echo"));
    assert_eq!(pb.headers.get("sofa_head_target_app"), Some(""));
    assert_eq!(
        pb.headers.get("sofa_head_target_service"),
        Some("tern.test.EchoService:1.0")
    );

    // The id rewrite of the framework patches Bolt's id field.
    let mut rq = rq;
    rq.set_request_id(77);
    assert_eq!(one(&rq.raw).request_id(), 77);
}

#[test]
fn xprotocol_errors_and_local_replies() {
    let bolt = Bolt::new(64);
    let mut buf = BytesMut::from(&hex(HESSIAN2_REQUEST)[..]);
    assert!(matches!(
        bolt.decode(&mut buf),
        Err(CodecError::TooLarge {
            protocol: "bolt",
            max: 64,
            ..
        })
    ));
    let mut buf = BytesMut::from(&b"\x01\x07junk"[..]);
    let err = bolt.decode(&mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bolt: malformed frame: bolt: unknown command type 7"
    );
    let mut buf = BytesMut::from(&hex(HEARTBEAT)[..10]);
    assert_eq!(bolt.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 10);

    assert_eq!(bolt.detect(&[]), Detect::NeedMore);
    assert_eq!(bolt.detect(&[1, 1, 0]), Detect::NeedMore);
    assert_eq!(bolt.detect(&hex(HEARTBEAT)[..4]), Detect::Matched);
    assert_eq!(bolt.detect(&[0xda, 0xbb]), Detect::NotMatched);
    assert_eq!(bolt.detect(&[1, 1, 0, 2]), Detect::NotMatched);
    assert_eq!(bolt.detect(b"GET / HTTP/1.1"), Detect::NotMatched);

    let hb = framed(HEARTBEAT);
    assert_eq!(
        &bolt.heartbeat_response(&hb).raw[..],
        &hex(HEARTBEAT_ACK)[..]
    );

    let rq = framed(HESSIAN2_REQUEST);
    let e = bolt.error_response(&rq, ErrorKind::UpstreamReset, "upstream reset");
    assert_eq!(e.kind, FrameKind::Response);
    assert_eq!(e.request_id, 1);
    assert_eq!(
        e.status,
        Some(Status {
            code: 0x10,
            ok: false
        })
    );
    let c = one(&e.raw);
    assert_eq!(c.content(), b"");
    assert_eq!(c.class_name_bytes(), b"");
    assert_eq!(c.header_str(ERROR_MESSAGE_KEY), Some("upstream reset"));
    let e = bolt.error_response(&framed(PROTOBUF_REQUEST), ErrorKind::Timeout, "");
    assert_eq!(one(&e.raw).header_map_bytes(), b"");
    assert_eq!(one(&e.raw).status(), ResponseStatus::TIMEOUT);
    assert_eq!(one(&e.raw).codec(), CODEC_PROTOBUF);

    for (kind, status) in [
        (ErrorKind::NoRoute, 0x06),
        (ErrorKind::NoHealthyUpstream, 0x05),
        (ErrorKind::ConnectFailure, 0x05),
        (ErrorKind::UpstreamReset, 0x10),
        (ErrorKind::Timeout, 0x07),
        (ErrorKind::Overflow, 0x04),
        (ErrorKind::BadRequest, 0x09),
    ] {
        assert_eq!(Bolt::status_for(kind), ResponseStatus(status), "{kind:?}");
    }
}

#[test]
fn hessian_method_name_reads_only_what_it_must() {
    let rq = one(&hex(HESSIAN2_REQUEST));
    let content = rq.content();
    assert_eq!(hessian_method_name(content).as_deref(), Some("echo"));
    // Every truncation is None, never a panic or a wrong name.
    for cut in 0..content.len() {
        let m = hessian_method_name(&content[..cut]);
        assert!(m.is_none() || m.as_deref() == Some("echo"), "{cut}: {m:?}");
    }
    assert_eq!(hessian_method_name(b""), None);
    assert_eq!(
        hessian_method_name(b"C\x05Other\x91\x0amethodName\x60\x02hi"),
        None
    );
    // A class whose fields are in another order: methodName after a string field.
    let mut c = b"C\x30\x2c".to_vec();
    c.extend_from_slice(SOFA_REQUEST_CLASS.as_bytes());
    c.extend_from_slice(b"\x92\x0dtargetAppName\x0amethodName\x60\x03app\x05hello");
    assert_eq!(hessian_method_name(&c).as_deref(), Some("hello"));
    // Java's order: a string and a map before the method name.
    let mut j = b"C\x30\x2c".to_vec();
    j.extend_from_slice(SOFA_REQUEST_CLASS.as_bytes());
    j.extend_from_slice(b"\x93\x0dtargetAppName\x0crequestProps\x0amethodName");
    j.extend_from_slice(b"\x60\x03appH\x01k\x01vZ\x05hello");
    assert_eq!(hessian_method_name(&j).as_deref(), Some("hello"));
    // A negative field count (compact int 0x85 = -11; found by the fuzzer): nothing.
    let mut neg = b"C\x30\x2c".to_vec();
    neg.extend_from_slice(SOFA_REQUEST_CLASS.as_bytes());
    neg.extend_from_slice(b"\x85\x0amethodName\x60\x02hi");
    assert_eq!(hessian_method_name(&neg), None);
    // A value that does not parse before the method name: nothing.
    let n = c.len();
    c[n - 10] = b'H';
    assert_eq!(hessian_method_name(&c), None);
    // protobuf content or a header-map method wins over nothing.
    assert_eq!(framed(PROTOBUF_REQUEST).headers.get("method"), Some("echo"));
}
