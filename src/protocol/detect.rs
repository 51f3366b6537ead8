//! Protocol detection from the first bytes of a connection.

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a plaintext connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// The bytes so far are a prefix of the HTTP/2 preface: more are needed.
    NeedMore,
    /// HTTP/2 with prior knowledge.
    Http2,
    /// Anything else: treated as HTTP/1.x by the HTTP codec.
    Http1,
}

/// Classify the first bytes of a connection, as `codec_type: AUTO` does.
pub fn detect_http(prefix: &[u8]) -> Detected {
    let n = prefix.len().min(H2_PREFACE.len());
    if prefix[..n] != H2_PREFACE[..n] {
        Detected::Http1
    } else if n == H2_PREFACE.len() {
        Detected::Http2
    } else {
        Detected::NeedMore
    }
}

/// What the HTTP inspector (`envoy.filters.listener.http_inspector`) makes of the first bytes
/// of a plaintext connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpProtocol {
    /// Undecided: the bytes so far are a prefix of the HTTP/2 preface or of a request line.
    NeedMore,
    /// A request line ending in `HTTP/1.0`, or in any version other than 1.1 (as Envoy).
    Http10,
    /// A request line ending in `HTTP/1.1`.
    Http11,
    /// The HTTP/2 connection preface (prior knowledge, h2c).
    Http2,
    /// Not HTTP.
    NotHttp,
}

impl HttpProtocol {
    /// The application protocol the inspector sets for filter chain matching.
    pub fn alpn(self) -> Option<&'static str> {
        match self {
            Self::Http10 => Some("http/1.0"),
            Self::Http11 => Some("http/1.1"),
            Self::Http2 => Some("h2c"),
            Self::NeedMore | Self::NotHttp => None,
        }
    }
}

/// `tchar` (RFC 9110 §5.6.2): the characters of a method.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Classify the first bytes of a plaintext connection: the HTTP/2 preface, or an HTTP/1
/// request line (`method SP request-target SP HTTP/x.y`, ended by LF or CRLF) whose version
/// decides between HTTP/1.1 and HTTP/1.0. Only the request line is read; a partial line that
/// can still become valid is `NeedMore`, anything else `NotHttp`.
pub fn inspect_http(prefix: &[u8]) -> HttpProtocol {
    HttpInspect::default().scan(prefix)
}

/// Where in the request line, with the length of the current field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Line {
    #[default]
    Method,
    Target,
    Version(usize),
    Cr,
}

/// `inspect_http` over bytes that arrive a few at a time: each call scans only the bytes it
/// has not seen, so a client that trickles its request line costs linear time in total.
#[derive(Debug, Clone, Default)]
pub struct HttpInspect {
    line: Line,
    /// Bytes of the request line scanned so far.
    scanned: usize,
    /// Length of the current field (method or target).
    field: usize,
    /// Where the version starts.
    version_at: usize,
}

impl HttpInspect {
    /// Classify `prefix`, which must extend the bytes given to earlier calls.
    pub fn scan(&mut self, prefix: &[u8]) -> HttpProtocol {
        match detect_http(prefix) {
            Detected::Http2 => return HttpProtocol::Http2,
            Detected::NeedMore => return HttpProtocol::NeedMore,
            Detected::Http1 => {}
        }
        const VERSION: &[u8] = b"HTTP/d.d";
        let start = self.scanned.min(prefix.len());
        for (i, &b) in prefix.iter().enumerate().skip(start) {
            self.scanned = i + 1;
            self.line = match (self.line, b) {
                (Line::Method, b' ') if self.field > 0 => {
                    self.field = 0;
                    Line::Target
                }
                (Line::Target, b' ') if self.field > 0 => {
                    self.version_at = i + 1;
                    Line::Version(0)
                }
                (Line::Method, b) if is_tchar(b) => {
                    self.field += 1;
                    Line::Method
                }
                (Line::Target, b) if b > b' ' && b != 0x7f => {
                    self.field += 1;
                    Line::Target
                }
                (Line::Version(8), b'\r') => Line::Cr,
                (Line::Version(8), b'\n') | (Line::Cr, b'\n') => {
                    let minor = self.version_at + 5..self.version_at + 8;
                    return if prefix.get(minor) == Some(b"1.1") {
                        HttpProtocol::Http11
                    } else {
                        HttpProtocol::Http10
                    };
                }
                (Line::Version(n), b)
                    if VERSION.get(n).is_some_and(|&c| match c {
                        b'd' => b.is_ascii_digit(),
                        c => b == c,
                    }) =>
                {
                    Line::Version(n + 1)
                }
                _ => return HttpProtocol::NotHttp,
            };
        }
        HttpProtocol::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn preface_and_http1() {
        assert_eq!(
            detect_http(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nxyz"),
            Detected::Http2
        );
        assert_eq!(detect_http(b"PRI * HT"), Detected::NeedMore);
        assert_eq!(detect_http(b""), Detected::NeedMore);
        assert_eq!(detect_http(b"GET / HTTP/1.1\r\n"), Detected::Http1);
    }

    #[test]
    fn preface_detection() {
        assert_eq!(H2_PREFACE, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(detect_http(b""), Detected::NeedMore);
        for n in 1..H2_PREFACE.len() {
            assert_eq!(detect_http(&H2_PREFACE[..n]), Detected::NeedMore, "{n}");
        }
        assert_eq!(detect_http(H2_PREFACE), Detected::Http2);
        let mut more = H2_PREFACE.to_vec();
        more.extend_from_slice(b"\x00\x00\x12\x04\x00");
        assert_eq!(detect_http(&more), Detected::Http2);
        for http1 in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"G",
            b"PRI * HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSX",
            b"pri",
            b"\x16\x03\x01",
        ] {
            assert_eq!(
                detect_http(http1),
                Detected::Http1,
                "{:?}",
                String::from_utf8_lossy(http1)
            );
        }
    }

    #[test]
    fn request_lines() {
        use HttpProtocol::*;
        for (bytes, want) in [
            (&b"GET / HTTP/1.1\r\n"[..], Http11),
            (b"GET / HTTP/1.1\n", Http11),
            (b"POST /a?b=c HTTP/1.0\r\nHost: x\r\n\r\n", Http10),
            (b"get / HTTP/1.1\r\n", Http11),
            (b"FOO * HTTP/1.1\r\n", Http11),
            // Other versions count as HTTP/1.0, as in Envoy.
            (b"GET / HTTP/2.0\r\n", Http10),
            (b"GET / HTTP/0.9\r\n", Http10),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Http2),
            (b"PRI * HTTP/2.0\r\n", NeedMore),
            (b"", NeedMore),
            (b"GET / HTTP/1.1", NeedMore),
            (b"GET / HTTP/1.1\r", NeedMore),
            (b"GET /", NeedMore),
            (b"GET / HTTP/1.", NeedMore),
            (b"GET /a b HTTP/1.1\r\n", NotHttp),
            (b"GET  HTTP/1.1\r\n", NotHttp),
            (b"GET / http/1.1\r\n", NotHttp),
            (b"GET / HTTP/1.1 \r\n", NotHttp),
            (b"GET / HTTP/11\r\n", NotHttp),
            (b"GET / HTTP/1.1\rx", NotHttp),
            (b"GET /\r\n", NotHttp),
            (b" GET / HTTP/1.1\r\n", NotHttp),
            (b"\r\nGET / HTTP/1.1\r\n", NotHttp),
            (b"\x16\x03\x01\x00\x05", NotHttp),
            (b"hello world", NeedMore),
            (b"hello world\n", NotHttp),
        ] {
            assert_eq!(
                inspect_http(bytes),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert_eq!(Http2.alpn(), Some("h2c"));
        assert_eq!(Http10.alpn(), Some("http/1.0"));
        assert_eq!(NotHttp.alpn(), None);
    }

    proptest! {
        /// Arbitrary bytes never panic; a decided answer stays decided as bytes are added.
        #[test]
        fn inspect_is_prefix_stable(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            more in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let d = inspect_http(&bytes);
            let mut longer = bytes.clone();
            longer.extend_from_slice(&more);
            if d != HttpProtocol::NeedMore {
                prop_assert_eq!(inspect_http(&longer), d);
            }
        }

        /// Scanning in steps gives the answer a single scan gives.
        #[test]
        fn stepwise_scan_matches_whole(
            bytes in proptest::collection::vec(
                prop::sample::select(b"GET /x HTTP/1.0\r\n PRI*2".to_vec()), 0..40),
            steps in proptest::collection::vec(1usize..6, 1..40),
        ) {
            let whole = inspect_http(&bytes);
            let mut s = HttpInspect::default();
            let mut have = 0;
            let mut last = HttpProtocol::NeedMore;
            for step in steps.into_iter().chain(std::iter::repeat(1)) {
                last = s.scan(&bytes[..have]);
                if last != HttpProtocol::NeedMore || have == bytes.len() {
                    break;
                }
                have = (have + step).min(bytes.len());
            }
            if last != HttpProtocol::NeedMore {
                prop_assert_eq!(last, whole);
            } else {
                prop_assert_eq!(s.scan(&bytes), whole);
            }
        }

        /// A request line split anywhere is undecided until its line end arrives.
        #[test]
        fn any_split_of_a_request_line(
            method in "[A-Z]{1,10}",
            path in "/[!-~]{0,40}",
            minor in 0u8..2,
            cut in any::<prop::sample::Index>(),
        ) {
            let line = format!("{method} {path} HTTP/1.{minor}\r\n");
            let want = if minor == 1 { HttpProtocol::Http11 } else { HttpProtocol::Http10 };
            prop_assert_eq!(inspect_http(line.as_bytes()), want);
            let cut = cut.index(line.len());
            prop_assert_eq!(inspect_http(&line.as_bytes()[..cut]), HttpProtocol::NeedMore);
        }

        #[test]
        fn never_panics_and_is_prefix_consistent(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let d = detect_http(&bytes);
            if d == Detected::Http2 { prop_assert!(bytes.starts_with(H2_PREFACE)); }
            if d == Detected::NeedMore { prop_assert!(H2_PREFACE.starts_with(&bytes)); }
        }

        /// Arbitrary bytes never panic the preface check, which agrees with a plain prefix test.
        #[test]
        fn preface_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            from_preface in 0usize..=24,
        ) {
            let mut input = H2_PREFACE[..from_preface].to_vec();
            input.extend_from_slice(&bytes);
            let expected = if input.starts_with(H2_PREFACE) {
                Detected::Http2
            } else if H2_PREFACE.starts_with(&input) {
                Detected::NeedMore
            } else {
                Detected::Http1
            };
            prop_assert_eq!(detect_http(&input), expected);
        }
    }
}
