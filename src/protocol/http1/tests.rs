use super::*;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Helpers

fn parse(bytes: &[u8], max_headers: usize) -> Result<Option<ResponseHead>, ParseError> {
    parse_response_head(&mut BytesMut::from(bytes), max_headers)
}

fn head(bytes: &[u8]) -> ResponseHead {
    parse(bytes, 100)
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(bytes)))
        .unwrap_or_else(|| panic!("{:?}: incomplete", String::from_utf8_lossy(bytes)))
}

fn framing(method: Method, bytes: &[u8]) -> Result<Framing, ParseError> {
    response_framing(&method, &head(bytes))
}

/// What a decoder made of some input: the body, the trailers, what it left in the buffer.
#[derive(Debug, PartialEq)]
struct Body {
    data: Vec<u8>,
    trailers: Option<HeaderMap>,
    left: Vec<u8>,
}

/// Feed `input` to a fresh decoder for `framing`, cut at `cuts` (increasing offsets), decoding
/// after each piece until the decoder asks for more, then at eof after the last one. Checks on
/// the way that no step takes more bytes than it was given, that data is never empty, that
/// `NeedMore` never comes at eof and that the decoder says it is done when it ends.
fn decode_pieces(
    framing: Framing,
    input: &[u8],
    cuts: &[usize],
    max_headers: usize,
) -> Result<Body, ParseError> {
    let mut dec = BodyDecoder::new(framing, max_headers);
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut at = 0;
    let ends: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&c| c <= input.len())
        .chain([input.len()])
        .collect();
    for (i, &end) in ends.iter().enumerate() {
        let end = end.max(at);
        buf.extend_from_slice(&input[at..end]);
        at = end;
        let eof = i + 1 == ends.len();
        loop {
            let before = buf.len();
            let step = dec.decode(&mut buf, eof)?;
            assert!(buf.len() <= before, "a step grew the buffer");
            let taken = before - buf.len();
            match step {
                Decoded::Data(d) => {
                    assert!(!d.is_empty(), "empty data");
                    assert!(d.len() <= taken, "data {} from {taken} bytes", d.len());
                    data.extend_from_slice(&d);
                }
                Decoded::Trailers(_) | Decoded::End => {
                    assert!(dec.is_done());
                    assert_eq!(dec.remaining(), Some(0));
                    assert_eq!(
                        dec.decode(&mut buf, eof),
                        Ok(Decoded::End),
                        "done stays done"
                    );
                    // What the decoder left, and what it was not given yet.
                    buf.extend_from_slice(&input[at..]);
                    let trailers = match step {
                        Decoded::Trailers(t) => Some(t),
                        _ => None,
                    };
                    return Ok(Body {
                        data,
                        trailers,
                        left: buf.to_vec(),
                    });
                }
                Decoded::NeedMore => {
                    assert!(!eof, "NeedMore at eof");
                    assert!(!dec.is_done());
                    break;
                }
            }
        }
    }
    unreachable!("the loop at eof returns");
}

fn decode_all(framing: Framing, input: &[u8]) -> Result<Body, ParseError> {
    decode_pieces(framing, input, &[], 100)
}

/// Every split of `input` into two pieces, and byte by byte, decodes as the whole does.
fn decode_every_split(framing: Framing, input: &[u8]) -> Result<Body, ParseError> {
    let whole = decode_all(framing, input);
    for cut in 0..=input.len() {
        assert_eq!(
            decode_pieces(framing, input, &[cut], 100),
            whole,
            "cut at {cut}"
        );
    }
    let bytewise: Vec<usize> = (0..input.len()).collect();
    assert_eq!(decode_pieces(framing, input, &bytewise, 100), whole);
    whole
}

fn body(data: &[u8], left: &[u8]) -> Body {
    Body {
        data: data.to_vec(),
        trailers: None,
        left: left.to_vec(),
    }
}

pub(super) fn header_map(fields: &[(&str, &[u8])]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (n, v) in fields {
        m.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    m
}

fn request_head(method: Method, uri: &str, headers: &HeaderMap, framing: Framing) -> String {
    let mut dst = BytesMut::new();
    encode_request_head(&method, &uri.parse().unwrap(), headers, framing, &mut dst);
    String::from_utf8(dst.to_vec()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// parse_response_head

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Thing: a b\r\n\r\nhello";

#[test]
fn parses_a_complete_head_and_leaves_the_body() {
    let mut buf = BytesMut::from(OK);
    let h = parse_response_head(&mut buf, 100).unwrap().unwrap();
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.version, Version::HTTP_11);
    assert!(h.keep_alive);
    assert!(!h.is_informational());
    assert_eq!(h.headers.len(), 2);
    assert_eq!(h.headers["content-length"], "5");
    assert_eq!(h.headers["x-thing"], "a b");
    assert_eq!(&buf[..], b"hello");
}

#[test]
fn head_without_reason_phrase_and_with_bare_lf() {
    let h = head(b"HTTP/1.1 503 \r\n\r\n");
    assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE);
    let h = head(b"HTTP/1.1 404 Not Found\nx: y\n\n");
    assert_eq!(h.status, StatusCode::NOT_FOUND);
    assert_eq!(h.headers["x"], "y");
}

#[test]
fn informational_heads() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n\r\n"[..]);
    let first = parse_response_head(&mut buf, 100).unwrap().unwrap();
    assert!(first.is_informational());
    assert_eq!(first.status, StatusCode::CONTINUE);
    let second = parse_response_head(&mut buf, 100).unwrap().unwrap();
    assert!(!second.is_informational());
    assert_eq!(second.status, StatusCode::CREATED);
    assert!(buf.is_empty());
}

#[test]
fn every_prefix_of_a_head_is_partial_and_consumes_nothing() {
    let head_len = OK.len() - b"hello".len();
    for n in 0..head_len {
        let mut buf = BytesMut::from(&OK[..n]);
        assert!(
            parse_response_head(&mut buf, 100).unwrap().is_none(),
            "prefix {n}"
        );
        assert_eq!(&buf[..], &OK[..n], "prefix {n} was consumed");
    }
    let mut buf = BytesMut::from(&OK[..head_len]);
    assert!(parse_response_head(&mut buf, 100).unwrap().is_some());
    assert!(buf.is_empty());
}

/// A head of `len` bytes: a status line, one `x-pad` field to fill, the empty line.
fn head_of_len(len: usize) -> Vec<u8> {
    let start = b"HTTP/1.1 200 OK\r\nx-pad: ";
    let end = b"\r\n\r\n";
    let mut v = start.to_vec();
    v.resize(len - end.len(), b'a');
    v.extend_from_slice(end);
    assert_eq!(v.len(), len);
    v
}

#[test]
fn head_size_limit() {
    // A complete head of exactly MAX_HEAD bytes is fine, one byte more is not.
    let h = head_of_len(MAX_HEAD);
    assert!(parse(&h, 100).unwrap().is_some());
    let h = head_of_len(MAX_HEAD + 1);
    assert_eq!(parse(&h, 100).unwrap_err(), ParseError::HeadTooLarge);
    // An unfinished head waits up to MAX_HEAD buffered bytes, and fails past it.
    let h = head_of_len(MAX_HEAD + 100);
    assert!(parse(&h[..MAX_HEAD], 100).unwrap().is_none());
    assert_eq!(
        parse(&h[..MAX_HEAD + 1], 100).unwrap_err(),
        ParseError::HeadTooLarge
    );
    // Endless empty lines before a status line are not a way around the limit.
    let blank = b"\r\n".repeat(MAX_HEAD / 2 + 1);
    assert_eq!(parse(&blank, 100).unwrap_err(), ParseError::HeadTooLarge);
}

fn head_with_fields(n: usize) -> Vec<u8> {
    let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..n {
        v.extend_from_slice(format!("x-h{i}: {i}\r\n").as_bytes());
    }
    v.extend_from_slice(b"\r\n");
    v
}

#[test]
fn header_count_limit() {
    let three = head_with_fields(3);
    assert_eq!(parse(&three, 3).unwrap().unwrap().headers.len(), 3);
    assert_eq!(parse(&three, 2).unwrap_err(), ParseError::TooManyHeaders(2));
    // A limit of 0 means 1.
    assert!(parse(&head_with_fields(1), 0).unwrap().is_some());
    assert_eq!(
        parse(&head_with_fields(2), 0).unwrap_err(),
        ParseError::TooManyHeaders(1)
    );
    // Too many fields is known before the head is complete.
    let partial = &three[..three.len() - 2];
    assert_eq!(
        parse(partial, 2).unwrap_err(),
        ParseError::TooManyHeaders(2)
    );
    // Above the stack array: the heap one.
    let n = STACK_HEADERS + 72;
    let many = head_with_fields(n);
    let h = parse(&many, n).unwrap().unwrap();
    assert_eq!(h.headers.len(), n);
    assert_eq!(
        h.headers[format!("x-h{}", n - 1).as_str()],
        (n - 1).to_string()
    );
    assert_eq!(
        parse(&many, n - 1).unwrap_err(),
        ParseError::TooManyHeaders(n - 1)
    );
    assert!(
        parse(&head_with_fields(STACK_HEADERS), STACK_HEADERS)
            .unwrap()
            .is_some()
    );
}

/// `max_headers_count` is a `u32` in the configuration: a huge limit must cost no allocation
/// of its size (`vec![EMPTY_HEADER; usize::MAX]` would panic, `u32::MAX` slots would take
/// 128 GiB), for heads and for trailers.
#[test]
fn huge_header_limits() {
    for max in [usize::MAX, u32::MAX as usize, 1 << 40] {
        assert_eq!(parse(OK, max).unwrap().unwrap().headers.len(), 2);
        assert_eq!(
            parse(&head_with_fields(300), max)
                .unwrap()
                .unwrap()
                .headers
                .len(),
            300
        );
        assert!(parse(&OK[..20], max).unwrap().is_none());
        let got = decode_pieces(
            Framing::Chunked,
            b"1\r\nx\r\n0\r\na: 1\r\nb: 2\r\n\r\n",
            &[3],
            max,
        )
        .unwrap();
        assert_eq!(got.trailers.unwrap().len(), 2);
    }
}

/// `line` followed by `n` of the shortest fields (`a:` and a line feed) and an empty line.
fn shortest_fields(line: &[u8], n: usize) -> Vec<u8> {
    let mut v = line.to_vec();
    for _ in 0..n {
        v.extend_from_slice(b"a:\n");
    }
    v.push(b'\n');
    v
}

/// Slots are bounded by what a head within MAX_HEAD can hold, and the bound is exact: a head
/// packed with the shortest fields up to MAX_HEAD parses under a limit of its field count (or
/// any larger one), fails one under it, and every prefix of it is partial.
#[test]
fn header_slots_bound_is_exact() {
    let line = b"HTTP/1.1 200 OK\n";
    let n = (MAX_HEAD - line.len() - 1) / 3;
    let h = shortest_fields(line, n);
    assert!(h.len() <= MAX_HEAD && h.len() + 3 > MAX_HEAD);
    for max in [n, n + 1, 2 * n, usize::MAX] {
        assert_eq!(parse(&h, max).unwrap().unwrap().headers.len(), n, "{max}");
    }
    assert_eq!(
        parse(&h, n - 1).unwrap_err(),
        ParseError::TooManyHeaders(n - 1)
    );
    for cut in (0..h.len()).step_by(4093).chain([h.len() - 2, h.len() - 1]) {
        assert!(parse(&h[..cut], n).unwrap().is_none(), "prefix {cut}");
        assert!(
            parse(&h[..cut], usize::MAX).unwrap().is_none(),
            "prefix {cut}"
        );
    }
    // Past MAX_HEAD the same fields make a head too large, whatever the limit, also when
    // they are more than the slots a head within MAX_HEAD needs.
    for extra in [2, 100] {
        let big = shortest_fields(line, n + extra);
        for max in [n + extra, usize::MAX] {
            assert_eq!(
                parse(&big, max).unwrap_err(),
                ParseError::HeadTooLarge,
                "{extra} {max}"
            );
        }
        assert_eq!(
            parse(&big, 100).unwrap_err(),
            ParseError::TooManyHeaders(100)
        );
    }
    // The same for trailers.
    let t = shortest_fields(b"0\r\n", n);
    assert_eq!(
        decode_pieces(Framing::Chunked, &t, &[], usize::MAX)
            .unwrap()
            .trailers
            .unwrap()
            .len(),
        n
    );
    assert_eq!(
        decode_pieces(Framing::Chunked, &t, &[], n - 1),
        Err(ParseError::TooManyHeaders(n - 1))
    );
    let t = shortest_fields(b"0\r\n", n + 100);
    assert_eq!(
        decode_pieces(Framing::Chunked, &t, &[], usize::MAX),
        Err(ParseError::HeadTooLarge)
    );
}

#[test]
fn malformed_heads() {
    for bad in [
        &b"HTTP/1.1 2x0 OK\r\n\r\n"[..],
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 000 Zero\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.2 200 OK\r\n\r\n",
        b"HTTQ/1.1 200 OK\r\n\r\n",
        b"http/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1200 OK\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: nul\0byte\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: del\x7fbyte\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: bare\rcr\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: a\r\n folded\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello",
    ] {
        match parse(bad, 100) {
            Err(ParseError::Malformed(_)) => {}
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bad)),
        }
    }
}

#[test]
fn keep_alive_rules() {
    let cases: &[(&[u8], bool)] = &[
        (b"HTTP/1.1 200 OK\r\n\r\n", true),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false),
        (b"HTTP/1.1 200 OK\r\nconnection: CLOSE\r\n\r\n", false),
        (
            b"HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\n\r\n",
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
        ),
        (b"HTTP/1.1 200 OK\r\nConnection: closed\r\n\r\n", true),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n", true),
        (b"HTTP/1.1 200 OK\r\nX-Connection: close\r\n\r\n", true),
        (b"HTTP/1.0 200 OK\r\n\r\n", false),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n", true),
        (
            b"HTTP/1.0 200 OK\r\nConnection: foo ,  keep-alive \r\n\r\n",
            true,
        ),
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n\r\n",
            false,
        ),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alived\r\n\r\n", false),
        (b"HTTP/1.0 200 OK\r\nKeep-Alive: timeout=5\r\n\r\n", false),
    ];
    for (bytes, keep) in cases {
        assert_eq!(
            head(bytes).keep_alive,
            *keep,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert_eq!(head(b"HTTP/1.0 200 OK\r\n\r\n").version, Version::HTTP_10);
}

#[test]
fn header_values_are_byte_exact_and_in_order() {
    let raw = b"HTTP/1.1 200 OK\r\n\
        Set-Cookie: a=1; Path=/\r\n\
        X-Mixed:  MiXeD  case\tand tab  \r\n\
        set-cookie: b=2\r\n\
        X-Latin: caf\xe9\r\n\
        X-Empty:\r\n\
        X-Spaces:    \r\n\
        SET-COOKIE: c=3\r\n\
        \r\n";
    let h = head(raw);
    let cookies: Vec<&[u8]> = h
        .headers
        .get_all("set-cookie")
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    assert_eq!(cookies, [&b"a=1; Path=/"[..], &b"b=2"[..], &b"c=3"[..]]);
    // Leading and trailing whitespace is not part of a value (RFC 9110 §5.5); inside it is.
    assert_eq!(h.headers["x-mixed"].as_bytes(), b"MiXeD  case\tand tab");
    assert_eq!(h.headers["x-latin"].as_bytes(), b"caf\xe9");
    assert_eq!(h.headers["x-empty"].as_bytes(), b"");
    assert_eq!(h.headers["x-spaces"].as_bytes(), b"");
    let names: Vec<&str> = h.headers.keys().map(HeaderName::as_str).collect();
    assert_eq!(
        names,
        ["set-cookie", "x-mixed", "x-latin", "x-empty", "x-spaces"]
    );
    assert_eq!(h.headers.len(), 7);
}

#[test]
fn header_values_share_the_buffer() {
    let mut buf = BytesMut::from(OK);
    let range = buf.as_ptr_range();
    let h = parse_response_head(&mut buf, 100).unwrap().unwrap();
    for v in h.headers.values() {
        let p = v.as_bytes().as_ptr();
        assert!(range.contains(&p), "a copied value: {v:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// response_framing

#[test]
fn framing_of_bodiless_responses() {
    let with_length = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(framing(Method::HEAD, with_length), Ok(Framing::Empty));
    assert_eq!(framing(Method::GET, with_length), Ok(Framing::Length(10)));
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(framing(Method::HEAD, chunked), Ok(Framing::Empty));
    for status in [100, 101, 103, 199, 204, 304] {
        let h = format!("HTTP/1.1 {status} X\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(
            framing(Method::GET, h.as_bytes()),
            Ok(Framing::Empty),
            "{status}"
        );
        let h = format!("HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(
            framing(Method::POST, h.as_bytes()),
            Ok(Framing::Empty),
            "{status}"
        );
    }
    // Even framing that would be an error.
    let bad = b"HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n";
    assert_eq!(framing(Method::GET, bad), Ok(Framing::Empty));
    // 205 and 200 are not bodiless.
    let h = b"HTTP/1.1 205 Reset Content\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(framing(Method::GET, h), Ok(Framing::Length(3)));
}

#[test]
fn framing_chunked() {
    for te in [
        "chunked",
        "Chunked",
        "CHUNKED",
        " chunked ",
        "chunked,",
        ", chunked",
    ] {
        let h = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
        assert_eq!(
            framing(Method::GET, h.as_bytes()),
            Ok(Framing::Chunked),
            "{te:?}"
        );
    }
}

#[test]
fn framing_rejects_smuggling_shapes() {
    let cases: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunkedx\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];
    for bytes in cases {
        assert_eq!(
            framing(Method::GET, bytes),
            Err(ParseError::TransferEncoding),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn framing_content_length() {
    let cases: &[(&[u8], Result<Framing, ParseError>)] = &[
        (b"Content-Length: 42", Ok(Framing::Length(42))),
        (b"Content-Length: 0", Ok(Framing::Empty)),
        (b"Content-Length: 000", Ok(Framing::Empty)),
        (b"Content-Length: 007", Ok(Framing::Length(7))),
        (
            b"Content-Length: 5\r\nContent-Length: 5",
            Ok(Framing::Length(5)),
        ),
        (b"Content-Length: 5, 5", Ok(Framing::Length(5))),
        (
            b"Content-Length: 5,5\r\ncontent-length: 5",
            Ok(Framing::Length(5)),
        ),
        (
            b"Content-Length: 9999999999999999999",
            Ok(Framing::Length(9_999_999_999_999_999_999)),
        ),
        (
            b"Content-Length: 5\r\nContent-Length: 6",
            Err(ParseError::ContentLength),
        ),
        (b"Content-Length: 5, 6", Err(ParseError::ContentLength)),
        (b"Content-Length: 5,", Err(ParseError::ContentLength)),
        (b"Content-Length:", Err(ParseError::ContentLength)),
        (b"Content-Length: -1", Err(ParseError::ContentLength)),
        (b"Content-Length: +1", Err(ParseError::ContentLength)),
        (b"Content-Length: 1 2", Err(ParseError::ContentLength)),
        (b"Content-Length: 0x10", Err(ParseError::ContentLength)),
        (
            b"Content-Length: 18446744073709551616",
            Err(ParseError::ContentLength),
        ),
        (
            b"Content-Length: 10000000000000000000",
            Err(ParseError::ContentLength),
        ),
        (b"X-Content-Length: 5", Ok(Framing::Close)),
    ];
    for (field, want) in cases {
        let mut h = b"HTTP/1.1 200 OK\r\n".to_vec();
        h.extend_from_slice(field);
        h.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            framing(Method::GET, &h),
            *want,
            "{:?}",
            String::from_utf8_lossy(field)
        );
    }
    // HTTP/1.0 has content-length too.
    assert_eq!(
        framing(Method::GET, b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n"),
        Ok(Framing::Length(3))
    );
}

#[test]
fn framing_without_headers_is_close() {
    assert_eq!(
        framing(Method::GET, b"HTTP/1.1 200 OK\r\n\r\n"),
        Ok(Framing::Close)
    );
    assert_eq!(
        framing(Method::POST, b"HTTP/1.0 500 Oops\r\nServer: x\r\n\r\n"),
        Ok(Framing::Close)
    );
}

#[test]
fn content_length_of_headers() {
    assert_eq!(content_length(&HeaderMap::new()), Ok(None));
    let m = header_map(&[("content-length", b"12")]);
    assert_eq!(content_length(&m), Ok(Some(12)));
    let m = header_map(&[("content-length", b"12"), ("content-length", b"13")]);
    assert_eq!(content_length(&m), Err(ParseError::ContentLength));
}

// ---------------------------------------------------------------------------------------------
// BodyDecoder: Empty, Length, Close

#[test]
fn empty_body_takes_nothing() {
    for f in [Framing::Empty, Framing::Length(0)] {
        let mut dec = BodyDecoder::new(f, 100);
        assert!(dec.is_done());
        assert_eq!(dec.remaining(), Some(0));
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        assert_eq!(dec.decode(&mut buf, false), Ok(Decoded::End));
        assert_eq!(dec.decode(&mut buf, true), Ok(Decoded::End));
        assert_eq!(buf.len(), 17);
    }
}

#[test]
fn length_body_split_over_buffers() {
    let mut dec = BodyDecoder::new(Framing::Length(10), 100);
    assert_eq!(dec.remaining(), Some(10));
    let mut buf = BytesMut::new();
    assert_eq!(dec.decode(&mut buf, false), Ok(Decoded::NeedMore));
    buf.extend_from_slice(b"0123");
    assert_eq!(
        dec.decode(&mut buf, false),
        Ok(Decoded::Data(Bytes::from_static(b"0123")))
    );
    assert_eq!(dec.remaining(), Some(6));
    assert!(!dec.is_done());
    assert_eq!(dec.decode(&mut buf, false), Ok(Decoded::NeedMore));
    buf.extend_from_slice(b"456789HTTP/1.1");
    assert_eq!(
        dec.decode(&mut buf, false),
        Ok(Decoded::Data(Bytes::from_static(b"456789")))
    );
    assert!(dec.is_done());
    assert_eq!(dec.decode(&mut buf, false), Ok(Decoded::End));
    assert_eq!(&buf[..], b"HTTP/1.1");

    let input = b"0123456789next";
    assert_eq!(
        decode_every_split(Framing::Length(10), input),
        Ok(body(b"0123456789", b"next"))
    );
}

#[test]
fn length_body_cut_short_is_incomplete() {
    assert_eq!(
        decode_every_split(Framing::Length(10), b"01234"),
        Err(ParseError::Incomplete)
    );
    assert_eq!(
        decode_all(Framing::Length(1), b""),
        Err(ParseError::Incomplete)
    );
    // The bytes that did come are handed out first.
    let mut dec = BodyDecoder::new(Framing::Length(10), 100);
    let mut buf = BytesMut::from(&b"abc"[..]);
    assert_eq!(
        dec.decode(&mut buf, true),
        Ok(Decoded::Data(Bytes::from_static(b"abc")))
    );
    assert_eq!(dec.decode(&mut buf, true), Err(ParseError::Incomplete));
}

#[test]
fn huge_length_body() {
    let mut dec = BodyDecoder::new(Framing::Length(u64::MAX), 100);
    let mut buf = BytesMut::from(&b"abc"[..]);
    assert_eq!(
        dec.decode(&mut buf, false),
        Ok(Decoded::Data(Bytes::from_static(b"abc")))
    );
    assert_eq!(dec.remaining(), Some(u64::MAX - 3));
}

#[test]
fn close_body_runs_until_eof() {
    let mut dec = BodyDecoder::new(Framing::Close, 100);
    assert_eq!(dec.remaining(), None);
    let mut buf = BytesMut::new();
    assert_eq!(dec.decode(&mut buf, false), Ok(Decoded::NeedMore));
    buf.extend_from_slice(b"some");
    assert_eq!(
        dec.decode(&mut buf, false),
        Ok(Decoded::Data(Bytes::from_static(b"some")))
    );
    assert_eq!(dec.decode(&mut buf, false), Ok(Decoded::NeedMore));
    buf.extend_from_slice(b"\r\n0\r\n\r\nHTTP/1.1 200");
    assert_eq!(
        dec.decode(&mut buf, true),
        Ok(Decoded::Data(Bytes::from_static(
            b"\r\n0\r\n\r\nHTTP/1.1 200"
        )))
    );
    assert!(!dec.is_done());
    assert_eq!(dec.decode(&mut buf, true), Ok(Decoded::End));
    assert!(dec.is_done());

    assert_eq!(
        decode_every_split(Framing::Close, b"all of it\r\n\r\n"),
        Ok(body(b"all of it\r\n\r\n", b""))
    );
    assert_eq!(decode_all(Framing::Close, b""), Ok(body(b"", b"")));
}

// ---------------------------------------------------------------------------------------------
// BodyDecoder: chunked

#[test]
fn chunked_body() {
    let input = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n";
    assert_eq!(
        decode_every_split(Framing::Chunked, input),
        Ok(body(b"hello, world", b"HTTP/1.1 200 OK\r\n"))
    );
}

#[test]
fn chunked_step_by_step() {
    let mut dec = BodyDecoder::new(Framing::Chunked, 100);
    assert_eq!(dec.remaining(), None);
    let mut buf = BytesMut::from(&b"3\r\nab"[..]);
    assert_eq!(
        dec.decode(&mut buf, false),
        Ok(Decoded::Data(Bytes::from_static(b"ab")))
    );
    assert_eq!(dec.decode(&mut buf, false), Ok(Decoded::NeedMore));
    buf.extend_from_slice(b"c\r");
    assert_eq!(
        dec.decode(&mut buf, false),
        Ok(Decoded::Data(Bytes::from_static(b"c")))
    );
    assert_eq!(dec.decode(&mut buf, false), Ok(Decoded::NeedMore));
    assert_eq!(&buf[..], b"\r");
    buf.extend_from_slice(b"\n0\r\n");
    assert_eq!(dec.decode(&mut buf, false), Ok(Decoded::NeedMore));
    assert!(!dec.is_done());
    buf.extend_from_slice(b"\r\n");
    assert_eq!(dec.decode(&mut buf, false), Ok(Decoded::End));
    assert!(dec.is_done());
    assert!(buf.is_empty());
}

#[test]
fn chunk_extensions_are_skipped() {
    let input =
        b"5;a=b\r\nhello\r\n3 ; name=\"quoted;value\"\r\nabc\r\n1;x\r\n!\r\n0;last=1\r\n\r\n";
    assert_eq!(
        decode_every_split(Framing::Chunked, input),
        Ok(body(b"helloabc!", b""))
    );
}

#[test]
fn chunk_sizes_in_hex() {
    let data = vec![b'x'; 0x1af];
    for size in ["1af", "1AF", "1Af", "01af", "00000000000001af"] {
        let mut input = format!("{size}\r\n").into_bytes();
        input.extend_from_slice(&data);
        input.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(
            decode_all(Framing::Chunked, &input),
            Ok(body(&data, b"")),
            "{size}"
        );
    }
    // Sixteen digits are read as a u64 without overflow.
    let mut dec = BodyDecoder::new(Framing::Chunked, 100);
    let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nabc"[..]);
    assert_eq!(
        dec.decode(&mut buf, false),
        Ok(Decoded::Data(Bytes::from_static(b"abc")))
    );
    assert_eq!(dec.state, State::Chunked(Chunk::Data(u64::MAX - 3)));
}

#[test]
fn bad_chunk_sizes() {
    for line in [
        &b"\r\n"[..],
        b"x\r\n",
        b"g\r\n",
        b"-1\r\n",
        b"+1\r\n",
        b" 5\r\n",
        b";a=b\r\n",
        b"5x\r\n",
        b"5 6\r\n",
        b"0x5\r\n",
        b"5,\r\n",
        // Seventeen digits, even with leading zeros, are too many.
        b"00000000000000001\r\n",
        b"10000000000000000\r\n",
    ] {
        let mut input = line.to_vec();
        input.extend_from_slice(b"hello\r\n0\r\n\r\n");
        assert_eq!(
            decode_every_split(Framing::Chunked, &input),
            Err(ParseError::Chunk("chunk size")),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn missing_crlf_after_chunk_data() {
    for input in [
        &b"3\r\nabcd\r\n0\r\n\r\n"[..],
        b"3\r\nabc\n0\r\n\r\n",
        b"3\r\nabc\r0\r\n\r\n",
        b"3\r\nabc0\r\n\r\n",
    ] {
        let got = decode_every_split(Framing::Chunked, input);
        assert_eq!(
            got,
            Err(ParseError::Chunk("missing CRLF after chunk data")),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // The data before the bad CRLF was handed out.
    let mut dec = BodyDecoder::new(Framing::Chunked, 100);
    let mut buf = BytesMut::from(&b"3\r\nabcXY"[..]);
    assert_eq!(
        dec.decode(&mut buf, false),
        Ok(Decoded::Data(Bytes::from_static(b"abc")))
    );
    assert!(dec.decode(&mut buf, false).is_err());
}

#[test]
fn chunk_size_line_limit() {
    // A line of MAX_CHUNK_LINE bytes, CRLF included, is accepted.
    let mut line = b"1;".to_vec();
    line.resize(MAX_CHUNK_LINE - 2, b'e');
    line.extend_from_slice(b"\r\n");
    assert_eq!(line.len(), MAX_CHUNK_LINE);
    let mut input = line.clone();
    input.extend_from_slice(b"!\r\n0\r\n\r\n");
    assert_eq!(decode_all(Framing::Chunked, &input), Ok(body(b"!", b"")));

    // One more byte is not.
    let mut long = b"1;".to_vec();
    long.resize(MAX_CHUNK_LINE - 1, b'e');
    long.extend_from_slice(b"\r\n!\r\n0\r\n\r\n");
    assert_eq!(
        decode_all(Framing::Chunked, &long),
        Err(ParseError::Chunk("chunk-size line too long"))
    );

    // Without a CRLF, the decoder waits for at most MAX_CHUNK_LINE bytes, then fails
    // (whatever follows is never needed).
    let mut dec = BodyDecoder::new(Framing::Chunked, 100);
    let mut buf = BytesMut::from(&b"1;"[..]);
    buf.resize(MAX_CHUNK_LINE - 1, b'e');
    assert_eq!(dec.decode(&mut buf, false), Ok(Decoded::NeedMore));
    buf.put_u8(b'e');
    assert_eq!(
        dec.decode(&mut buf, false),
        Err(ParseError::Chunk("chunk-size line too long"))
    );
    // The same for the size line after a chunk.
    let mut dec = BodyDecoder::new(Framing::Chunked, 100);
    let mut buf = BytesMut::from(&b"1\r\n!\r\n"[..]);
    buf.resize(buf.len() + MAX_CHUNK_LINE, b'0');
    assert_eq!(
        dec.decode(&mut buf, false),
        Ok(Decoded::Data(Bytes::from_static(b"!")))
    );
    assert_eq!(
        dec.decode(&mut buf, false),
        Err(ParseError::Chunk("chunk-size line too long"))
    );
}

#[test]
fn chunked_trailers() {
    let input = b"4\r\ndata\r\n0\r\nGrpc-Status: 0\r\ngrpc-message: all  good\r\nx-t: 1\r\nX-T: 2\r\n\r\nrest";
    let got = decode_every_split(Framing::Chunked, input).unwrap();
    assert_eq!(got.data, b"data");
    assert_eq!(got.left, b"rest");
    let t = got.trailers.unwrap();
    assert_eq!(t.len(), 4);
    assert_eq!(t["grpc-status"], "0");
    assert_eq!(t["grpc-message"], "all  good");
    let xt: Vec<&HeaderValue> = t.get_all("x-t").iter().collect();
    assert_eq!(xt, ["1", "2"]);
}

#[test]
fn trailer_limits_and_errors() {
    let mut many = b"0\r\n".to_vec();
    for i in 0..4 {
        many.extend_from_slice(format!("t{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(decode_pieces(Framing::Chunked, &many, &[], 4).is_ok());
    assert_eq!(
        decode_pieces(Framing::Chunked, &many, &[], 3),
        Err(ParseError::TooManyHeaders(3))
    );

    assert!(matches!(
        decode_all(Framing::Chunked, b"0\r\nno colon\r\n\r\n"),
        Err(ParseError::Malformed(_))
    ));
    assert!(matches!(
        decode_all(Framing::Chunked, b"0\r\nx: a\0b\r\n\r\n"),
        Err(ParseError::Malformed(_))
    ));

    // An unfinished trailer section waits up to MAX_HEAD bytes.
    let mut big = b"0\r\nx-pad: ".to_vec();
    big.resize(MAX_HEAD + 3, b'a');
    let mut dec = BodyDecoder::new(Framing::Chunked, 100);
    let mut buf = BytesMut::from(&big[..MAX_HEAD + 3]);
    assert_eq!(dec.decode(&mut buf, false), Ok(Decoded::NeedMore));
    buf.put_u8(b'a');
    assert_eq!(dec.decode(&mut buf, false), Err(ParseError::HeadTooLarge));
}

#[test]
fn chunked_cut_short_is_incomplete() {
    let full = b"5\r\nhello\r\n3;x\r\nabc\r\n0\r\nx: y\r\n\r\n";
    // Every proper prefix: the connection closed in the middle of the body.
    for n in 0..full.len() {
        assert_eq!(
            decode_all(Framing::Chunked, &full[..n]),
            Err(ParseError::Incomplete),
            "prefix {n}"
        );
    }
    assert!(decode_all(Framing::Chunked, full).is_ok());
    // The bytes of a cut chunk come out before the error.
    let mut dec = BodyDecoder::new(Framing::Chunked, 100);
    let mut buf = BytesMut::from(&b"5\r\nhel"[..]);
    assert_eq!(
        dec.decode(&mut buf, true),
        Ok(Decoded::Data(Bytes::from_static(b"hel")))
    );
    assert_eq!(dec.decode(&mut buf, true), Err(ParseError::Incomplete));
}

// ---------------------------------------------------------------------------------------------
// encode_request_head

#[test]
fn request_target_is_origin_form() {
    let none = HeaderMap::new();
    for (uri, target) in [
        ("http://example.com/a/b?x=1&y=%2F", "/a/b?x=1&y=%2F"),
        ("http://example.com", "/"),
        ("http://example.com/", "/"),
        ("http://example.com?q=1", "/?q=1"),
        ("https://user@example.com:8443/p#frag", "/p"),
        ("/", "/"),
        ("/only/path", "/only/path"),
        ("/p?", "/p?"),
        ("*", "*"),
    ] {
        assert_eq!(
            request_head(Method::GET, uri, &none, Framing::Empty),
            format!("GET {target} HTTP/1.1\r\n\r\n"),
            "{uri}"
        );
    }
    // A target the `http` crate gives no path and query for.
    assert_eq!(
        request_head(Method::OPTIONS, "example.com:80", &none, Framing::Empty),
        "OPTIONS / HTTP/1.1\r\n\r\n"
    );
    // An extension method as sent.
    let m = Method::from_bytes(b"PURGE").unwrap();
    let mut dst = BytesMut::new();
    encode_request_head(&m, &Uri::from_static("/x"), &none, Framing::Empty, &mut dst);
    assert_eq!(&dst[..], b"PURGE /x HTTP/1.1\r\n\r\n");
}

#[test]
fn request_headers_are_written_in_order() {
    let h = header_map(&[
        ("host", b"example.com"),
        ("x-b", b"2"),
        ("accept", b"*/*"),
        ("x-b", b"3"),
        ("x-bin", b"caf\xe9 \tx"),
    ]);
    let mut dst = BytesMut::new();
    encode_request_head(
        &Method::GET,
        &Uri::from_static("/"),
        &h,
        Framing::Empty,
        &mut dst,
    );
    assert_eq!(
        &dst[..],
        &b"GET / HTTP/1.1\r\nhost: example.com\r\nx-b: 2\r\nx-b: 3\r\naccept: */*\r\nx-bin: caf\xe9 \tx\r\n\r\n"[..]
    );
    // Appends to what is already in the buffer.
    let mut dst = BytesMut::from(&b"prev"[..]);
    encode_request_head(
        &Method::GET,
        &Uri::from_static("/"),
        &HeaderMap::new(),
        Framing::Empty,
        &mut dst,
    );
    assert_eq!(&dst[..], b"prevGET / HTTP/1.1\r\n\r\n");
}

#[test]
fn request_content_length() {
    let host = header_map(&[("host", b"h")]);
    for n in [1u64, 9, 10, 1234567, u64::MAX] {
        assert_eq!(
            request_head(Method::POST, "/", &host, Framing::Length(n)),
            format!("POST / HTTP/1.1\r\nhost: h\r\ncontent-length: {n}\r\n\r\n")
        );
    }
    // Present already: not written twice (nor changed).
    let with = header_map(&[("content-length", b"5"), ("host", b"h")]);
    assert_eq!(
        request_head(Method::PUT, "/", &with, Framing::Length(5)),
        "PUT / HTTP/1.1\r\ncontent-length: 5\r\nhost: h\r\n\r\n"
    );
    // transfer-encoding from the caller never goes out: the framing decides.
    let te = header_map(&[("transfer-encoding", b"chunked"), ("host", b"h")]);
    assert_eq!(
        request_head(Method::POST, "/", &te, Framing::Length(3)),
        "POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\n\r\n"
    );
}

#[test]
fn request_chunked() {
    let h = header_map(&[
        ("host", b"h"),
        ("content-length", b"10"),
        ("transfer-encoding", b"gzip"),
        ("transfer-encoding", b"chunked"),
        ("x-after", b"1"),
    ]);
    let head = request_head(Method::POST, "/up", &h, Framing::Chunked);
    assert_eq!(
        head,
        "POST /up HTTP/1.1\r\nhost: h\r\nx-after: 1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    assert_eq!(head.matches("transfer-encoding").count(), 1);
}

#[test]
fn request_without_body() {
    let none = HeaderMap::new();
    for m in [Method::POST, Method::PUT, Method::PATCH] {
        assert_eq!(
            request_head(m.clone(), "/", &none, Framing::Empty),
            format!("{m} / HTTP/1.1\r\ncontent-length: 0\r\n\r\n")
        );
        // Not twice.
        let zero = header_map(&[("content-length", b"0")]);
        assert_eq!(
            request_head(m.clone(), "/", &zero, Framing::Empty),
            format!("{m} / HTTP/1.1\r\ncontent-length: 0\r\n\r\n")
        );
    }
    for m in [
        Method::GET,
        Method::HEAD,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ] {
        assert_eq!(
            request_head(m.clone(), "/", &none, Framing::Empty),
            format!("{m} / HTTP/1.1\r\n\r\n")
        );
    }
    // A request framed by close has no framing header.
    assert_eq!(
        request_head(Method::POST, "/", &none, Framing::Close),
        "POST / HTTP/1.1\r\n\r\n"
    );
}

/// The head parses back as a request with the same method, target and fields.
#[test]
fn request_head_parses_back() {
    let h = header_map(&[("host", b"a"), ("x-y", b"z  w"), ("x-y", b"v")]);
    let mut dst = BytesMut::new();
    encode_request_head(
        &Method::PATCH,
        &Uri::from_static("http://a/p/q?r=s"),
        &h,
        Framing::Length(12),
        &mut dst,
    );
    let mut fields = [httparse::EMPTY_HEADER; 8];
    let mut req = httparse::Request::new(&mut fields);
    assert_eq!(req.parse(&dst), Ok(httparse::Status::Complete(dst.len())));
    assert_eq!(req.method, Some("PATCH"));
    assert_eq!(req.path, Some("/p/q?r=s"));
    assert_eq!(req.version, Some(1));
    let got: Vec<(&str, &[u8])> = req.headers.iter().map(|f| (f.name, f.value)).collect();
    assert_eq!(
        got,
        [
            ("host", &b"a"[..]),
            ("x-y", &b"z  w"[..]),
            ("x-y", &b"v"[..]),
            ("content-length", &b"12"[..])
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Chunk encoding

#[test]
fn chunk_encoding() {
    let mut dst = BytesMut::new();
    encode_chunk(b"hello", &mut dst);
    assert_eq!(&dst[..], b"5\r\nhello\r\n");
    encode_chunk(b"", &mut dst);
    assert_eq!(
        &dst[..],
        b"5\r\nhello\r\n",
        "an empty chunk would end the body"
    );
    let mut dst = BytesMut::new();
    encode_chunk(&[b'z'; 0x1f0], &mut dst);
    assert!(dst.starts_with(b"1f0\r\nzzz"));
    assert!(dst.ends_with(b"z\r\n"));
    assert_eq!(dst.len(), 5 + 0x1f0 + 2);

    for (len, line) in [
        (0usize, "0\r\n"),
        (1, "1\r\n"),
        (15, "f\r\n"),
        (16, "10\r\n"),
        (255, "ff\r\n"),
        (4096, "1000\r\n"),
        (0xabcdef, "abcdef\r\n"),
    ] {
        let mut dst = BytesMut::from(&b"x"[..]);
        encode_chunk_header(len, &mut dst);
        assert_eq!(&dst[1..], line.as_bytes(), "{len}");
        // Room for the data and its CRLF is already there.
        assert!(dst.capacity() >= dst.len() + len + 2, "{len}");
    }

    let mut dst = BytesMut::new();
    encode_chunked_end(None, &mut dst);
    assert_eq!(&dst[..], b"0\r\n\r\n");
    let mut dst = BytesMut::new();
    encode_chunked_end(Some(&HeaderMap::new()), &mut dst);
    assert_eq!(&dst[..], b"0\r\n\r\n");
    let mut dst = BytesMut::new();
    let t = header_map(&[("grpc-status", b"0"), ("x", b"1"), ("x", b"2")]);
    encode_chunked_end(Some(&t), &mut dst);
    assert_eq!(&dst[..], b"0\r\ngrpc-status: 0\r\nx: 1\r\nx: 2\r\n\r\n");
}

#[test]
fn chunk_encoding_round_trips() {
    let mut wire = BytesMut::new();
    encode_chunk(b"first ", &mut wire);
    encode_chunk_header(6, &mut wire);
    wire.put_slice(b"second");
    wire.put_slice(b"\r\n");
    encode_chunk(&[0u8, 13, 10, 48, 13, 10, 13, 10], &mut wire);
    let t = header_map(&[("grpc-status", b"0"), ("grpc-message", b"fine")]);
    encode_chunked_end(Some(&t), &mut wire);
    let got = decode_every_split(Framing::Chunked, &wire).unwrap();
    assert_eq!(got.data, b"first second\0\r\n0\r\n\r\n");
    assert_eq!(got.trailers, Some(t));
    assert!(got.left.is_empty());

    let mut wire = BytesMut::new();
    encode_chunk(b"x", &mut wire);
    encode_chunked_end(None, &mut wire);
    assert_eq!(decode_all(Framing::Chunked, &wire), Ok(body(b"x", b"")));
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Cut points for an input of `len` bytes, from arbitrary indices.
pub(super) fn cuts(picks: &[prop::sample::Index], len: usize) -> Vec<usize> {
    let mut c: Vec<usize> = picks.iter().map(|i| i.index(len + 1)).collect();
    c.sort_unstable();
    c
}

fn arb_trailers() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(
        (
            "[a-zA-Z][a-zA-Z0-9-]{0,10}",
            "([a-zA-Z0-9=/.+-]([a-zA-Z0-9 =/.+-]{0,12}[a-zA-Z0-9=/.+-])?)?",
        ),
        0..4,
    )
}

/// Write `fields` and the empty line that ends a head to `wire`; the map they make.
pub(super) fn put_fields(wire: &mut Vec<u8>, fields: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut expected = HeaderMap::new();
    for (n, v) in fields {
        wire.extend_from_slice(n.as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(v);
        wire.extend_from_slice(b"\r\n");
        expected.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    wire.extend_from_slice(b"\r\n");
    expected
}

/// A header value: visible ASCII with inner spaces, tabs and obs-text, never whitespace at
/// the ends (which is not part of a value).
pub(super) fn arb_value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            8 => 0x21u8..0x7f,
            1 => Just(b' '),
            1 => Just(b'\t'),
            1 => 0x80u8..=0xff,
        ],
        0..20,
    )
    .prop_map(|mut v| {
        while v.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            v.remove(0);
        }
        while v.last().is_some_and(|b| *b == b' ' || *b == b'\t') {
            v.pop();
        }
        v
    })
}

/// A response head: status, HTTP/1.0 or 1.1, a reason, fields (names in any case, values
/// with inner spaces, tabs and obs-text, never whitespace at the ends).
fn arb_head() -> impl Strategy<Value = (u16, bool, String, Vec<(String, Vec<u8>)>)> {
    let value = arb_value();
    (
        100u16..1000,
        any::<bool>(),
        "[a-zA-Z0-9 ]{0,16}",
        proptest::collection::vec(
            (
                prop_oneof![
                    "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}",
                    Just("Set-Cookie".to_owned()),
                    Just("set-cookie".to_owned()),
                    Just("Connection".to_owned()),
                ],
                value,
            ),
            0..12,
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A chunk-encoded body (chunks of any sizes, trailers or not) decodes to the same bytes
    /// and trailers from any split of the wire, and leaves what follows it.
    #[test]
    fn chunked_round_trip(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
        header_only in proptest::collection::vec(any::<bool>(), 8),
        trailers in proptest::option::of(arb_trailers()),
        next in proptest::collection::vec(any::<u8>(), 0..16),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut wire = BytesMut::new();
        let mut data = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            data.extend_from_slice(c);
            if header_only[i] && !c.is_empty() {
                encode_chunk_header(c.len(), &mut wire);
                wire.put_slice(c);
                wire.put_slice(b"\r\n");
            } else {
                encode_chunk(c, &mut wire);
            }
        }
        let trailers = trailers.map(|t| {
            let mut m = HeaderMap::new();
            for (n, v) in t {
                m.append(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(&v).unwrap(),
                );
            }
            m
        });
        encode_chunked_end(trailers.as_ref(), &mut wire);
        let body_len = wire.len();
        wire.put_slice(&next);
        let cut = cuts(&picks, wire.len());
        let got = decode_pieces(Framing::Chunked, &wire, &cut, 100).unwrap();
        prop_assert_eq!(&got.data, &data);
        // An empty trailer section is the plain end.
        prop_assert_eq!(got.trailers, trailers.filter(|t| !t.is_empty()));
        prop_assert_eq!(&got.left[..], &wire[body_len..]);
        // Any proper prefix of the body is cut short.
        let short = cut.first().copied().unwrap_or(0).min(body_len.saturating_sub(1));
        prop_assert_eq!(
            decode_pieces(Framing::Chunked, &wire[..short], &cut, 100),
            Err(ParseError::Incomplete)
        );
    }

    /// A content-length body decodes from any split and leaves what follows it; cut short, it
    /// is incomplete.
    #[test]
    fn length_round_trip(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        next in proptest::collection::vec(any::<u8>(), 0..16),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        short in any::<prop::sample::Index>(),
    ) {
        let framing = if data.is_empty() { Framing::Empty } else { Framing::Length(data.len() as u64) };
        let mut wire = data.clone();
        wire.extend_from_slice(&next);
        let cut = cuts(&picks, wire.len());
        let got = decode_pieces(framing, &wire, &cut, 100).unwrap();
        prop_assert_eq!(got, body(&data, &next));
        if !data.is_empty() {
            let n = short.index(data.len());
            prop_assert_eq!(
                decode_pieces(framing, &data[..n], &cut, 100),
                Err(ParseError::Incomplete)
            );
        }
        // Close framing takes everything.
        let got = decode_pieces(Framing::Close, &wire, &cut, 100).unwrap();
        prop_assert_eq!(got, body(&wire, b""));
    }

    /// A serialized response head parses back, fed in any split: same status, version and
    /// fields (names lower-cased, values byte for byte, in order), and the bytes after it stay.
    #[test]
    fn response_head_round_trip(
        (status, http11, reason, fields) in arb_head(),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut wire = format!("HTTP/1.{} {status} {reason}\r\n", u8::from(http11)).into_bytes();
        let expected = put_fields(&mut wire, &fields);
        let head_len = wire.len();
        wire.extend_from_slice(&tail);

        let mut buf = BytesMut::new();
        let mut at = 0;
        let mut parsed = None;
        for end in cuts(&picks, wire.len()).into_iter().chain([wire.len()]) {
            let end = end.max(at);
            buf.extend_from_slice(&wire[at..end]);
            at = end;
            let before = buf.len();
            match parse_response_head(&mut buf, fields.len()).unwrap() {
                Some(h) => {
                    prop_assert!(at >= head_len);
                    prop_assert_eq!(before - buf.len(), head_len);
                    parsed = Some(h);
                    break;
                }
                None => {
                    prop_assert!(at < head_len, "complete at {} of {}", at, head_len);
                    prop_assert_eq!(buf.len(), before);
                }
            }
        }
        let h = parsed.unwrap();
        buf.extend_from_slice(&wire[at..]);
        prop_assert_eq!(&buf[..], &tail[..]);
        prop_assert_eq!(h.status.as_u16(), status);
        prop_assert_eq!(h.version, if http11 { Version::HTTP_11 } else { Version::HTTP_10 });
        prop_assert_eq!(&h.headers, &expected);
        let order = |m: &HeaderMap| -> Vec<(String, Vec<u8>)> {
            m.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect()
        };
        prop_assert_eq!(order(&h.headers), order(&expected));
        prop_assert_eq!(h.keep_alive, keep_alive(h.version, &expected, Seen(u8::MAX)));
        if fields.len() > 1 {
            prop_assert_eq!(
                parse(&wire, fields.len() - 1).unwrap_err(),
                ParseError::TooManyHeaders(fields.len() - 1)
            );
        }
    }

    /// Arbitrary bytes never panic the head parser, which takes no more than it was given and
    /// nothing unless it returns a head.
    #[test]
    fn head_parser_on_arbitrary_bytes(
        prefix in any::<bool>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        max_headers in 0usize..6,
    ) {
        let mut input = if prefix { b"HTTP/1.1 200 OK\r\n".to_vec() } else { Vec::new() };
        input.extend_from_slice(&bytes);
        let mut buf = BytesMut::from(&input[..]);
        match parse_response_head(&mut buf, max_headers) {
            Ok(Some(h)) => {
                prop_assert!(buf.len() < input.len());
                prop_assert_eq!(&buf[..], &input[input.len() - buf.len()..]);
                prop_assert!(h.headers.len() <= max_headers.max(1));
                let _ = response_framing(&Method::GET, &h);
                prop_assert_eq!(response_framing(&Method::HEAD, &h), Ok(Framing::Empty));
            }
            Ok(None) | Err(_) => prop_assert_eq!(&buf[..], &input[..]),
        }
    }

    /// Arbitrary bytes (and bytes made of chunk syntax) never panic a body decoder, whatever
    /// the split; it never hands out more than it was given, and a split decodes as the whole.
    #[test]
    fn body_decoder_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        syntax in proptest::collection::vec(
            proptest::sample::select(b"0123456789abcdefABCDEF;= \t\r\n\r\n\r\nxyz:".to_vec()),
            0..300,
        ),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        length in 0u64..400,
        max_headers in 0usize..4,
    ) {
        for input in [&bytes, &syntax] {
            let cut = cuts(&picks, input.len());
            for framing in [Framing::Chunked, Framing::Length(length), Framing::Close, Framing::Empty] {
                let split = decode_pieces(framing, input, &cut, max_headers);
                let whole = decode_pieces(framing, input, &[], max_headers);
                if let Ok(b) = &split {
                    prop_assert!(b.data.len() + b.left.len() <= input.len());
                    prop_assert_eq!(&b.left[..], &input[input.len() - b.left.len()..]);
                }
                prop_assert_eq!(split.is_ok(), whole.is_ok(), "{:?} {:?}", split, whole);
                if let (Ok(s), Ok(w)) = (&split, &whole) {
                    prop_assert_eq!(s, w);
                }
            }
        }
    }
}

#[test]
fn seen_flags_the_framing_and_connection_fields_in_any_case() {
    for (name, flag) in [
        (&b"te"[..], Seen::TE),
        (b"Expect", Seen::EXPECT),
        (b"UPGRADE", Seen::UPGRADE),
        (b"Connection", Seen::CONNECTION),
        (b"content-LENGTH", Seen::CONTENT_LENGTH),
        (b"Transfer-Encoding", Seen::TRANSFER_ENCODING),
    ] {
        assert!(Seen::of(name).contains(flag), "{name:?}");
    }
    // Same lengths, other names.
    for name in [
        &b"tx"[..],
        b"accept",
        b"referer",
        b"user-agent",
        b"content-md5xx",
    ] {
        assert_eq!(Seen::of(name), Seen::default(), "{name:?}");
    }
    let h = head(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    assert!(h.seen.contains(Seen::CONNECTION) && h.seen.contains(Seen::CONTENT_LENGTH));
    assert!(!h.seen.contains(Seen::TRANSFER_ENCODING) && !h.keep_alive);
}
