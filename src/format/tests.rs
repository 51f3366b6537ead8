use super::*;
use crate::stream_info::{LogType, Protocol, ResponseFlag, StreamInfo};
use proptest::prelude::*;
use std::time::{Duration, UNIX_EPOCH};

/// A finished HTTP stream, as the connection manager would record it.
fn info() -> StreamInfo {
    let mut i = StreamInfo::new(LogType::DownstreamEnd, 7, "l".into());
    i.start_time = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    i.duration = Some(Duration::from_millis(42));
    i.downstream_local = Some("127.0.0.1:15001".parse().unwrap());
    i.downstream_remote = Some("10.0.0.1:5555".parse().unwrap());
    i.protocol = Some(Protocol::Http11);
    i.method = Some(http::Method::POST);
    i.path = Some("/api?q=1".into());
    i.authority = Some("svc.ns".into());
    i.scheme = Some("http");
    let mut h = HeaderMap::new();
    h.insert("x-request-id", "abc-123".parse().unwrap());
    h.insert("user-agent", "curl/8".parse().unwrap());
    h.insert("x-empty", "".parse().unwrap());
    i.request_headers = Some(h);
    let mut r = HeaderMap::new();
    r.insert("x-envoy-upstream-service-time", "3".parse().unwrap());
    i.response_headers = Some(r);
    i.response_code = Some(503);
    i.response_code_details =
        Some("upstream_reset_before_response_started{remote connection failure}".into());
    i.response_flags
        .insert(ResponseFlag::UpstreamRetryLimitExceeded);
    i.response_flags
        .insert(ResponseFlag::UpstreamConnectionFailure);
    i.upstream_host = Some("10.1.1.1:80".into());
    i.upstream_cluster = Some("outbound|80||svc".into());
    i.upstream_local = Some("10.0.0.9:40000".parse().unwrap());
    i.upstream_transport_failure_reason = Some("delayed connect error: Connection refused".into());
    i.bytes_received = 11;
    i.bytes_sent = 95;
    i.attempt_count = 3;
    i.timing.first_upstream_rx = Some(Duration::from_millis(30));
    i.timing.last_downstream_tx = Some(Duration::from_millis(41));
    i
}

fn text(f: &str, i: &StreamInfo) -> String {
    let mut out = String::new();
    Formatter::parse(f).unwrap().write(i, &mut out, "-");
    out
}

#[test]
fn access_log_operators_render_from_the_record() {
    let i = info();
    let t = |f: &str| text(f, &i);
    assert_eq!(
        t("%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_FLAGS_LONG%"),
        "503 URX,UF UpstreamRetryLimitExceeded,UpstreamConnectionFailure"
    );
    assert_eq!(
        t(
            "%RESPONSE_CODE_DETAILS%|%UPSTREAM_TRANSPORT_FAILURE_REASON%|%CONNECTION_TERMINATION_DETAILS%"
        ),
        "upstream_reset_before_response_started{remote_connection_failure}|delayed_connect_error:_Connection_refused|-"
    );
    assert_eq!(
        t(
            "%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESPONSE_DURATION% %RESPONSE_TX_DURATION% %REQUEST_DURATION%"
        ),
        "11 95 42 30 11 -"
    );
    assert_eq!(
        t(
            "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL% %REQ(:AUTHORITY)% %REQ(host)% %REQ(:scheme)%"
        ),
        "POST /api?q=1 HTTP/1.1 svc.ns svc.ns http"
    );
    assert_eq!(
        t("[%REQ(x-empty)%] [%REQ(x-missing)%] [%REQ(USER-AGENT):4%]"),
        "[] [-] [curl]"
    );
    assert_eq!(
        t("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% %RESP(:status)% %TRAILER(grpc-status)%"),
        "3 503 -"
    );
    assert_eq!(
        t("%UPSTREAM_HOST% %UPSTREAM_CLUSTER% %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS%"),
        "10.1.1.1:80 outbound|80||svc outbound|80||svc 10.0.0.9:40000"
    );
    assert_eq!(
        t(
            "%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %UPSTREAM_REMOTE_PORT% %UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% %UPSTREAM_LOCAL_PORT%"
        ),
        "10.1.1.1 80 10.0.0.9 40000"
    );
    assert_eq!(
        t(
            "%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_REMOTE_PORT%"
        ),
        "127.0.0.1:15001 10.0.0.1:5555 10.0.0.1 5555"
    );
    assert_eq!(
        t(
            "%REQUESTED_SERVER_NAME% %ROUTE_NAME% %UPSTREAM_PEER_URI_SAN% %DOWNSTREAM_PEER_URI_SAN% %DYNAMIC_METADATA(istio.mixer:x)% %FILTER_STATE(upstream_peer:PLAIN)%"
        ),
        "- - - - - -"
    );
    assert_eq!(
        t(
            "%UPSTREAM_REQUEST_ATTEMPT_COUNT% %CONNECTION_ID% %STREAM_ID% %ACCESS_LOG_TYPE% %GRPC_STATUS%"
        ),
        "3 7 abc-123 DownstreamEnd -"
    );
    assert_eq!(
        t("%START_TIME% %START_TIME(%s.%3f)%"),
        "2023-11-14T22:13:20.123Z 1700000000.123"
    );
    assert_eq!(t("%HOSTNAME%"), hostname());
    assert_eq!(t("%UNIQUE_ID%").len(), 36);
    let mut out = String::new();
    Formatter::parse("[%ROUTE_NAME%]")
        .unwrap()
        .write(&i, &mut out, "");
    assert_eq!(
        out, "[]",
        "omit_empty_values prints nothing for a missing value"
    );
}

#[test]
fn istio_default_format_renders_like_envoy() {
    let istio = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";
    assert_eq!(
        text(istio, &info()),
        "[2023-11-14T22:13:20.123Z] \"POST /api?q=1 HTTP/1.1\" 503 URX,UF upstream_reset_before_response_started{remote_connection_failure} - \"delayed_connect_error:_Connection_refused\" 11 95 42 3 \"-\" \"curl/8\" \"abc-123\" \"svc.ns\" \"10.1.1.1:80\" outbound|80||svc 10.0.0.9:40000 127.0.0.1:15001 10.0.0.1:5555 - -\n"
    );
    // A TCP record: no request, no response code.
    let mut tcp = StreamInfo::new(LogType::TcpConnectionEnd, 1, "l".into());
    tcp.start_time = UNIX_EPOCH;
    tcp.duration = Some(Duration::from_millis(5));
    tcp.bytes_received = 49;
    tcp.bytes_sent = 138;
    assert_eq!(
        text(istio, &tcp),
        "[1970-01-01T00:00:00.000Z] \"- - -\" 0 - - - \"-\" 49 138 5 - \"-\" \"-\" \"-\" \"-\" \"-\" - - - - - -\n"
    );
}

#[test]
fn needs_follow_the_operators() {
    let n = |f: &str| Formatter::parse(f).unwrap().needs();
    assert_eq!(n("%RESPONSE_CODE%"), Needs::default());
    assert!(n("%REQ(x)%").request_headers);
    assert!(n("%REQ(:path)%").request_headers);
    assert!(n("%RESP(x)%").response_headers && !n("%RESP(x)%").request_headers);
    assert!(n("%TRAILER(x)%").response_trailers);
}

#[test]
fn envoy_parse_errors() {
    for f in [
        "50% x",
        "%lower%",
        "%START_TIME",
        "%%%",
        "%REQ()%",
        "%PROTOCOL(x)%",
        "%REQ(a?b?c)%",
        "%RESPONSE_CODE:3%",
        "%UPSTREAM_HOST:2%",
        "%GRPC_STATUS(BAD)%",
        "%REQ(x y)%",
        "%REQ(x-a):abc%",
        "%NOT_A_COMMAND%",
        "%REQ_WITHOUT_QUERY(:path)%",
        "%CEL(x)%",
        "%DYNAMIC_METADATA%",
    ] {
        assert!(Formatter::parse(f).is_err(), "{f} should not parse");
    }
    for f in [
        "a%%b",
        "%REQ(:path):5%",
        "%START_TIME(%Q)%",
        "%GRPC_STATUS(NUMBER)%",
        "%DYNAMIC_METADATA(a:b):3%",
        "%ENVIRONMENT(HOME)%",
        "%FILTER_STATE(a:PLAIN)%",
        "%ACCESS_LOG_TYPE%",
        "%TRAILER(x)%",
        "%EMIT_TIME(%s)%",
    ] {
        assert!(Formatter::parse(f).is_ok(), "{f} should parse");
    }
    let opts = ParseOptions {
        req_without_query: true,
        ..ParseOptions::default()
    };
    let f =
        Formatter::parse_with("%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%", opts).unwrap();
    let mut out = String::new();
    f.write(&info(), &mut out, "-");
    assert_eq!(out, "/api");
}

#[test]
fn grpc_status_forms() {
    let mut i = info();
    i.grpc_status = Some(14);
    assert_eq!(
        text(
            "%GRPC_STATUS% %GRPC_STATUS(SNAKE_STRING)% %GRPC_STATUS(NUMBER)% %GRPC_STATUS_NUMBER%",
            &i
        ),
        "Unavailable UNAVAILABLE 14 14"
    );
    i.grpc_status = Some(99);
    assert_eq!(text("%GRPC_STATUS%", &i), "99");
}

fn struct_of(json: &str) -> envoy_types::pb::google::protobuf::Struct {
    crate::config::decode_message_file::<envoy_types::pb::google::protobuf::Struct>(
        std::path::Path::new("t.json"),
        json.as_bytes(),
    )
    .expect("struct")
}

fn json(f: &str, omit: bool, i: &StreamInfo) -> serde_json::Value {
    let j = JsonFormat::compile(&struct_of(f), omit, ParseOptions::default()).unwrap();
    let (mut out, mut scratch) = (String::new(), String::new());
    j.write(i, &mut out, &mut scratch);
    assert!(out.ends_with('\n'));
    serde_json::from_str(&out).expect("valid JSON")
}

#[test]
fn json_values_keep_their_types() {
    let f = r#"{"code":"%RESPONSE_CODE%","flags":"%RESPONSE_FLAGS%","dur":"%DURATION%","rx":"%BYTES_RECEIVED%",
        "ust":"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%","mixed":"c=%RESPONSE_CODE% r=%ROUTE_NAME%","route":"%ROUTE_NAME%",
        "num":5,"half":0.5,"yes":true,"nothing":null,"nested":{"m":"%REQ(:METHOD)%","l":["%BYTES_SENT%","x"]},
        "trunc":"%REQ(user-agent):2%","quote":"%REQ(x-request-id)%\"\n"}"#;
    let v = json(f, false, &info());
    assert_eq!(
        v,
        serde_json::json!({"code":503,"flags":"URX,UF","dur":42,"rx":11,"ust":"3","mixed":"c=503 r=-",
            "route":null,"num":5,"half":0.5,"yes":true,"nothing":null,"nested":{"m":"POST","l":[95,"x"]},
            "trunc":"cu","quote":"abc-123\"\n"})
    );
    let v = json(f, true, &info());
    assert!(
        v.get("route").is_none(),
        "omit_empty_values leaves null values out: {v}"
    );
    assert_eq!(v["mixed"], "c=503 r=");
    // Keys come out sorted, as Envoy prints them.
    let j = JsonFormat::compile(
        &struct_of(r#"{"b":"1","a":"%BYTES_SENT%"}"#),
        false,
        ParseOptions::default(),
    )
    .unwrap();
    let (mut out, mut s) = (String::new(), String::new());
    j.write(&info(), &mut out, &mut s);
    assert_eq!(out, "{\"a\":95,\"b\":\"1\"}\n");
}

proptest! {
    /// Arbitrary format strings never panic: they parse or give an error, and what parses
    /// renders.
    #[test]
    fn arbitrary_formats_never_panic(f in "[%A-Z_a-z0-9():?.\\- ]{0,60}") {
        if let Ok(p) = Formatter::parse(&f) {
            let mut out = String::new();
            p.write(&info(), &mut out, "-");
        }
    }

    /// Literal text (with `%%` escapes) renders back as itself.
    #[test]
    fn literals_round_trip(s in "[a-zA-Z0-9 .,:/%\\[\\]\"-]{0,40}") {
        let escaped = s.replace('%', "%%");
        let f = Formatter::parse(&escaped).unwrap();
        prop_assert_eq!(f.literal(), Some(s.as_str()));
        prop_assert_eq!(text(&escaped, &info()), s);
    }

    /// Any operator from a known list, with random literal text around it, parses; truncation
    /// never exceeds the limit.
    #[test]
    fn known_operators_parse_and_truncate(
        pre in "[a-z ]{0,5}",
        op in prop::sample::select(vec!["REQ(user-agent)", "REQ(:path)", "RESP(x-envoy-upstream-service-time)", "REQ(x-request-id?user-agent)", "TRAILER(grpc-status)", "DYNAMIC_METADATA(a:b)"]),
        len in 0usize..12,
    ) {
        let f = format!("{pre}%{op}:{len}%");
        let p = Formatter::parse(&f).unwrap();
        let mut out = String::new();
        p.write(&info(), &mut out, "-");
        let tail = &out[pre.len()..];
        prop_assert!(tail == "-" || tail.len() <= len, "{} -> {}", f, out);
    }
}

proptest! {
    /// The fast writers print what `core::fmt` prints.
    #[test]
    fn fast_writers_match_display(v in any::<u64>(), width in 0usize..25, a in any::<std::net::SocketAddr>()) {
        let mut s = String::new();
        push_u64(&mut s, v);
        prop_assert_eq!(&s, &v.to_string());
        s.clear();
        push_padded(&mut s, v, width);
        prop_assert_eq!(&s, &format!("{v:0width$}"));
        s.clear();
        push_socket_addr(&mut s, a);
        prop_assert_eq!(&s, &a.to_string());
        s.clear();
        push_ip(&mut s, a.ip());
        prop_assert_eq!(&s, &a.ip().to_string());
    }

    /// The per-second cache of the default `%START_TIME%` gives what the general path gives,
    /// also when consecutive calls cross seconds.
    #[test]
    fn start_time_cache_matches_the_general_format(secs in prop::collection::vec(0u64..4_000_000_000, 1..8), nanos in 0u32..1_000_000_000) {
        for s in secs {
            let t = UNIX_EPOCH + Duration::new(s, nanos);
            let (mut fast, mut general) = (String::new(), String::new());
            time::format_time(t, "", &mut fast);
            time::format_time(t, "%Y-%m-%dT%H:%M:%E3SZ ", &mut general);
            prop_assert_eq!(format!("{fast} "), general);
        }
    }
}
