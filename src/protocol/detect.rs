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
    match detect_http(prefix) {
        Detected::Http2 => return HttpProtocol::Http2,
        Detected::NeedMore => return HttpProtocol::NeedMore,
        Detected::Http1 => {}
    }
    /// Where in the request line, with the length of the current field.
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Method(usize),
        Target(usize),
        Version(usize),
        Cr,
    }
    const VERSION: &[u8] = b"HTTP/d.d";
    let mut state = State::Method(0);
    let mut version_at = 0;
    for (i, &b) in prefix.iter().enumerate() {
        state = match (state, b) {
            (State::Method(n), b' ') if n > 0 => State::Target(0),
            (State::Method(n), b) if is_tchar(b) => State::Method(n + 1),
            (State::Target(n), b' ') if n > 0 => {
                version_at = i + 1;
                State::Version(0)
            }
            (State::Target(n), b) if b > b' ' && b != 0x7f => State::Target(n + 1),
            (State::Version(8), b'\r') => State::Cr,
            (State::Version(8), b'\n') | (State::Cr, b'\n') => {
                return if prefix.get(version_at + 5..version_at + 8) == Some(b"1.1") {
                    HttpProtocol::Http11
                } else {
                    HttpProtocol::Http10
                };
            }
            (State::Version(n), b)
                if VERSION.get(n).is_some_and(|&c| match c {
                    b'd' => b.is_ascii_digit(),
                    c => b == c,
                }) =>
            {
                State::Version(n + 1)
            }
            _ => return HttpProtocol::NotHttp,
        };
    }
    HttpProtocol::NeedMore
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
    }
}
