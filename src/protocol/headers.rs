//! Header rules shared by the HTTP codecs: hop-by-hop headers, upgrade detection.

use http::{HeaderMap, HeaderValue, header};

/// Headers that describe one connection (RFC 9110 §7.6.1) and must not be forwarded, nor sent
/// at all over HTTP/2.
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

/// Remove every header whose name is in `names` (lowercase). One pass over the map's keys and
/// no hashing unless something is present: cheaper than a `remove` per name on the request
/// path, where these headers are usually absent.
pub fn remove_all(headers: &mut HeaderMap, names: &[&str]) {
    let present: Option<Vec<header::HeaderName>> = {
        let mut found: Option<Vec<header::HeaderName>> = None;
        for k in headers.keys() {
            if names.contains(&k.as_str()) {
                found.get_or_insert_with(Vec::new).push(k.clone());
            }
        }
        found
    };
    for k in present.into_iter().flatten() {
        headers.remove(&k);
    }
}

/// Remove hop-by-hop headers and any header named in `Connection`. `te: trailers` is kept, as
/// gRPC needs it.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        return;
    }
    let named: Vec<header::HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| header::HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if name != header::TE {
            headers.remove(&name);
        }
    }
    let te_trailers = headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    remove_all(headers, &HOP_BY_HOP);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The upgrade token of an HTTP/1.1 upgrade request (`Connection: upgrade` + `Upgrade: x`),
/// lowercased.
pub fn upgrade_type(headers: &HeaderMap) -> Option<String> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if !connection_upgrade {
        return None;
    }
    let up = headers.get(header::UPGRADE)?.to_str().ok()?;
    Some(up.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn remove_all_removes_every_value_of_listed_names_only() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.insert("x-b", HeaderValue::from_static("3"));
        remove_all(&mut h, &["x-a", "x-c"]);
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
