//! Header rules shared by the HTTP codecs: hop-by-hop headers, upgrade detection.

use http::{HeaderMap, HeaderValue, header};

/// Header names tern sets on every request or response, made once: inserting under a `&str`
/// that is not a standard header allocates the name anew each time.
pub mod names {
    use http::HeaderName;

    /// `x-request-id`.
    pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    /// `x-forwarded-for`.
    pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    /// `x-forwarded-proto`.
    pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    /// `x-envoy-internal`.
    pub const X_ENVOY_INTERNAL: HeaderName = HeaderName::from_static("x-envoy-internal");
    /// `x-envoy-external-address`.
    pub const X_ENVOY_EXTERNAL_ADDRESS: HeaderName =
        HeaderName::from_static("x-envoy-external-address");
    /// `x-envoy-expected-rq-timeout-ms`.
    pub const X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
        HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
    /// `x-envoy-attempt-count`.
    pub const X_ENVOY_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
    /// `x-envoy-upstream-service-time`.
    pub const X_ENVOY_UPSTREAM_SERVICE_TIME: HeaderName =
        HeaderName::from_static("x-envoy-upstream-service-time");
    /// `x-envoy-original-path`.
    pub const X_ENVOY_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
    /// `grpc-status`.
    pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
    /// `grpc-message`.
    pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
}

/// A header value for a number, without allocating below 100 (a slice of a static string).
pub fn number_value(n: u64) -> HeaderValue {
    const DIGITS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
    if n >= 100 {
        return HeaderValue::from(n);
    }
    let at = n as usize * 2 + usize::from(n < 10);
    HeaderValue::from_maybe_shared(bytes::Bytes::from_static(&DIGITS[at..n as usize * 2 + 2]))
        .unwrap_or_else(|_| HeaderValue::from(n))
}

/// Headers that describe one connection (RFC 9110 §7.6.1) and must not be forwarded, nor sent
/// at all over HTTP/2 (the text of [`HOP_BY_HOP_NAMES`]).
#[cfg(test)]
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "proxy-authenticate",
];

/// Header names (lowercase) to remove together, with the prefix they all share, found at
/// compile time: a header whose name does not start with it is not compared with each.
pub struct NameSet {
    names: &'static [&'static str],
    prefix: usize,
}

impl NameSet {
    /// The set of `names`.
    pub const fn new(names: &'static [&'static str]) -> NameSet {
        let mut prefix = if names.is_empty() { 0 } else { names[0].len() };
        let mut i = 1;
        while i < names.len() {
            let (a, b) = (names[0].as_bytes(), names[i].as_bytes());
            let mut n = 0;
            while n < prefix && n < b.len() && a[n] == b[n] {
                n += 1;
            }
            prefix = n;
            i += 1;
        }
        NameSet { names, prefix }
    }

    fn contains(&self, name: &str) -> bool {
        let Some(first) = self.names.first() else {
            return false;
        };
        name.as_bytes()
            .starts_with(&first.as_bytes()[..self.prefix])
            && self.names.contains(&name)
    }
}

/// Remove every header whose name is in `set`. One pass over the map's keys and no hashing
/// unless something is present: cheaper than a `remove` per name on the request path, where
/// these headers are usually absent.
pub fn remove_all(headers: &mut HeaderMap, set: &NameSet) {
    remove_matching(headers, |k| set.contains(k.as_str()));
}

/// Remove every header whose name satisfies `pred`: one pass over the keys, then one removal
/// per distinct name found (no allocation for up to eight).
fn remove_matching(headers: &mut HeaderMap, pred: impl Fn(&header::HeaderName) -> bool) {
    let mut found: [Option<header::HeaderName>; 8] = Default::default();
    let mut more: Vec<header::HeaderName> = Vec::new();
    let mut n = 0;
    for k in headers.keys() {
        if pred(k) {
            if n < found.len() {
                found[n] = Some(k.clone());
                n += 1;
            } else {
                more.push(k.clone());
            }
        }
    }
    for k in found.into_iter().flatten().chain(more) {
        headers.remove(&k);
    }
}

/// The headers that describe one connection (RFC 9110 §7.6.1) and must not be forwarded, nor
/// sent at all over HTTP/2. Standard names compare as enum values, the last two by text.
const HOP_BY_HOP_NAMES: [header::HeaderName; 8] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::PROXY_AUTHENTICATE,
    header::HeaderName::from_static("keep-alive"),
    header::HeaderName::from_static("proxy-connection"),
];
const CONNECTION_BIT: u8 = 1;
const TE_BIT: u8 = 1 << 3;

/// `k`'s bit in a set of [`HOP_BY_HOP_NAMES`], 0 when it is not one of them.
fn hop_by_hop_bit(k: &header::HeaderName) -> u8 {
    HOP_BY_HOP_NAMES
        .iter()
        .position(|h| h == k)
        .map_or(0, |i| 1 << i)
}

#[cfg(test)]
fn is_hop_by_hop(k: &header::HeaderName) -> bool {
    hop_by_hop_bit(k) != 0
}

/// Remove hop-by-hop headers and any header named in `Connection`. `te: trailers` is kept, as
/// gRPC needs it. One pass finds which are present; most messages carry none, or only
/// `connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let present = headers.keys().fold(0u8, |set, k| set | hop_by_hop_bit(k));
    if present == 0 {
        return;
    }
    // Headers the Connection header names; the usual tokens (close, keep-alive, upgrade, te)
    // name nothing more to remove, or are removed below anyway.
    let named: Vec<header::HeaderName> = if present & CONNECTION_BIT != 0 {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| {
                !["close", "keep-alive", "upgrade", "te", ""]
                    .iter()
                    .any(|u| t.eq_ignore_ascii_case(u))
            })
            .filter_map(|t| header::HeaderName::from_bytes(t.as_bytes()).ok())
            .collect()
    } else {
        Vec::new()
    };
    for name in named {
        headers.remove(&name);
    }
    let te_trailers = present & TE_BIT != 0 && has_token(headers, &header::TE, "trailers");
    for (i, name) in HOP_BY_HOP_NAMES.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Whether a field `name` (all its lines) lists `token` in its comma-separated value,
/// case-insensitively (`connection: close`, `te: trailers`...).
pub fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The upgrade token of an HTTP/1.1 upgrade request (`Connection: upgrade` + `Upgrade: x`),
/// lowercased.
pub fn upgrade_type(headers: &HeaderMap) -> Option<String> {
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return None;
    }
    let up = headers.get(header::UPGRADE)?.to_str().ok()?;
    Some(up.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_names_are_the_list() {
        for n in HOP_BY_HOP {
            assert!(is_hop_by_hop(&http::HeaderName::from_static(n)), "{n}");
        }
        for n in [
            "x-keep",
            "host",
            "content-length",
            "keep-alive-x",
            "trailers",
        ] {
            assert!(!is_hop_by_hop(&http::HeaderName::from_static(n)), "{n}");
        }
        let mut h = HeaderMap::new();
        for (i, n) in HOP_BY_HOP.iter().enumerate() {
            h.append(*n, HeaderValue::from(i));
        }
        for i in 0..12 {
            h.insert(
                http::HeaderName::try_from(format!("x-{i}")).unwrap(),
                HeaderValue::from(i),
            );
        }
        h.append("connection", HeaderValue::from_static("x-3, close"));
        strip_hop_by_hop(&mut h);
        assert!(h.keys().all(|k| !is_hop_by_hop(k)));
        assert!(!h.contains_key("x-3"));
        assert_eq!(h.keys_len(), 11);
    }

    #[test]
    fn number_values_match_their_decimal_text() {
        for n in (0..=1000).chain([12_345, u64::MAX]) {
            assert_eq!(number_value(n).to_str().unwrap(), n.to_string(), "{n}");
        }
    }

    #[test]
    fn static_names_are_lowercase_and_valid() {
        for n in [
            names::X_REQUEST_ID,
            names::X_FORWARDED_FOR,
            names::X_FORWARDED_PROTO,
            names::X_ENVOY_INTERNAL,
            names::X_ENVOY_EXTERNAL_ADDRESS,
            names::X_ENVOY_EXPECTED_RQ_TIMEOUT_MS,
            names::X_ENVOY_ATTEMPT_COUNT,
            names::X_ENVOY_UPSTREAM_SERVICE_TIME,
            names::X_ENVOY_ORIGINAL_PATH,
            names::GRPC_STATUS,
            names::GRPC_MESSAGE,
        ] {
            assert_eq!(
                http::HeaderName::from_bytes(n.as_str().as_bytes()).unwrap(),
                n
            );
        }
    }

    #[test]
    fn strips_connection_named_headers_but_keeps_te_trailers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-foo"));
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers, deflate"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-foo").is_none() && h.get("connection").is_none());
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert!(h.get("x-keep").is_some());
    }

    #[test]
    fn name_sets_compare_only_names_with_their_prefix() {
        const ENVOY: NameSet = NameSet::new(&["x-envoy-a", "x-envoy-bb", "x-envoy-"]);
        assert_eq!(ENVOY.prefix, "x-envoy-".len());
        assert_eq!(NameSet::new(&["x-a", "y-a"]).prefix, 0);
        assert_eq!(NameSet::new(&["only"]).prefix, 4);
        assert_eq!(NameSet::new(&[]).prefix, 0);
        assert!(!NameSet::new(&[]).contains("x"));
        let mut h = HeaderMap::new();
        h.insert("x-envoy-a", HeaderValue::from_static("1"));
        h.insert("x-envoy-b", HeaderValue::from_static("2"));
        h.insert("x-envoyz", HeaderValue::from_static("3"));
        remove_all(&mut h, &NameSet::new(&["x-envoy-a", "x-envoyz"]));
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-envoy-b"));
    }

    #[test]
    fn remove_all_removes_every_value_of_listed_names_only() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.insert("x-b", HeaderValue::from_static("3"));
        remove_all(&mut h, &NameSet::new(&["x-a", "x-c"]));
        assert!(h.get("x-a").is_none());
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn detects_upgrades() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("WebSocket"));
        assert_eq!(upgrade_type(&h).as_deref(), Some("websocket"));
        h.remove("connection");
        assert_eq!(upgrade_type(&h), None);
    }
}
