//! Entry points for fuzzing tern's parsers of untrusted input: bootstrap text, the xDS resource
//! types (`Cluster`, `Listener`, `RouteConfiguration`), the HTTP connection manager's
//! request path and header processing, access log format strings, the listener
//! inspectors' ClientHello and request-line parsers, the Bolt and Dubbo codecs, and the
//! HTTP/1.1 codec's reading of an upstream's responses and of a client's requests. Each takes
//! arbitrary bytes and
//! returns `()`; none may panic on any input. The targets in `fuzz/fuzz_targets/` call them,
//! and the tests below run them over the seed corpora in `fuzz/corpus/` and over random bytes,
//! so `cargo test` covers the same code on stable Rust.
//!
//! Not API: hidden from the docs and free to change. Depends on everything it exercises and
//! nothing depends on it.

use crate::config::parse_bootstrap;
use crate::filters::HcmConfig;
use crate::proxy::hcm::request;
use crate::router::{Action, FormatContext, RequestInfo, RouteTable};
use crate::snapshot::{ConnMeta, World, compile_listener};
use crate::stats::Store;
use crate::upstream::cluster::Cluster;
use envoy_types::pb::envoy::config::cluster::v3 as cluster_pb;
use envoy_types::pb::envoy::config::listener::v3 as listener_pb;
use envoy_types::pb::envoy::config::route::v3 as route_pb;
use envoy_types::pb::envoy::extensions::filters::http::router::v3 as router_pb;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm_pb;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

#[cfg(test)]
mod seeds;
#[cfg(test)]
mod tests;

/// One stats store for every call: compiling registers stats, and a fresh store per input
/// would only slow the fuzzer down.
fn store() -> &'static Arc<Store> {
    static STORE: OnceLock<Arc<Store>> = OnceLock::new();
    STORE.get_or_init(Store::new)
}

/// Bootstrap text: UTF-8, then `parse_bootstrap` as JSON and as YAML (strict first, then
/// with unknown fields allowed); a bootstrap that parses is compiled with
/// `World::compile_static` (clusters, listeners, route tables, filter chains; no sockets,
/// no tasks).
pub fn bootstrap_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for json in [true, false] {
        for allow_unknown in [false, true] {
            if let Ok(bootstrap) = parse_bootstrap(text, json, allow_unknown) {
                let world = World::new(store().clone());
                let _ = world.compile_static(&bootstrap);
                break;
            }
        }
    }
}

/// A binary `RouteConfiguration` (as RDS delivers it): compile it and, if it compiles, route
/// a few fixed requests and one per route of the first virtual hosts through it, evaluating
/// what the HCM evaluates on a match (cluster choice, path rewrite, hash, redirect location,
/// header mutations).
pub fn route_config_proto(data: &[u8]) {
    let Ok(rc) = route_pb::RouteConfiguration::decode(data) else {
        return;
    };
    let Ok(table) = RouteTable::compile(&rc) else {
        return;
    };
    let mut targets: Vec<(String, String)> = [
        ("example.com", "/"),
        ("EXAMPLE.com:8080", "/api/v1/items?x=1&y=%2F"),
        ("[::1]:80", "/a/../b//c"),
        ("*.wildcard", "*"),
        ("", ""),
    ]
    .iter()
    .map(|(a, p)| (a.to_string(), p.to_string()))
    .collect();
    for vh in rc.virtual_hosts.iter().take(4) {
        let authority = vh
            .domains
            .first()
            .map_or("", |d| d.as_str())
            .replace('*', "x");
        for r in vh.routes.iter().take(8) {
            use route_pb::route_match::PathSpecifier;
            let path = match r.r#match.as_ref().and_then(|m| m.path_specifier.as_ref()) {
                Some(PathSpecifier::Prefix(p)) => format!("{p}/x?q=1"),
                Some(PathSpecifier::Path(p)) => p.clone(),
                Some(PathSpecifier::PathSeparatedPrefix(p)) => format!("{p}/y"),
                _ => "/".to_owned(),
            };
            targets.push((authority.clone(), path));
        }
    }
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "content-type",
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert("x-fuzz", http::HeaderValue::from_static("1"));
    headers.insert("cookie", http::HeaderValue::from_static("a=b; session=c"));
    let remote: SocketAddr = ([10, 0, 0, 1], 4242).into();
    for (authority, path) in &targets {
        for method in [http::Method::GET, http::Method::POST, http::Method::CONNECT] {
            let req = RequestInfo {
                authority,
                path,
                method: &method,
                headers: &headers,
                downstream_remote: Some(remote),
            };
            for random in [0, 7, u64::MAX] {
                if let Some(m) = table.find_with_random(&req, random) {
                    exercise_match(&m, &req, random);
                }
            }
        }
    }
}

fn exercise_match(m: &crate::router::Matched<'_>, req: &RequestInfo<'_>, random: u64) {
    let ctx = FormatContext {
        downstream_remote: req.downstream_remote,
        downstream_local: Some(([127, 0, 0, 1], 15006).into()),
        upstream_remote: Some("10.1.2.3:80"),
        upstream_cluster: Some("fuzz"),
        start_time: SystemTime::UNIX_EPOCH,
        protocol: "HTTP/1.1",
        request_headers: Some(req.headers),
        hostname: "fuzz",
    };
    let mut headers = req.headers.clone();
    match &m.route.action {
        Action::Forward(ra) => {
            let _ = ra.pick_cluster_entry(req.headers, random);
            let _ = ra.rewrite_path(m.route, req.path);
            let _ = ra.hash(req);
            let _ = ra.upgrade_enabled("websocket", false);
        }
        Action::Redirect(r) => {
            let _ = r.location(m.route, req, "http");
        }
        Action::Direct(_) | Action::NonForwarding => {}
    }
    m.apply_request_headers(&mut headers, &ctx);
    m.apply_response_headers(&mut headers, &ctx);
}

/// A binary `Cluster` (as CDS delivers it), compiled. Compiling starts no DNS resolution
/// (`Cluster::start_dns` is separate), so it needs no runtime.
pub fn cluster_proto(data: &[u8]) {
    let Ok(c) = cluster_pb::Cluster::decode(data) else {
        return;
    };
    let _ = Cluster::compile(&c, store());
}

/// A binary `Listener` (as LDS delivers it), compiled, then a filter chain selected for a few
/// fixed connections.
pub fn listener_proto(data: &[u8]) {
    let Ok(l) = listener_pb::Listener::decode(data) else {
        return;
    };
    let Ok(listener) = compile_listener(&l, store()) else {
        return;
    };
    let h2 = ["h2".to_owned(), "http/1.1".to_owned()];
    let metas = [
        ConnMeta {
            local: Some(([10, 0, 0, 2], 8080).into()),
            remote: Some(([10, 0, 0, 1], 40000).into()),
            direct_remote: Some(([10, 0, 0, 1], 40000).into()),
            server_name: None,
            transport_protocol: "raw_buffer",
            application_protocols: &[],
        },
        ConnMeta {
            local: Some("[fd00::2]:15006".parse().expect("a valid socket address")),
            remote: Some("[fd00::1]:1234".parse().expect("a valid socket address")),
            direct_remote: None,
            server_name: Some("outbound_.80_._.svc.cluster.local"),
            transport_protocol: "tls",
            application_protocols: &h2,
        },
        ConnMeta {
            local: None,
            remote: None,
            direct_remote: None,
            server_name: Some(""),
            transport_protocol: "",
            application_protocols: &[],
        },
    ];
    for meta in &metas {
        let _ = listener.select_chain(meta);
    }
}

/// The HCM configuration `request_path` starts from: the defaults of an
/// `HttpConnectionManager` with a router filter.
fn base_hcm() -> &'static HcmConfig {
    static HCM: OnceLock<HcmConfig> = OnceLock::new();
    HCM.get_or_init(|| {
        let hcm = hcm_pb::HttpConnectionManager {
            stat_prefix: "fuzz".to_owned(),
            route_specifier: Some(
                hcm_pb::http_connection_manager::RouteSpecifier::RouteConfig(
                    route_pb::RouteConfiguration::default(),
                ),
            ),
            http_filters: vec![hcm_pb::HttpFilter {
                name: "envoy.filters.http.router".to_owned(),
                config_type: Some(hcm_pb::http_filter::ConfigType::TypedConfig(Any {
                    type_url: router_pb::Router::type_url(),
                    value: router_pb::Router::default().encode_to_vec(),
                })),
                ..Default::default()
            }],
            ..Default::default()
        };
        let any = Any {
            type_url: hcm_pb::HttpConnectionManager::type_url(),
            value: hcm.encode_to_vec(),
        };
        HcmConfig::compile(&any, store()).expect("a minimal HCM with a router filter compiles")
    })
}

/// The listener inspectors' parsers of a connection's first bytes:
/// `protocol::client_hello::parse` (the TLS inspector) and `protocol::detect::inspect_http`
/// (the HTTP inspector), with checked invariants: an answer agrees with the input's length, a
/// decided prefix decides the whole the same way, and the HTTP scan fed in steps gives the
/// answer of one scan.
pub fn listener_inspectors(data: &[u8]) {
    use crate::protocol::client_hello::{Parse, parse};
    use crate::protocol::detect::{HttpInspect, HttpProtocol, inspect_http};
    let whole = parse(data);
    match &whole {
        Parse::NeedMore(n) => assert!(*n > data.len(), "{whole:?}"),
        Parse::NotTls { at, .. } => assert!(*at <= data.len(), "{whole:?}"),
        Parse::Hello(h) => {
            assert!(h.consumed <= data.len());
            assert_eq!(parse(&data[..h.consumed]), whole);
        }
    }
    for cut in [data.len() / 2, data.len() / 3] {
        match parse(&data[..cut]) {
            Parse::NeedMore(n) => assert!(n > cut),
            decided => assert_eq!(decided, whole, "prefix {cut}"),
        }
    }
    let http = inspect_http(data);
    let mut stepwise = HttpInspect::default();
    let mut last = HttpProtocol::NeedMore;
    for cut in (0..=data.len()).step_by(7).chain([data.len()]) {
        last = stepwise.scan(&data[..cut]);
        if last != HttpProtocol::NeedMore {
            break;
        }
    }
    assert_eq!(last, http);
}

/// The HCM's downstream request processing before routing. The first byte chooses the
/// configuration (bit 0 `normalize_path`, 1 `merge_slashes`, 2 `strip_any_host_port`, 3
/// `strip_matching_host_port`, 4 `use_remote_address`, 5 `skip_xff_append`, 6–7
/// `xff_num_trusted_hops`); the rest, as UTF-8, is lines: the request target, `Host`, and
/// `x-forwarded-for`. Path normalization is also checked: the result is an origin-form path
/// with the query unchanged, free of dot segments (and of empty ones with `merge_slashes`),
/// and normalizing it again changes nothing.
pub fn request_path(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut cfg = base_hcm().clone();
    cfg.normalize_path = flags & 1 != 0;
    cfg.merge_slashes = flags & 2 != 0;
    cfg.strip_any_host_port = flags & 4 != 0;
    cfg.strip_matching_host_port = flags & 8 != 0;
    cfg.use_remote_address = flags & 16 != 0;
    cfg.skip_xff_append = flags & 32 != 0;
    cfg.xff_num_trusted_hops = u32::from(flags >> 6);

    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or_default();
    let host = lines.next();
    let xff = lines.next();

    check_normalize(target, cfg.normalize_path, cfg.merge_slashes);

    // As the HCM gets the request from hyper: a parsed URI and a header map.
    let uri = http::Uri::try_from(target).unwrap_or_default();
    let mut headers = http::HeaderMap::new();
    if let Some(v) = host.and_then(|h| http::HeaderValue::from_str(h).ok()) {
        headers.insert(http::header::HOST, v);
    }
    if let Some(v) = xff.and_then(|h| http::HeaderValue::from_str(h).ok()) {
        headers.insert("x-forwarded-for", v);
    }
    if let Some(authority) = request::authority(&uri, &headers) {
        let _ = request::strip_port(&authority, &cfg, Some(8080));
    }
    if let Some(pq) = uri.path_and_query() {
        check_normalize(pq.as_str(), cfg.normalize_path, cfg.merge_slashes);
    }
    let remote: SocketAddr = ([10, 0, 0, 1], 40000).into();
    let _ = request::forwarded_headers(&mut headers, &cfg, Some(remote), "http");
}

/// `normalize_path` as the HCM calls it (on a path starting with `/`), with its invariants.
fn check_normalize(path_and_query: &str, normalize: bool, merge_slashes: bool) {
    if !path_and_query.starts_with('/') {
        return;
    }
    let Some(out) = request::normalize_path(path_and_query, normalize, merge_slashes) else {
        assert!(
            normalize,
            "only dot-segment removal can fail: {path_and_query:?}"
        );
        return;
    };
    let query = path_and_query
        .find('?')
        .map_or("", |i| &path_and_query[i..]);
    assert!(out.starts_with('/'), "{path_and_query:?} -> {out:?}");
    assert!(out.ends_with(query), "{path_and_query:?} -> {out:?}");
    let path = &out[..out.len() - query.len()];
    if normalize {
        assert!(
            !path.split('/').any(|s| s == "." || s == ".."),
            "{path_and_query:?} -> {out:?}"
        );
    }
    if merge_slashes {
        assert!(!path.contains("//"), "{path_and_query:?} -> {out:?}");
    }
    let again = request::normalize_path(&out, normalize, merge_slashes);
    assert_eq!(
        again.as_deref(),
        Some(out.as_str()),
        "not idempotent: {path_and_query:?}"
    );
}

/// Access log formats, as xDS delivers them in `SubstitutionFormatString`: the first byte
/// chooses text (bit 0 clear) or JSON (set) and `omit_empty_values` (bit 1); the rest, as
/// UTF-8, is the format string or the JSON object of a `json_format`. A format that parses
/// is rendered for a full stream record and for an empty one. Checked: a text format without
/// `%` is its own literal; a JSON format renders one line of valid JSON.
pub fn access_log_format(data: &[u8]) {
    use crate::format::{Formatter, JsonFormat, ParseOptions};
    use crate::stream_info::{LogType, StreamInfo};
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let omit = flags & 2 != 0;
    let opts = ParseOptions {
        req_without_query: true,
        metadata: true,
        cel: true,
    };
    let empty = StreamInfo::new(LogType::NotSet, 0, "l".into());
    let full = full_record();
    let mut out = String::new();
    let mut scratch = String::new();
    if flags & 1 == 0 {
        let Ok(f) = Formatter::parse_with(text, opts) else {
            return;
        };
        if !text.contains('%') {
            assert_eq!(f.literal(), Some(text), "a format without operators");
        }
        for info in [&empty, &full] {
            out.clear();
            f.write(info, &mut out, if omit { "" } else { "-" });
        }
        return;
    }
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let s = envoy_types::pb::google::protobuf::Struct {
        fields: obj
            .into_iter()
            .map(|(k, v)| (k, to_proto_value(v)))
            .collect(),
    };
    let Ok(j) = JsonFormat::compile(&s, omit, opts) else {
        return;
    };
    for info in [&empty, &full] {
        out.clear();
        j.write(info, &mut out, &mut scratch);
        assert!(out.ends_with('\n'), "{out:?}");
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap_or_else(|e| panic!("invalid JSON line {out:?}: {e}"));
    }
}

fn to_proto_value(v: serde_json::Value) -> envoy_types::pb::google::protobuf::Value {
    use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(ListValue {
            values: a.into_iter().map(to_proto_value).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(Struct {
            fields: o.into_iter().map(|(k, v)| (k, to_proto_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// A finished HTTP stream with every field set, including values that need escaping.
fn full_record() -> crate::stream_info::StreamInfo {
    use crate::stream_info::{LogType, Protocol, ResponseFlag, StreamInfo};
    let mut i = StreamInfo::new(LogType::DownstreamEnd, 7, "l".into());
    i.downstream_local = Some(([127, 0, 0, 1], 15001).into());
    i.downstream_remote = Some(([10, 0, 0, 1], 5555).into());
    i.protocol = Some(Protocol::Http2);
    i.method = Some(http::Method::POST);
    i.path = Some("/a\"b?q=\u{1}".into());
    i.authority = Some("svc".into());
    i.scheme = Some("http");
    let mut h = http::HeaderMap::new();
    h.insert("x-request-id", http::HeaderValue::from_static("abc"));
    h.insert(
        "user-agent",
        http::HeaderValue::from_bytes(b"ua\xff\"").unwrap_or(http::HeaderValue::from_static("ua")),
    );
    i.request_headers = Some(h.clone());
    i.response_headers = Some(h.clone());
    i.response_trailers = Some(h);
    i.response_code = Some(503);
    i.response_code_details = Some("a b".into());
    i.response_flags
        .insert(ResponseFlag::UpstreamConnectionFailure);
    i.upstream_host = Some("[::1]:80".into());
    i.upstream_cluster = Some("c".into());
    i.grpc_status = Some(14);
    i.route_name = Some("r".into());
    i.trace_id = Some("t".into());
    i
}

/// The Bolt v1 codec (`protocol::xprotocol::bolt`) over a stream of bytes, as a connection
/// delivers them: the first byte picks a frame size limit and a read size, the rest is fed in
/// reads of that size. Checked: the framework codec and the typed decoder agree; decoded
/// frames are the input's bytes in order; whatever is left is shorter than a frame or an
/// error; an id rewrite, a heartbeat answer and an error response all decode again.
pub fn bolt_codec(data: &[u8]) {
    use crate::protocol::xprotocol::bolt::{Bolt, Command, decode_all};
    use crate::protocol::xprotocol::{ErrorKind, FrameKind, XProtocol};
    use bytes::BytesMut;
    let Some((&knobs, data)) = data.split_first() else {
        return;
    };
    let max = [64usize, 1024, 1 << 20][usize::from(knobs % 3)];
    let step = usize::from(knobs / 3).max(1);
    let bolt = Bolt::new(max);
    let (commands, whole_rest) = decode_all(data, max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut error = None;
    'feed: for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match bolt.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(frames.len(), commands.len());
    assert_eq!(
        error.is_some(),
        whole_rest.is_err(),
        "{error:?} {whole_rest:?}"
    );
    let mut at = 0;
    for (frame, command) in frames.iter_mut().zip(&commands) {
        assert_eq!(&frame.raw[..], command.as_bytes());
        assert_eq!(&data[at..at + frame.raw.len()], &frame.raw[..]);
        at += frame.raw.len();
        assert!(frame.raw.len() <= max);
        match frame.kind {
            FrameKind::Heartbeat => {
                let ack = bolt.heartbeat_response(frame);
                assert_eq!(ack.kind, FrameKind::HeartbeatResponse);
                assert_eq!(ack.request_id, frame.request_id);
            }
            FrameKind::Request | FrameKind::Oneway => {
                let e = bolt.error_response(frame, ErrorKind::UpstreamReset, "upstream reset");
                let again = Command::decode(&mut BytesMut::from(&e.raw[..]), max.max(64));
                assert!(matches!(again, Ok(Some(c)) if c.request_id() == command.request_id()));
            }
            _ => {}
        }
        frame.set_request_id(frame.request_id.wrapping_add(1) & 0xffff_ffff);
        let again = bolt.decode(&mut BytesMut::from(&frame.raw[..]));
        assert!(matches!(again, Ok(Some(f)) if f.request_id == frame.request_id));
    }
    if let Ok(rest) = whole_rest {
        assert_eq!(at + rest, data.len());
    }
}

/// Dubbo frames: `protocol::xprotocol::dubbo` decodes the input as a stream of frames (with
/// a small frame limit so the limit path is reached), checks that every frame it returns is
/// bytes of the input in order, that a split of the input decodes the same, and builds the
/// replies the proxy would (heartbeat, error response) for each request.
pub fn dubbo_frames(data: &[u8]) {
    use crate::protocol::xprotocol::dubbo::Dubbo;
    use crate::protocol::xprotocol::{ErrorKind, FrameKind, XProtocol};
    use bytes::BytesMut;
    let codec = Dubbo::new(4096);
    let decode = |chunks: &[&[u8]]| {
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut failed = false;
        'outer: for c in chunks {
            buf.extend_from_slice(c);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(_) => {
                        failed = true;
                        break 'outer;
                    }
                }
            }
        }
        (frames, failed)
    };
    let (whole, failed) = decode(&[data]);
    let mut at = 0;
    for f in &whole {
        assert_eq!(&data[at..at + f.len()], &f.raw[..]);
        at += f.len();
        if f.kind == FrameKind::Heartbeat {
            let _ = codec.heartbeat_response(f);
        }
        if f.kind.is_request() {
            let r = codec.error_response(f, ErrorKind::Timeout, "timeout");
            let mut b = r.raw.clone();
            assert!(matches!(codec.decode(&mut b), Ok(Some(_))));
        }
    }
    let mid = data.len() / 2;
    let (split, split_failed) = decode(&[&data[..mid], &data[mid..]]);
    assert_eq!(failed, split_failed);
    assert_eq!(split, whole);
}

/// An upstream's HTTP/1.1 response as `upstream::pool::http1` reads it with
/// `protocol::http1`: response heads (at most 100 fields; informational ones skipped, as the
/// pool skips a `100 Continue`), the final head's framing for a GET and for a HEAD, and the bytes after
/// it through a `BodyDecoder`, in three pieces and then at eof. Checked: a parse that needs
/// more bytes or fails takes none; a HEAD response has no body, nor has a 204 or a 304; a
/// chunked body is HTTP/1.1 without `content-length`; a content-length or close-delimited body
/// is exactly the bytes that follow the head, cut short only at eof; no body is longer than
/// the input; and the body decodes the same from the pieces as from the whole.
pub fn http1_response(data: &[u8]) {
    use crate::protocol::http1::{
        Framing, ParseError, content_length, parse_response_head, response_framing,
    };
    use http::{Method, Version};
    const MAX_HEADERS: usize = 100;
    let mut buf = bytes::BytesMut::from(data);
    let head = loop {
        let before = buf.len();
        match parse_response_head(&mut buf, MAX_HEADERS) {
            Ok(Some(head)) => {
                assert!(buf.len() < before, "a head of no bytes");
                assert!(head.headers.len() <= MAX_HEADERS);
                if !head.is_informational() {
                    break head;
                }
            }
            Ok(None) | Err(_) => {
                assert_eq!(buf.len(), before, "a failed parse took bytes");
                return;
            }
        }
    };
    assert_eq!(response_framing(&Method::HEAD, &head), Ok(Framing::Empty));
    let Ok(framing) = response_framing(&Method::GET, &head) else {
        return;
    };
    let status = head.status.as_u16();
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => {
            assert!(n > 0);
            assert_eq!(content_length(&head.headers), Ok(Some(n)));
        }
        Framing::Chunked => {
            assert_eq!(head.version, Version::HTTP_11);
            assert!(!head.headers.contains_key(http::header::CONTENT_LENGTH));
        }
        Framing::Close => assert_eq!(content_length(&head.headers), Ok(None)),
    }
    if status == 204 || status == 304 {
        assert_eq!(framing, Framing::Empty);
    }
    let rest = buf.to_vec();
    let whole = read_body_split(framing, &rest);
    let len = rest.len() as u64;
    match framing {
        Framing::Empty => assert_eq!(whole, Ok((Vec::new(), rest))),
        Framing::Length(n) if n <= len => {
            let n = n as usize;
            assert_eq!(whole, Ok((rest[..n].to_vec(), rest[n..].to_vec())));
        }
        Framing::Length(_) => assert_eq!(whole, Err(ParseError::Incomplete)),
        Framing::Close => assert_eq!(whole, Ok((rest, Vec::new()))),
        Framing::Chunked => {}
    }
}

/// A downstream client's HTTP/1.1 requests as the connection manager's HTTP/1 connection
/// (`proxy::hcm::h1`) reads them with `protocol::http1::server`: `parse_request_head` (at most
/// 100 fields and 60 KiB, Envoy's defaults) fed the input in four pieces as reads would bring
/// it, then the body after a head through a `BodyDecoder` in three pieces and at eof, then
/// the next pipelined request from what the body left, while the head lets the connection
/// carry another. Checked: a parse that needs more takes nothing and holds no more than the
/// limit, a parse never takes more than it was given (nor more than the limit for a head), the
/// pieces give what the whole gives, a head keeps the promises of its fields (bounded field
/// count, no close-delimited request body, chunked only in HTTP/1.1 without `content-length`,
/// a length that is the `content-length`, `100-continue` only in HTTP/1.1, CONNECT an upgrade),
/// and a body is as for `http1_response`.
pub fn http1_request(data: &[u8]) {
    use crate::protocol::http1::server::{RequestHead, parse_request_head};
    use crate::protocol::http1::{Framing, ParseError, content_length};
    use http::{Method, Version};
    const MAX_HEADERS: usize = 100;
    const LIMIT: usize = 60 * 1024;

    /// What a parse gave: the head's parts and the bytes it took, more needed, or an error.
    type Summary = Result<Option<(Method, http::Uri, Vec<(String, Vec<u8>)>, Framing, usize)>, ()>;
    let summary = |h: Option<&RequestHead>, taken: usize| {
        h.map(|h| {
            let fields = h
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect();
            (h.method.clone(), h.uri.clone(), fields, h.framing, taken)
        })
    };

    let mut input = data;
    for _ in 0..8 {
        // The head in four pieces.
        let quarter = input.len() / 4;
        let mut buf = bytes::BytesMut::new();
        let mut at = 0;
        let mut head = None;
        let mut taken = 0;
        let mut split: Summary = Ok(None);
        for end in [quarter, 2 * quarter, 3 * quarter, input.len()] {
            buf.extend_from_slice(&input[at..end]);
            at = end;
            let before = buf.len();
            match parse_request_head(&mut buf, MAX_HEADERS, LIMIT) {
                Ok(Some(h)) => {
                    taken = before - buf.len();
                    assert!(taken > 0 && taken <= LIMIT, "a head of {taken} bytes");
                    assert_eq!(&buf[..], &input[taken..at]);
                    split = Ok(summary(Some(&h), taken));
                    head = Some(h);
                    break;
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "a partial head took bytes");
                    assert!(before <= LIMIT, "{before} bytes and still partial");
                }
                Err(e) => {
                    // At most the head is gone, never a byte that was not given.
                    assert!(buf.len() <= before);
                    assert_eq!(&buf[..], &input[at - buf.len()..at]);
                    assert!(before - buf.len() <= LIMIT);
                    let _ = e.status();
                    split = Err(());
                    break;
                }
            }
        }
        // The whole input at once ends the same way (an error's kind may differ: a piece
        // over the limit is too large before a malformed byte past the limit is seen).
        let mut all = bytes::BytesMut::from(input);
        let whole: Summary = parse_request_head(&mut all, MAX_HEADERS, LIMIT)
            .map(|h| summary(h.as_ref(), input.len() - all.len()))
            .map_err(|_| ());
        assert_eq!(split, whole);
        let Some(head) = head else {
            return;
        };

        assert!(head.headers.len() <= MAX_HEADERS);
        match head.framing {
            Framing::Empty => {}
            Framing::Length(n) => {
                assert!(n > 0);
                assert_eq!(content_length(&head.headers), Ok(Some(n)));
            }
            Framing::Chunked => {
                assert_eq!(head.version, Version::HTTP_11);
                assert!(!head.headers.contains_key(http::header::CONTENT_LENGTH));
                assert!(head.headers.contains_key(http::header::TRANSFER_ENCODING));
            }
            Framing::Close => panic!("a request body delimited by close"),
        }
        assert!(!head.expect_continue || head.version == Version::HTTP_11);
        if head.method == Method::CONNECT {
            assert!(head.is_upgrade());
        }

        // The body, from the whole and from three pieces.
        let rest = input[taken..].to_vec();
        let body = read_body_split(head.framing, &rest);
        let len = rest.len() as u64;
        let left = match (head.framing, body) {
            (Framing::Empty, body) => {
                assert_eq!(body, Ok((Vec::new(), rest.clone())));
                rest.len()
            }
            (Framing::Length(n), body) if n <= len => {
                let n = n as usize;
                assert_eq!(body, Ok((rest[..n].to_vec(), rest[n..].to_vec())));
                rest.len() - n
            }
            (Framing::Length(_), body) => {
                assert_eq!(body, Err(ParseError::Incomplete));
                return;
            }
            (_, Ok((_, left))) => left.len(),
            (_, Err(_)) => return,
        };
        // The next pipelined request, while the connection may carry one.
        if !head.keep_alive || head.is_upgrade() {
            return;
        }
        input = &input[input.len() - left..];
    }
}

/// The body of `rest` read whole, checked against the same read in three pieces (the same
/// outcome; the bytes left are the end of `rest`).
fn read_body_split(
    framing: crate::protocol::http1::Framing,
    rest: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), crate::protocol::http1::ParseError> {
    let whole = read_body(framing, rest, &[]);
    let third = rest.len() / 3;
    let pieces = read_body(framing, rest, &[third, 2 * third]);
    if let Ok((body, left)) = &pieces {
        assert!(body.len() + left.len() <= rest.len());
        assert_eq!(&left[..], &rest[rest.len() - left.len()..]);
    }
    match (&whole, &pieces) {
        (Ok(w), Ok(p)) => assert_eq!(w, p),
        (w, p) => assert_eq!(w.is_ok(), p.is_ok(), "{w:?} {p:?}"),
    }
    whole
}

/// The body of `input` as a `BodyDecoder` for `framing` hands it out, given `input` cut at
/// `cuts` and then eof: the body and the bytes left after it.
fn read_body(
    framing: crate::protocol::http1::Framing,
    input: &[u8],
    cuts: &[usize],
) -> Result<(Vec<u8>, Vec<u8>), crate::protocol::http1::ParseError> {
    use crate::protocol::http1::{BodyDecoder, Decoded};
    let mut dec = BodyDecoder::new(framing, 100);
    let mut buf = bytes::BytesMut::new();
    let mut body = Vec::new();
    let mut at = 0;
    for (i, end) in cuts.iter().chain([&input.len()]).enumerate() {
        let end = (*end).clamp(at, input.len());
        buf.extend_from_slice(&input[at..end]);
        at = end;
        let eof = i == cuts.len();
        loop {
            let before = buf.len();
            let step = dec.decode(&mut buf, eof)?;
            assert!(buf.len() <= before, "a decoder step grew its buffer");
            match step {
                Decoded::Data(d) => {
                    assert!(!d.is_empty() && d.len() <= before - buf.len());
                    body.extend_from_slice(&d);
                    assert!(body.len() <= input.len());
                }
                Decoded::Trailers(_) | Decoded::End => {
                    assert!(dec.is_done());
                    buf.extend_from_slice(&input[at..]);
                    return Ok((body, buf.to_vec()));
                }
                Decoded::NeedMore => {
                    assert!(!eof, "a decoder wants more at eof");
                    break;
                }
            }
        }
    }
    unreachable!("a decoder at eof ends or fails")
}
