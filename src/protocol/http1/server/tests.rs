use super::super::tests::{arb_value, cuts, header_map, put_fields};
use super::super::{BodyDecoder, Decoded, parse_response_head};
use super::*;
use http::HeaderName;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// The limits the connection manager uses by default (Envoy's `max_request_headers_kb` 60 and
/// `max_headers_count` 100).
const LIMIT: usize = 60 * 1024;
const MAX_HEADERS: usize = 100;

fn parse_with(
    bytes: &[u8],
    max_headers: usize,
    limit: usize,
) -> Result<Option<RequestHead>, RequestError> {
    let mut buf = BytesMut::from(bytes);
    let got = parse_request_head(&mut buf, max_headers, limit);
    match &got {
        Ok(Some(_)) => assert!(buf.len() < bytes.len(), "a head of no bytes"),
        // More needed: nothing taken.
        Ok(None) => assert_eq!(&buf[..], bytes),
        // An error found once the head is split off (its target, framing fields) leaves the
        // bytes after the head; never any that were not given.
        Err(_) => assert_eq!(&buf[..], &bytes[bytes.len() - buf.len()..]),
    }
    got
}

fn parse(bytes: &[u8]) -> Result<Option<RequestHead>, RequestError> {
    parse_with(bytes, MAX_HEADERS, LIMIT)
}

fn head(bytes: &[u8]) -> RequestHead {
    parse(bytes)
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(bytes)))
        .unwrap_or_else(|| panic!("{:?}: incomplete", String::from_utf8_lossy(bytes)))
}

fn error(bytes: &[u8]) -> RequestError {
    match parse(bytes) {
        Err(e) => e,
        Ok(h) => panic!("{:?}: {h:?}", String::from_utf8_lossy(bytes)),
    }
}

/// The fields of a map in iteration order, as (name, value bytes).
fn in_order(m: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    m.iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect()
}

const DATE: HeaderValue = HeaderValue::from_static("Wed, 01 Jan 2025 00:00:00 GMT");

fn response(status: u16, headers: &HeaderMap, framing: ResponseFraming, close: bool) -> String {
    let mut dst = BytesMut::new();
    encode_response_head(
        false,
        StatusCode::from_u16(status).unwrap(),
        headers,
        framing,
        close,
        &DATE,
        &mut dst,
    );
    String::from_utf8(dst.to_vec()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// parse_request_head: the request line and fields

const GET: &[u8] = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\
    X-Multi: a\r\nx-multi: b\r\nUser-Agent: curl/8.0\r\n\r\n";

#[test]
fn simple_get() {
    let mut buf = BytesMut::from(GET);
    let base = buf.as_ptr() as usize;
    let h = parse_request_head(&mut buf, MAX_HEADERS, LIMIT)
        .unwrap()
        .unwrap();
    assert!(buf.is_empty());
    assert_eq!(h.method, Method::GET);
    assert_eq!(h.uri, "/index.html?q=1");
    assert_eq!(h.uri.path(), "/index.html");
    assert_eq!(h.uri.query(), Some("q=1"));
    assert_eq!(h.version, Version::HTTP_11);
    assert_eq!(h.framing, Framing::Empty);
    assert!(h.keep_alive);
    assert!(!h.expect_continue);
    assert!(!h.fragment);
    assert!(!h.is_upgrade());
    assert_eq!(h.headers.len(), 5);
    assert_eq!(
        in_order(&h.headers),
        [
            ("host".to_owned(), b"example.com".to_vec()),
            ("accept".to_owned(), b"*/*".to_vec()),
            ("x-multi".to_owned(), b"a".to_vec()),
            ("x-multi".to_owned(), b"b".to_vec()),
            ("user-agent".to_owned(), b"curl/8.0".to_vec()),
        ]
    );
    // The values are slices of the buffer the head was read from.
    for v in h.headers.values() {
        let p = v.as_bytes().as_ptr() as usize;
        assert!(p >= base && p < base + GET.len(), "{v:?} was copied");
    }
}

#[test]
fn every_prefix_of_a_head_is_partial_and_consumes_nothing() {
    for n in 0..GET.len() {
        let mut buf = BytesMut::from(&GET[..n]);
        assert!(
            parse_request_head(&mut buf, MAX_HEADERS, LIMIT)
                .unwrap()
                .is_none(),
            "prefix {n}"
        );
        assert_eq!(&buf[..], &GET[..n], "prefix {n} was consumed");
    }
    let mut buf = BytesMut::from(GET);
    assert!(
        parse_request_head(&mut buf, MAX_HEADERS, LIMIT)
            .unwrap()
            .is_some()
    );
    assert!(buf.is_empty());
}

#[test]
fn pipelined_bytes_stay_in_the_buffer() {
    let mut wire = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\n".to_vec();
    let head_len = wire.len();
    wire.extend_from_slice(b"helloGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\n");
    let mut buf = BytesMut::from(&wire[..]);
    let first = parse_request_head(&mut buf, MAX_HEADERS, LIMIT)
        .unwrap()
        .unwrap();
    assert_eq!(first.method, Method::POST);
    assert_eq!(first.framing, Framing::Length(5));
    assert_eq!(&buf[..], &wire[head_len..]);
    // The body is the decoder's, then the next head is there.
    let mut dec = BodyDecoder::new(first.framing, MAX_HEADERS);
    assert_eq!(
        dec.decode(&mut buf, false),
        Ok(Decoded::Data(bytes::Bytes::from_static(b"hello")))
    );
    assert!(dec.is_done());
    let second = parse_request_head(&mut buf, MAX_HEADERS, LIMIT)
        .unwrap()
        .unwrap();
    assert_eq!(second.uri, "/b");
    assert_eq!(second.headers["host"], "x");
    assert_eq!(&buf[..], b"GET /c HTTP/1.1\r\n");
    // The third head is partial.
    assert!(
        parse_request_head(&mut buf, MAX_HEADERS, LIMIT)
            .unwrap()
            .is_none()
    );
    assert_eq!(&buf[..], b"GET /c HTTP/1.1\r\n");
}

#[test]
fn bare_lf_and_leading_empty_lines() {
    let h = head(b"GET / HTTP/1.1\nHost: a\n\n");
    assert_eq!(h.headers["host"], "a");
    // Empty lines before a request line are skipped (RFC 9112 §2.2).
    let h = head(b"\r\n\r\nGET /x HTTP/1.1\r\n\r\n");
    assert_eq!(h.uri, "/x");
}

#[test]
fn methods_as_sent() {
    for m in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "PURGE", "MKCOL",
    ] {
        let h = head(format!("{m} /r HTTP/1.1\r\n\r\n").as_bytes());
        assert_eq!(h.method.as_str(), m);
    }
}

#[test]
fn request_target_forms() {
    // Absolute form.
    let h = head(b"GET http://example.com:8080/p/q?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(h.uri.scheme_str(), Some("http"));
    assert_eq!(h.uri.authority().unwrap(), "example.com:8080");
    assert_eq!(h.uri.path(), "/p/q");
    assert_eq!(h.uri.query(), Some("x=1"));
    assert!(!h.is_upgrade());
    // Authority form, for CONNECT.
    let h = head(b"CONNECT host.example:443 HTTP/1.1\r\nHost: host.example:443\r\n\r\n");
    assert_eq!(h.method, Method::CONNECT);
    assert_eq!(h.uri.authority().unwrap(), "host.example:443");
    assert_eq!(h.uri.host(), Some("host.example"));
    assert_eq!(h.uri.port_u16(), Some(443));
    assert_eq!(h.uri.scheme_str(), None);
    assert_eq!(h.framing, Framing::Empty);
    // Asterisk form.
    let h = head(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.method, Method::OPTIONS);
    assert_eq!(h.uri, "*");
    assert_eq!(h.uri.path(), "*");
    assert!(!h.fragment);
}

#[test]
fn fragment_is_noted_and_dropped() {
    let h = head(b"GET /a#b HTTP/1.1\r\n\r\n");
    assert!(h.fragment);
    assert_eq!(h.uri.path(), "/a");
    assert_eq!(h.uri.query(), None);
    let h = head(b"GET /a?q=1#frag HTTP/1.1\r\n\r\n");
    assert!(h.fragment);
    assert_eq!(h.uri.path(), "/a");
    assert_eq!(h.uri.query(), Some("q=1"));
    let h = head(b"GET /a?q=%23 HTTP/1.1\r\n\r\n");
    assert!(!h.fragment);
}

#[test]
fn keep_alive_rules() {
    let cases: &[(&[u8], bool)] = &[
        (b"GET / HTTP/1.1\r\n\r\n", true),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nconnection: CLOSE\r\n\r\n", false),
        (
            b"GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
        ),
        (b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", true),
        (b"GET / HTTP/1.1\r\nX-Connection: close\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        (
            b"GET / HTTP/1.0\r\nConnection: foo ,  keep-alive \r\n\r\n",
            true,
        ),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            false,
        ),
        (b"GET / HTTP/1.0\r\nConnection: keep-alived\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nKeep-Alive: timeout=5\r\n\r\n", false),
    ];
    for (bytes, keep) in cases {
        assert_eq!(
            head(bytes).keep_alive,
            *keep,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert_eq!(head(b"GET / HTTP/1.0\r\n\r\n").version, Version::HTTP_10);
}

#[test]
fn expect_continue() {
    let cases: &[(&[u8], bool)] = &[
        (b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", true),
        (b"PUT / HTTP/1.1\r\nexpect: 100-Continue\r\n\r\n", true),
        (b"PUT / HTTP/1.1\r\nEXPECT: 100-CONTINUE\r\n\r\n", true),
        // Only in HTTP/1.1 (RFC 9110 §10.1.1).
        (b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", false),
        (b"PUT / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", false),
        (b"PUT / HTTP/1.1\r\nExpect: 100-continued\r\n\r\n", false),
        (b"PUT / HTTP/1.1\r\nX-Expect: 100-continue\r\n\r\n", false),
        (b"PUT / HTTP/1.1\r\n\r\n", false),
    ];
    for (bytes, expect) in cases {
        assert_eq!(
            head(bytes).expect_continue,
            *expect,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn header_values_are_byte_exact_and_in_order() {
    let raw = b"GET / HTTP/1.1\r\n\
        Cookie: a=1\r\n\
        X-Mixed:  MiXeD  case\tand tab  \r\n\
        cookie: b=2\r\n\
        X-Latin: caf\xe9\r\n\
        X-Empty:\r\n\
        COOKIE: c=3\r\n\
        \r\n";
    let h = head(raw);
    let cookies: Vec<&[u8]> = h
        .headers
        .get_all("cookie")
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    assert_eq!(cookies, [&b"a=1"[..], &b"b=2"[..], &b"c=3"[..]]);
    assert_eq!(h.headers["x-mixed"].as_bytes(), b"MiXeD  case\tand tab");
    assert_eq!(h.headers["x-latin"].as_bytes(), b"caf\xe9");
    assert_eq!(h.headers["x-empty"].as_bytes(), b"");
    let names: Vec<&str> = h.headers.keys().map(HeaderName::as_str).collect();
    assert_eq!(names, ["cookie", "x-mixed", "x-latin", "x-empty"]);
    assert_eq!(h.headers.len(), 6);
}

// ---------------------------------------------------------------------------------------------
// parse_request_head: framing

#[test]
fn content_length_framing() {
    let cases: &[(&[u8], Framing)] = &[
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            Framing::Length(5),
        ),
        (
            b"POST / HTTP/1.1\r\ncontent-length:  12 \r\n\r\n",
            Framing::Length(12),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            Framing::Empty,
        ),
        (b"POST / HTTP/1.1\r\n\r\n", Framing::Empty),
        (b"GET / HTTP/1.1\r\n\r\n", Framing::Empty),
        // Repeated, or a list, all equal.
        (
            b"POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n",
            Framing::Length(7),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 7, 7\r\n\r\n",
            Framing::Length(7),
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 9999999999999999999\r\n\r\n",
            Framing::Length(9_999_999_999_999_999_999),
        ),
        // HTTP/1.0 may have a content-length body.
        (
            b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
            Framing::Length(3),
        ),
    ];
    for (bytes, framing) in cases {
        assert_eq!(
            head(bytes).framing,
            *framing,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn bad_content_lengths() {
    for bad in [
        &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1a\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5,\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ] {
        let e = error(bad);
        assert_eq!(
            e,
            RequestError::ContentLength,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}

#[test]
fn chunked_framing() {
    for te in [
        "chunked",
        "Chunked",
        "CHUNKED",
        " chunked ",
        "chunked,",
        ", chunked",
    ] {
        let h = head(format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n").as_bytes());
        assert_eq!(h.framing, Framing::Chunked, "{te:?}");
    }
}

#[test]
fn unsupported_transfer_codings() {
    for bad in [
        &b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunkedx\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n",
    ] {
        let e = error(bad);
        assert_eq!(
            e,
            RequestError::TransferEncoding,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(e.status(), StatusCode::NOT_IMPLEMENTED);
    }
}

#[test]
fn smuggling_shapes_are_framing_errors() {
    for bad in [
        &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\n",
        // transfer-encoding is HTTP/1.1's (RFC 9112 §6.1).
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n",
    ] {
        let e = error(bad);
        assert_eq!(
            e,
            RequestError::Framing,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}

#[test]
fn chunked_request_body_decodes() {
    let mut buf = BytesMut::from(
        &b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nnext"[..],
    );
    let h = parse_request_head(&mut buf, MAX_HEADERS, LIMIT)
        .unwrap()
        .unwrap();
    assert_eq!(h.framing, Framing::Chunked);
    let mut dec = BodyDecoder::new(h.framing, MAX_HEADERS);
    let mut body = Vec::new();
    loop {
        match dec.decode(&mut buf, false).unwrap() {
            Decoded::Data(d) => body.extend_from_slice(&d),
            Decoded::End => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(body, b"hello");
    assert_eq!(&buf[..], b"next");
}

// ---------------------------------------------------------------------------------------------
// parse_request_head: malformed heads and limits

#[test]
fn malformed_heads() {
    for bad in [
        &b"garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /a\r\n\r\n",
        b"GET  /a HTTP/1.1\r\n\r\n",
        b"GET /a  HTTP/1.1\r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
        b" GET /a HTTP/1.1\r\n\r\n",
        b"GET /a HTTP/2.0\r\n\r\n",
        b"GET /a HTTP/1.2\r\n\r\n",
        b"GET /a http/1.1\r\n\r\n",
        b"GET /a HTTP/1.1 \r\n\r\n",
        b"G(T /a HTTP/1.1\r\n\r\n",
        b"GET /caf\xff HTTP/1.1\r\n\r\n",
        b"GET http://[::1/ HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"GET /a HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost\t: a\r\n\r\n",
        b"GET /a HTTP/1.1\r\nbad name: x\r\n\r\n",
        b"GET /a HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET /a HTTP/1.1\r\nx: nul\0byte\r\n\r\n",
        b"GET /a HTTP/1.1\r\nx: del\x7fbyte\r\n\r\n",
        b"GET /a HTTP/1.1\r\nx: bare\rcr\r\n\r\n",
        b"GET /a HTTP/1.1\r\n folded: x\r\n\r\n",
        b"GET /a HTTP/1.1\r\nx: a\r\n folded\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        match parse(bad) {
            Err(e @ RequestError::Malformed(_)) => {
                assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bad)),
        }
    }
}

fn request_with_fields(n: usize) -> Vec<u8> {
    let mut v = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..n {
        v.extend_from_slice(format!("x-h{i}: {i}\r\n").as_bytes());
    }
    v.extend_from_slice(b"\r\n");
    v
}

#[test]
fn too_many_headers() {
    let three = request_with_fields(3);
    assert_eq!(
        parse_with(&three, 3, LIMIT).unwrap().unwrap().headers.len(),
        3
    );
    let e = parse_with(&three, 2, LIMIT).unwrap_err();
    assert_eq!(e, RequestError::TooManyHeaders(2));
    assert_eq!(e.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Known before the head is complete.
    assert_eq!(
        parse_with(&three[..three.len() - 2], 2, LIMIT).unwrap_err(),
        RequestError::TooManyHeaders(2)
    );
    // A limit of 0 means 1.
    assert!(
        parse_with(&request_with_fields(1), 0, LIMIT)
            .unwrap()
            .is_some()
    );
    assert_eq!(
        parse_with(&request_with_fields(2), 0, LIMIT).unwrap_err(),
        RequestError::TooManyHeaders(1)
    );
    // The default limit, and past the stack arrays.
    assert_eq!(
        parse(&request_with_fields(100))
            .unwrap()
            .unwrap()
            .headers
            .len(),
        100
    );
    assert_eq!(
        parse(&request_with_fields(101)).unwrap_err(),
        RequestError::TooManyHeaders(100)
    );
    let n = 300;
    assert_eq!(
        parse_with(&request_with_fields(n), n, LIMIT)
            .unwrap()
            .unwrap()
            .headers
            .len(),
        n
    );
    // A huge limit costs no allocation of its size.
    for max in [usize::MAX, u32::MAX as usize] {
        assert_eq!(
            parse_with(&request_with_fields(n), max, LIMIT)
                .unwrap()
                .unwrap()
                .headers
                .len(),
            n
        );
        assert!(parse_with(&GET[..20], max, LIMIT).unwrap().is_none());
    }
}

/// A request head of `len` bytes: a request line, one `x-pad` field to fill, the empty line.
fn head_of_len(len: usize) -> Vec<u8> {
    let start = b"GET / HTTP/1.1\r\nx-pad: ";
    let end = b"\r\n\r\n";
    let mut v = start.to_vec();
    v.resize(len - end.len(), b'a');
    v.extend_from_slice(end);
    assert_eq!(v.len(), len);
    v
}

#[test]
fn head_size_limit() {
    for limit in [100, 1024, LIMIT, 96 * 1024] {
        // A complete head of exactly the limit is fine, one byte more is not.
        let h = head_of_len(limit);
        assert!(
            parse_with(&h, MAX_HEADERS, limit).unwrap().is_some(),
            "{limit}"
        );
        let h = head_of_len(limit + 1);
        let e = parse_with(&h, MAX_HEADERS, limit).unwrap_err();
        assert_eq!(e, RequestError::HeadTooLarge, "{limit}");
        assert_eq!(e.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        // An unfinished head waits up to the limit, and fails past it.
        let h = head_of_len(limit + 100);
        assert!(
            parse_with(&h[..limit], MAX_HEADERS, limit)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            parse_with(&h[..limit + 1], MAX_HEADERS, limit).unwrap_err(),
            RequestError::HeadTooLarge
        );
        // A small head followed by more than the limit of body bytes is fine.
        let mut wire = head_of_len(limit / 2);
        wire.extend(std::iter::repeat_n(b'b', limit * 2));
        let mut buf = BytesMut::from(&wire[..]);
        assert!(
            parse_request_head(&mut buf, MAX_HEADERS, limit)
                .unwrap()
                .is_some()
        );
        assert_eq!(buf.len(), limit * 2);
        // Endless empty lines before a request line are not a way around the limit.
        let blank = b"\r\n".repeat(limit / 2 + 1);
        assert_eq!(
            parse_with(&blank, MAX_HEADERS, limit).unwrap_err(),
            RequestError::HeadTooLarge
        );
    }
}

/// Heads packed with the shortest fields (`a:` and a line feed) past a small limit are too
/// large, whatever `max_headers`; within the limit they are fine up to `max_headers`.
#[test]
fn shortest_fields_against_the_limit() {
    let line = b"GET / HTTP/1.1\n";
    let limit = 300;
    let n = (limit - line.len() - 1) / 3;
    let packed = |n: usize| {
        let mut v = line.to_vec();
        for _ in 0..n {
            v.extend_from_slice(b"a:\n");
        }
        v.push(b'\n');
        v
    };
    let h = packed(n);
    assert!(h.len() <= limit);
    for max in [n, n + 1, usize::MAX] {
        assert_eq!(
            parse_with(&h, max, limit).unwrap().unwrap().headers.len(),
            n
        );
    }
    assert_eq!(
        parse_with(&h, n - 1, limit).unwrap_err(),
        RequestError::TooManyHeaders(n - 1)
    );
    for cut in 0..h.len() {
        assert!(
            parse_with(&h[..cut], usize::MAX, limit).unwrap().is_none(),
            "{cut}"
        );
    }
    for extra in [1, 2, 100] {
        for max in [n + extra, usize::MAX] {
            assert_eq!(
                parse_with(&packed(n + extra), max, limit).unwrap_err(),
                RequestError::HeadTooLarge,
                "{extra} {max}"
            );
        }
    }
}

#[test]
fn error_statuses() {
    let cases = [
        (RequestError::HeadTooLarge, 431),
        (RequestError::TooManyHeaders(7), 431),
        (RequestError::Malformed("x"), 400),
        (RequestError::ContentLength, 400),
        (RequestError::Framing, 400),
        (RequestError::TransferEncoding, 501),
    ];
    for (e, status) in cases {
        assert_eq!(e.status().as_u16(), status, "{e:?}");
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        RequestError::TooManyHeaders(7).to_string(),
        "more than 7 request headers"
    );
    // What the shared parts of the codec report, as request errors.
    assert_eq!(
        RequestError::from(ParseError::HeadTooLarge),
        RequestError::HeadTooLarge
    );
    assert_eq!(
        RequestError::from(ParseError::TooManyHeaders(3)),
        RequestError::TooManyHeaders(3)
    );
    assert_eq!(
        RequestError::from(ParseError::ContentLength),
        RequestError::ContentLength
    );
    assert_eq!(
        RequestError::from(ParseError::TransferEncoding),
        RequestError::TransferEncoding
    );
    assert_eq!(
        RequestError::from(ParseError::Malformed("header name")),
        RequestError::Malformed("header name")
    );
    assert!(matches!(
        RequestError::from(ParseError::Chunk("x")),
        RequestError::Malformed(_)
    ));
    assert!(matches!(
        RequestError::from(ParseError::Incomplete),
        RequestError::Malformed(_)
    ));
}

// ---------------------------------------------------------------------------------------------
// RequestHead::is_upgrade

#[test]
fn upgrade_detection() {
    let cases: &[(&[u8], bool)] = &[
        (
            b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            true,
        ),
        (
            b"GET /chat HTTP/1.1\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n\r\n",
            true,
        ),
        (
            b"GET /chat HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            true,
        ),
        (
            b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
            true,
        ),
        (
            b"CONNECT a.example:443 HTTP/1.1\r\nConnection: close\r\n\r\n",
            true,
        ),
        // An upgrade header alone is no upgrade, nor a connection token alone.
        (b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", false),
        (
            b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n",
            false,
        ),
        (
            b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgraded\r\n\r\n",
            false,
        ),
        (b"GET /chat HTTP/1.1\r\nConnection: upgrade\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\n\r\n", false),
    ];
    for (bytes, upgrade) in cases {
        assert_eq!(
            head(bytes).is_upgrade(),
            *upgrade,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// encode_response_head

#[test]
fn status_line_is_http11_by_default_with_canonical_reason() {
    let none = HeaderMap::new();
    for (status, line) in [
        (200, "HTTP/1.1 200 OK\r\n"),
        (101, "HTTP/1.1 101 Switching Protocols\r\n"),
        (404, "HTTP/1.1 404 Not Found\r\n"),
        (431, "HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        (503, "HTTP/1.1 503 Service Unavailable\r\n"),
        (599, "HTTP/1.1 599 Unknown\r\n"),
        (299, "HTTP/1.1 299 Unknown\r\n"),
        (999, "HTTP/1.1 999 Unknown\r\n"),
    ] {
        let r = response(status, &none, ResponseFraming::NoBody, false);
        assert_eq!(
            r,
            format!("{line}date: Wed, 01 Jan 2025 00:00:00 GMT\r\n\r\n"),
            "{status}"
        );
    }
}

/// An HTTP/1.0 request is answered in kind, with the same fields.
#[test]
fn status_line_for_http10() {
    let h = header_map(&[("server", b"tern")]);
    for (status, reason) in [(200, "OK"), (404, "Not Found"), (599, "Unknown")] {
        for framing in [
            ResponseFraming::NoBody,
            ResponseFraming::Length(3),
            ResponseFraming::Close,
        ] {
            for close in [false, true] {
                let mut dst = BytesMut::new();
                encode_response_head(
                    true,
                    StatusCode::from_u16(status).unwrap(),
                    &h,
                    framing,
                    close,
                    &DATE,
                    &mut dst,
                );
                let http11 = response(status, &h, framing, close);
                assert_eq!(
                    String::from_utf8(dst.to_vec()).unwrap(),
                    http11.replacen(
                        &format!("HTTP/1.1 {status} {reason}"),
                        &format!("HTTP/1.0 {status} {reason}"),
                        1
                    )
                );
                assert!(http11.starts_with(&format!("HTTP/1.1 {status} {reason}\r\n")));
            }
        }
    }
}

#[test]
fn date_is_added_only_when_absent() {
    let h = header_map(&[
        ("server", b"tern"),
        ("Date", b"Tue, 31 Dec 2024 23:59:59 GMT"),
    ]);
    assert_eq!(
        response(200, &h, ResponseFraming::NoBody, false),
        "HTTP/1.1 200 OK\r\nserver: tern\r\ndate: Tue, 31 Dec 2024 23:59:59 GMT\r\n\r\n"
    );
    let h = header_map(&[("server", b"tern")]);
    assert_eq!(
        response(200, &h, ResponseFraming::NoBody, false),
        "HTTP/1.1 200 OK\r\nserver: tern\r\ndate: Wed, 01 Jan 2025 00:00:00 GMT\r\n\r\n"
    );
}

#[test]
fn content_length_is_added_only_when_absent() {
    let h = header_map(&[("server", b"tern")]);
    for n in [0u64, 1, 10, 1234567, u64::MAX] {
        assert_eq!(
            response(200, &h, ResponseFraming::Length(n), false),
            format!(
                "HTTP/1.1 200 OK\r\nserver: tern\r\ncontent-length: {n}\r\n\
                 date: Wed, 01 Jan 2025 00:00:00 GMT\r\n\r\n"
            )
        );
    }
    // Present: kept as it is, not written twice.
    let h = header_map(&[("content-length", b"5"), ("server", b"tern")]);
    let r = response(200, &h, ResponseFraming::Length(5), false);
    assert_eq!(
        r,
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nserver: tern\r\n\
         date: Wed, 01 Jan 2025 00:00:00 GMT\r\n\r\n"
    );
    // transfer-encoding from the headers never goes out: the framing decides.
    let h = header_map(&[("transfer-encoding", b"chunked"), ("server", b"tern")]);
    assert_eq!(
        response(200, &h, ResponseFraming::Length(3), false),
        "HTTP/1.1 200 OK\r\nserver: tern\r\ncontent-length: 3\r\n\
         date: Wed, 01 Jan 2025 00:00:00 GMT\r\n\r\n"
    );
}

#[test]
fn chunked_drops_content_length_and_transfer_encoding() {
    let h = header_map(&[
        ("server", b"tern"),
        ("content-length", b"10"),
        ("transfer-encoding", b"gzip"),
        ("transfer-encoding", b"chunked"),
        ("x-after", b"1"),
    ]);
    let r = response(200, &h, ResponseFraming::Chunked, false);
    assert_eq!(
        r,
        "HTTP/1.1 200 OK\r\nserver: tern\r\nx-after: 1\r\ntransfer-encoding: chunked\r\n\
         date: Wed, 01 Jan 2025 00:00:00 GMT\r\n\r\n"
    );
    assert_eq!(r.matches("transfer-encoding").count(), 1);
    assert!(!r.contains("content-length"));
}

/// A 1xx or 204 has no content-length (RFC 9110 §8.6): one in the headers is dropped, as
/// Envoy does; a 304 keeps it (it tells the length of the selected representation).
#[test]
fn no_content_length_on_informational_or_204() {
    let h = header_map(&[("content-length", b"7"), ("x-a", b"1")]);
    let date = "date: Wed, 01 Jan 2025 00:00:00 GMT\r\n";
    for (status, line) in [
        (100, "HTTP/1.1 100 Continue"),
        (101, "HTTP/1.1 101 Switching Protocols"),
        (103, "HTTP/1.1 103 Early Hints"),
        (204, "HTTP/1.1 204 No Content"),
    ] {
        assert_eq!(
            response(status, &h, ResponseFraming::NoBody, false),
            format!("{line}\r\nx-a: 1\r\n{date}\r\n"),
            "{status}"
        );
    }
    for status in [200, 205, 304] {
        let r = response(status, &h, ResponseFraming::NoBody, false);
        assert!(r.contains("\r\ncontent-length: 7\r\n"), "{r}");
    }
}

#[test]
fn connection_close() {
    let none = HeaderMap::new();
    let date = "date: Wed, 01 Jan 2025 00:00:00 GMT\r\n";
    assert_eq!(
        response(200, &none, ResponseFraming::Length(2), true),
        format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{date}connection: close\r\n\r\n")
    );
    assert_eq!(
        response(200, &none, ResponseFraming::Length(2), false),
        format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{date}\r\n")
    );
    // Already said: not twice, in any case or list.
    for present in [&b"close"[..], b"Close", b"keep-alive, CLOSE"] {
        let h = header_map(&[("connection", present)]);
        let r = response(200, &h, ResponseFraming::Close, true);
        assert_eq!(r.matches("onnection").count(), 1, "{r}");
        assert_eq!(r.to_ascii_lowercase().matches("close").count(), 1, "{r}");
    }
    // Another connection token is no close.
    let h = header_map(&[("connection", b"keep-alive")]);
    assert_eq!(
        response(200, &h, ResponseFraming::Close, true),
        format!("HTTP/1.1 200 OK\r\nconnection: keep-alive\r\n{date}connection: close\r\n\r\n")
    );
    // Close framing writes no framing field.
    assert_eq!(
        response(200, &none, ResponseFraming::Close, true),
        format!("HTTP/1.1 200 OK\r\n{date}connection: close\r\n\r\n")
    );
}

#[test]
fn no_body_writes_fields_as_they_are() {
    let h = header_map(&[
        ("content-length", b"42"),
        ("x-a", b"1"),
        ("x-a", b"2"),
        ("x-bin", b"caf\xe9 \tx"),
    ]);
    let mut dst = BytesMut::new();
    encode_response_head(
        false,
        StatusCode::NOT_MODIFIED,
        &h,
        ResponseFraming::NoBody,
        false,
        &DATE,
        &mut dst,
    );
    assert_eq!(
        &dst[..],
        &b"HTTP/1.1 304 Not Modified\r\ncontent-length: 42\r\nx-a: 1\r\nx-a: 2\r\n\
           x-bin: caf\xe9 \tx\r\ndate: Wed, 01 Jan 2025 00:00:00 GMT\r\n\r\n"[..]
    );
    // A 101 with its upgrade fields.
    let h = header_map(&[("upgrade", b"websocket"), ("connection", b"Upgrade")]);
    assert_eq!(
        response(101, &h, ResponseFraming::NoBody, false),
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         date: Wed, 01 Jan 2025 00:00:00 GMT\r\n\r\n"
    );
    // Appends to what is already in the buffer.
    let mut dst = BytesMut::from(&b"prev"[..]);
    encode_response_head(
        false,
        StatusCode::NO_CONTENT,
        &HeaderMap::new(),
        ResponseFraming::NoBody,
        false,
        &DATE,
        &mut dst,
    );
    assert!(dst.starts_with(b"prevHTTP/1.1 204 No Content\r\n"));
}

#[test]
fn continue_parses_as_an_interim_response() {
    let mut buf = BytesMut::from(CONTINUE);
    let h = parse_response_head(&mut buf, MAX_HEADERS).unwrap().unwrap();
    assert_eq!(h.status, StatusCode::CONTINUE);
    assert!(h.headers.is_empty());
    assert!(buf.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Header names in any case, none of them a framing field (those have their own tests).
fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}",
        1 => Just("Cookie".to_owned()),
        1 => Just("cookie".to_owned()),
        1 => Just("Host".to_owned()),
    ]
    .prop_filter("not a framing field", |n| {
        !n.eq_ignore_ascii_case("content-length")
            && !n.eq_ignore_ascii_case("transfer-encoding")
            && !n.eq_ignore_ascii_case("expect")
            && !n.eq_ignore_ascii_case("connection")
            && !n.eq_ignore_ascii_case("upgrade")
    })
}

fn arb_method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH",
        ])
        .prop_map(str::to_owned),
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}",
    ]
}

/// An origin-form target: a path and maybe a query, of characters the `http` crate keeps.
fn arb_path() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec("[a-zA-Z0-9._~!$&'()*+,;=:@%-]{0,8}", 0..5),
        proptest::option::of("[a-zA-Z0-9._~!$&'()*+,;=:@%/?-]{0,12}"),
    )
        .prop_map(|(segments, query)| {
            let mut p = format!("/{}", segments.join("/"));
            if let Some(q) = query {
                p.push('?');
                p.push_str(&q);
            }
            p
        })
}

/// What a `connection` field (if any) says, and whether it keeps the connection open for
/// HTTP/1.0 and for HTTP/1.1.
fn arb_connection() -> impl Strategy<Value = Option<(&'static str, bool, bool)>> {
    proptest::option::of(prop::sample::select(vec![
        ("close", false, false),
        ("Close", false, false),
        ("keep-alive", true, true),
        ("Keep-Alive", true, true),
        ("keep-alive, close", false, false),
        ("upgrade", false, true),
        ("foo,  keep-alive", true, true),
        ("closed", false, true),
    ]))
}

/// Feed `wire` to `parse_request_head` cut at `cuts`: `Ok(None)` (taking nothing) until the
/// head is in; the head, the bytes it took, and where in `wire` the feeding stopped.
fn feed(
    wire: &[u8],
    cuts: &[usize],
    max_headers: usize,
) -> Result<Option<(RequestHead, usize, usize)>, RequestError> {
    let mut buf = BytesMut::new();
    let mut at = 0;
    for end in cuts.iter().copied().chain([wire.len()]) {
        let end = end.clamp(at, wire.len());
        buf.extend_from_slice(&wire[at..end]);
        at = end;
        let before = buf.len();
        match parse_request_head(&mut buf, max_headers, LIMIT)? {
            Some(h) => return Ok(Some((h, before - buf.len(), at))),
            None => assert_eq!(buf.len(), before, "a partial head took bytes"),
        }
    }
    Ok(None)
}

/// Pieces of request heads, good and bad, for arbitrary heads more often than arbitrary bytes
/// give them.
const SYNTAX: &[&str] = &[
    "GET / HTTP/1.1\r\n",
    "POST /a#b HTTP/1.0\r\n",
    "CONNECT a:443 HTTP/1.1\r\n",
    "OPTIONS * HTTP/1.1\r\n",
    "Content-Length: 5\r\n",
    "Content-Length: 6\r\n",
    "content-length: x\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: gzip, chunked\r\n",
    "Expect: 100-continue\r\n",
    "Connection: close\r\n",
    "Connection: keep-alive, Upgrade\r\n",
    "Upgrade: websocket\r\n",
    "x: y\r\n",
    "\r\n",
    "\r\n",
    "\n",
    ":",
    " ",
    "a",
    "\0",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A request head written out parses back, fed whole, in any pieces or byte by byte:
    /// same method, target, version and fields (names lower-cased, values byte for byte, in
    /// order), the keep-alive the `connection` field says, and the bytes after it stay.
    #[test]
    fn request_head_round_trip(
        method in arb_method(),
        path in arb_path(),
        http11 in any::<bool>(),
        fields in proptest::collection::vec((arb_name(), arb_value()), 0..12),
        connection in arb_connection(),
        length in proptest::option::of(0u64..100_000),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut wire = format!("{method} {path} HTTP/1.{}\r\n", u8::from(http11)).into_bytes();
        let mut all = fields.clone();
        if let Some((c, _, _)) = connection {
            all.insert(all.len() / 2, ("Connection".to_owned(), c.as_bytes().to_vec()));
        }
        if let Some(n) = length {
            all.push(("Content-Length".to_owned(), n.to_string().into_bytes()));
        }
        let expected = put_fields(&mut wire, &all);
        let head_len = wire.len();
        wire.extend_from_slice(&tail);

        let max_headers = all.len();
        let check = |got: Option<(RequestHead, usize, usize)>| -> Result<RequestHead, TestCaseError> {
            let (h, taken, at) = got.expect("complete");
            prop_assert_eq!(taken, head_len);
            prop_assert!(at >= head_len);
            Ok(h)
        };
        let whole = check(feed(&wire, &[], max_headers).unwrap())?;
        prop_assert_eq!(whole.method.as_str(), method.as_str());
        prop_assert_eq!(whole.uri.to_string(), path.clone());
        prop_assert_eq!(whole.version, if http11 { Version::HTTP_11 } else { Version::HTTP_10 });
        prop_assert_eq!(&whole.headers, &expected);
        prop_assert_eq!(in_order(&whole.headers), in_order(&expected));
        let keep = match connection {
            Some((_, keep10, keep11)) => if http11 { keep11 } else { keep10 },
            None => http11,
        };
        prop_assert_eq!(whole.keep_alive, keep);
        prop_assert_eq!(
            whole.framing,
            match length { None | Some(0) => Framing::Empty, Some(n) => Framing::Length(n) }
        );
        prop_assert!(!whole.expect_continue);
        prop_assert!(!whole.fragment);
        prop_assert_eq!(whole.is_upgrade(), method == "CONNECT");

        let same = |h: &RequestHead| {
            h.method == whole.method
                && h.uri == whole.uri
                && h.version == whole.version
                && in_order(&h.headers) == in_order(&whole.headers)
                && h.framing == whole.framing
                && h.keep_alive == whole.keep_alive
        };
        let cut = cuts(&picks, wire.len());
        let pieces = check(feed(&wire, &cut, max_headers).unwrap())?;
        prop_assert!(same(&pieces));
        let bytewise: Vec<usize> = (0..wire.len()).collect();
        let (h, taken, at) = feed(&wire, &bytewise, max_headers).unwrap().unwrap();
        prop_assert!(same(&h));
        prop_assert_eq!(taken, head_len);
        // Byte by byte, the head is complete at its last byte.
        prop_assert_eq!(at, head_len);
        // One field fewer allowed is too many.
        if max_headers > 1 {
            prop_assert_eq!(
                parse_with(&wire, max_headers - 1, LIMIT).unwrap_err(),
                RequestError::TooManyHeaders(max_headers - 1)
            );
        }
    }

    /// Arbitrary bytes (after a request line or not) never panic the request parser, under
    /// any limits: it takes no more than it was given, nothing unless it returns a head, and
    /// a head it returns keeps its promises.
    #[test]
    fn request_parser_on_arbitrary_bytes(
        prefix in any::<bool>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        syntax in proptest::collection::vec(prop::sample::select(SYNTAX), 0..12)
            .prop_map(|pieces| pieces.concat().into_bytes()),
        max_headers in 0usize..6,
        limit in prop_oneof![Just(LIMIT), 0usize..400],
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        for tail in [&bytes, &syntax] {
            let mut input = if prefix { b"POST /p HTTP/1.1\r\n".to_vec() } else { Vec::new() };
            input.extend_from_slice(tail);
            let mut buf = BytesMut::from(&input[..]);
            match parse_request_head(&mut buf, max_headers, limit) {
                Ok(Some(h)) => {
                    prop_assert!(buf.len() < input.len());
                    prop_assert!(input.len() - buf.len() <= limit);
                    prop_assert_eq!(&buf[..], &input[input.len() - buf.len()..]);
                    prop_assert!(h.headers.len() <= max_headers.max(1));
                    match h.framing {
                        Framing::Empty => {}
                        Framing::Length(n) => {
                            prop_assert!(n > 0);
                            prop_assert_eq!(
                                super::super::content_length(&h.headers),
                                Ok(Some(n))
                            );
                        }
                        Framing::Chunked => {
                            prop_assert_eq!(h.version, Version::HTTP_11);
                            prop_assert!(!h.headers.contains_key(CONTENT_LENGTH));
                        }
                        Framing::Close => prop_assert!(false, "a request framed by close"),
                    }
                    prop_assert!(!h.expect_continue || h.version == Version::HTTP_11);
                    let _ = h.is_upgrade();
                }
                Ok(None) => {
                    prop_assert_eq!(&buf[..], &input[..]);
                    prop_assert!(input.len() <= limit);
                }
                Err(e) => {
                    // At most the head is gone (see `parse_with`).
                    prop_assert_eq!(&buf[..], &input[input.len() - buf.len()..]);
                    prop_assert!(input.len() - buf.len() <= limit);
                    let _ = e.status();
                }
            }
            // Fed in pieces it ends as it does whole: the same head from the same bytes, more
            // needed, or an error (whose kind may differ: a piece over the limit is too large
            // before a malformed byte past the limit is seen).
            let summary = |h: Option<RequestHead>, taken: usize| {
                h.map(|h| (h.method, h.uri, in_order(&h.headers), h.framing, h.keep_alive, taken))
            };
            let mut buf = BytesMut::from(&input[..]);
            let whole = parse_request_head(&mut buf, max_headers, limit)
                .map(|h| summary(h, input.len() - buf.len()));
            let mut buf = BytesMut::new();
            let mut at = 0;
            let mut split = Ok(None);
            for end in cuts(&picks, input.len()).into_iter().chain([input.len()]) {
                let end = end.max(at);
                buf.extend_from_slice(&input[at..end]);
                at = end;
                split = parse_request_head(&mut buf, max_headers, limit)
                    .map(|h| summary(h, at - buf.len()));
                if !matches!(split, Ok(None)) {
                    break;
                }
            }
            match (&split, &whole) {
                (Err(_), Err(_)) => {}
                _ => prop_assert_eq!(&split, &whole),
            }
        }
    }

    /// A response head written out parses back as the client side reads it: the same status,
    /// the fields given (less `transfer-encoding`, and `content-length` when chunked), in
    /// order, and the framing, `date` and `connection: close` fields added as promised.
    #[test]
    fn response_head_parses_back(
        status in 100u16..1000,
        fields in proptest::collection::vec(
            (
                prop_oneof![
                    4 => "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}",
                    1 => Just("Content-Length".to_owned()),
                    1 => Just("Transfer-Encoding".to_owned()),
                    1 => Just("Date".to_owned()),
                    1 => Just("Connection".to_owned()),
                    1 => Just("Set-Cookie".to_owned()),
                ],
                arb_value(),
            ),
            0..12,
        ),
        framing in prop_oneof![
            Just(ResponseFraming::NoBody),
            (0u64..1 << 40).prop_map(ResponseFraming::Length),
            Just(ResponseFraming::Chunked),
            Just(ResponseFraming::Close),
        ],
        close in any::<bool>(),
        http10 in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut given = HeaderMap::new();
        for (n, v) in &fields {
            given.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        let status = StatusCode::from_u16(status).unwrap();
        let mut dst = BytesMut::new();
        encode_response_head(http10, status, &given, framing, close, &DATE, &mut dst);
        let line = format!("HTTP/1.{} {} ", u8::from(!http10), status.as_str());
        prop_assert!(dst.starts_with(line.as_bytes()));
        let head_len = dst.len();
        dst.extend_from_slice(&tail);

        // A 1xx or 204 never has a content-length of the caller's (RFC 9110 §8.6).
        let no_length = framing == ResponseFraming::Chunked
            || status.is_informational()
            || status == StatusCode::NO_CONTENT;
        let mut expected = HeaderMap::new();
        for (n, v) in &given {
            if n == TRANSFER_ENCODING || (n == CONTENT_LENGTH && no_length) {
                continue;
            }
            expected.append(n.clone(), v.clone());
        }
        match framing {
            ResponseFraming::Length(n) if !expected.contains_key(CONTENT_LENGTH) => {
                expected.append(CONTENT_LENGTH, HeaderValue::from(n));
            }
            ResponseFraming::Chunked => {
                expected.append(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            }
            _ => {}
        }
        if !given.contains_key(http::header::DATE) {
            expected.append(http::header::DATE, DATE);
        }
        if close && !has_token(&given, &CONNECTION, "close") {
            expected.append(CONNECTION, HeaderValue::from_static("close"));
        }

        let mut buf = dst.clone();
        let h = parse_response_head(&mut buf, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(head_len, dst.len() - buf.len());
        prop_assert_eq!(&buf[..], &tail[..]);
        prop_assert_eq!(h.status, status);
        prop_assert_eq!(h.version, if http10 { Version::HTTP_10 } else { Version::HTTP_11 });
        prop_assert_eq!(&h.headers, &expected);
        prop_assert_eq!(in_order(&h.headers), in_order(&expected));
        prop_assert_eq!(h.headers.get_all(TRANSFER_ENCODING).iter().count(),
            usize::from(framing == ResponseFraming::Chunked));
        if close {
            prop_assert!(!h.keep_alive);
        }
        if framing == ResponseFraming::Chunked {
            prop_assert!(!h.headers.contains_key(CONTENT_LENGTH));
        }
    }
}
