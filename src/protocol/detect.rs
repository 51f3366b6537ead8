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

    proptest! {
        #[test]
        fn never_panics_and_is_prefix_consistent(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let d = detect_http(&bytes);
            if d == Detected::Http2 { prop_assert!(bytes.starts_with(H2_PREFACE)); }
            if d == Detected::NeedMore { prop_assert!(H2_PREFACE.starts_with(&bytes)); }
        }
    }
}
