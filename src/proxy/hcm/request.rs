//! Downstream request header processing done by the connection manager before routing:
//! authority and port stripping, path normalization, `x-forwarded-*`, `x-request-id`.

use crate::filters::HcmConfig;
use crate::protocol::headers::names;
use http::{HeaderMap, HeaderValue};
use std::net::{IpAddr, SocketAddr};

/// The authority of a request: `:authority` (HTTP/2 or absolute-form) or `Host`.
pub fn authority(uri: &http::Uri, headers: &HeaderMap) -> Option<String> {
    if let Some(a) = uri.authority() {
        return Some(a.as_str().to_owned());
    }
    headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Split `host:port` (IPv6 literals in brackets) into the host part and the port.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find("]:") {
            Some(i) => (&authority[..=i], Some(&authority[i + 2..])),
            None => (authority, None),
        };
    }
    match authority.rfind(':') {
        Some(i) if authority[..i].find(':').is_none() => {
            (&authority[..i], Some(&authority[i + 1..]))
        }
        _ => (authority, None),
    }
}

/// `strip_matching_host_port` / `strip_any_host_port`.
pub fn strip_port(authority: &str, cfg: &HcmConfig, listener_port: Option<u16>) -> Option<String> {
    let (host, port) = split_port(authority);
    let port = port?;
    let strip = cfg.strip_any_host_port
        || (cfg.strip_matching_host_port
            && listener_port.is_some_and(|l| port.parse::<u16>().ok() == Some(l)));
    strip.then(|| host.to_owned())
}

/// RFC 3986 §5.2.4 dot-segment removal on the path (the query is kept as is), and
/// `merge_slashes`. `None` when the path cannot be normalized (it escapes the root).
pub fn normalize_path(
    path_and_query: &str,
    normalize: bool,
    merge_slashes: bool,
) -> Option<String> {
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    let mut out: Vec<&str> = Vec::new();
    let mut segments = path.split('/').skip(1).peekable();
    let mut trailing_slash = false;
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "." if normalize => trailing_slash = last,
            ".." if normalize => {
                out.pop()?;
                trailing_slash = last;
            }
            "" if merge_slashes && !last => {}
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut p = String::with_capacity(path_and_query.len());
    for s in &out {
        p.push('/');
        p.push_str(s);
    }
    if trailing_slash || p.is_empty() {
        p.push('/');
    }
    p.push_str(query);
    Some(p)
}

/// Whether a peer is internal by `internal_address_config` (nothing is, when it is unset).
fn is_internal(cfg: &HcmConfig, remote: Option<SocketAddr>) -> bool {
    match remote {
        Some(r) => cfg.internal_addresses.iter().any(|c| c.contains(r.ip())),
        None => cfg.internal_unix_sockets,
    }
}

static LOCAL_ADDRESS_V6: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--local-address-ip-version`: which family the host's own address is taken from.
pub fn set_local_address_ipv6(v6: bool) {
    LOCAL_ADDRESS_V6.store(v6, std::sync::atomic::Ordering::Relaxed);
}

/// The host's own address, which Envoy appends to `x-forwarded-for` in place of a loopback
/// peer: the first non-loopback address of an interface in the family chosen by
/// `--local-address-ip-version` (else any, else loopback).
fn local_address() -> IpAddr {
    static LOCAL: std::sync::OnceLock<IpAddr> = std::sync::OnceLock::new();
    *LOCAL.get_or_init(|| {
        let v6 = LOCAL_ADDRESS_V6.load(std::sync::atomic::Ordering::Relaxed);
        let addrs: Vec<IpAddr> = if_addrs::get_if_addrs()
            .map(|v| {
                v.into_iter()
                    .map(|i| i.ip())
                    .filter(|ip| !ip.is_loopback())
                    .collect()
            })
            .unwrap_or_default();
        addrs
            .iter()
            .find(|ip| ip.is_ipv6() == v6)
            .or(addrs.first())
            .copied()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
    })
}

/// Request headers Envoy removes from an edge (external, `use_remote_address`) request
/// (`ConnectionManagerUtility::cleanInternalHeaders`).
const EDGE_CLEANED: crate::protocol::headers::NameSet = crate::protocol::headers::NameSet::new(&[
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-original-path",
    "x-envoy-ip-tags",
    "x-envoy-force-trace",
    "x-envoy-internal",
    "x-envoy-external-address",
]);

/// `x-forwarded-for`, `x-forwarded-proto`, `x-envoy-internal`, `x-envoy-external-address` as
/// Envoy's connection manager sets them. Returns the trusted client address.
pub fn forwarded_headers(
    headers: &mut HeaderMap,
    cfg: &HcmConfig,
    remote: Option<SocketAddr>,
    scheme: &str,
) -> Option<IpAddr> {
    let proto = HeaderValue::from_static(if scheme == "https" { "https" } else { "http" });
    if !cfg.use_remote_address {
        if !headers.contains_key(names::X_FORWARDED_PROTO) {
            headers.insert(names::X_FORWARDED_PROTO, proto);
        }
        if headers.contains_key(names::X_FORWARDED_FOR) {
            let xff = xff_addresses(headers);
            let n = cfg.xff_num_trusted_hops as usize + 1;
            return xff.len().checked_sub(n).and_then(|i| xff.get(i).copied());
        }
        return None;
    }
    let had_xff = headers.contains_key(names::X_FORWARDED_FOR);
    let trusted = if cfg.xff_num_trusted_hops == 0 || !had_xff {
        remote.map(|r| r.ip())
    } else {
        let xff = xff_addresses(headers);
        let n = cfg.xff_num_trusted_hops as usize;
        xff.len()
            .checked_sub(n)
            .and_then(|i| xff.get(i).copied())
            .or(remote.map(|r| r.ip()))
    };
    if !cfg.skip_xff_append
        && let Some(r) = remote
    {
        let ip = if r.ip().is_loopback() {
            local_address()
        } else {
            r.ip()
        };
        let joined = match headers
            .get(names::X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) => format!("{prev},{ip}"),
            None => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&joined) {
            headers.insert(names::X_FORWARDED_FOR, v);
        }
    }
    headers.insert(names::X_FORWARDED_PROTO, proto);
    let internal = !had_xff && is_internal(cfg, remote);
    if internal {
        headers.insert(names::X_ENVOY_INTERNAL, HeaderValue::from_static("true"));
    } else {
        crate::protocol::headers::remove_all(headers, &EDGE_CLEANED);
        if let Some(ip) = trusted
            && let Ok(v) = HeaderValue::from_str(&ip.to_string())
        {
            headers.insert(names::X_ENVOY_EXTERNAL_ADDRESS, v);
        }
    }
    trusted
}

fn xff_addresses(headers: &HeaderMap) -> Vec<IpAddr> {
    headers
        .get_all(names::X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// A random version-4 UUID, as Envoy generates `x-request-id`.
pub fn uuid4() -> HeaderValue {
    HeaderValue::from_bytes(&crate::stream_info::uuid4())
        .expect("hex digits and dashes are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(
            normalize_path("/a/./b/../c?x=/../", true, false).as_deref(),
            Some("/a/c?x=/../")
        );
        assert_eq!(
            normalize_path("/a//b///c", false, true).as_deref(),
            Some("/a/b/c")
        );
        assert_eq!(
            normalize_path("/a/b/..", true, false).as_deref(),
            Some("/a/")
        );
        assert_eq!(normalize_path("/..", true, false), None);
        assert_eq!(normalize_path("/", true, true).as_deref(), Some("/"));
        assert_eq!(normalize_path("/a/", true, true).as_deref(), Some("/a/"));
    }

    #[test]
    fn ports_split() {
        assert_eq!(split_port("a.com:80"), ("a.com", Some("80")));
        assert_eq!(split_port("[::1]:80"), ("[::1]", Some("80")));
        assert_eq!(split_port("[::1]"), ("[::1]", None));
        assert_eq!(split_port("a.com"), ("a.com", None));
    }

    #[test]
    fn uuid_shape() {
        let u = uuid4();
        let s = u.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
        for (i, c) in s.char_indices() {
            if matches!(i, 8 | 13 | 18 | 23) {
                assert_eq!(c, '-', "{s}");
            } else {
                assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{s}");
            }
        }
        assert_ne!(s, uuid4().to_str().unwrap());
    }

    proptest! {
        #[test]
        fn normalize_never_panics_and_starts_with_slash(p in "/[a-z./]{0,40}(\\?[a-z./]{0,10})?") {
            if let Some(n) = normalize_path(&p, true, true) {
                prop_assert!(n.starts_with('/'));
                let path = n.split('?').next().unwrap_or("");
                prop_assert!(!path.split('/').any(|s| s == ".." || s == "."));
            }
        }
    }
}
