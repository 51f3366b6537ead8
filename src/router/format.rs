//! Header value formatters: `HeaderValueOption.header.value` with `%COMMAND%` substitutions.
//! The parser and the operators are `crate::format`'s (the same as access logs); this is what
//! a request knows before it goes upstream.

use crate::format::Source;
use std::net::SocketAddr;
use std::time::SystemTime;

pub use crate::format::Formatter;

/// What a header formatter may read about the stream.
#[derive(Debug, Clone, Copy)]
pub struct FormatContext<'a> {
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`.
    pub downstream_remote: Option<SocketAddr>,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`, `%DOWNSTREAM_LOCAL_PORT%`.
    pub downstream_local: Option<SocketAddr>,
    /// `%UPSTREAM_REMOTE_ADDRESS%` as rendered by the caller (`1.2.3.4:80`).
    pub upstream_remote: Option<&'a str>,
    /// `%UPSTREAM_CLUSTER%`.
    pub upstream_cluster: Option<&'a str>,
    /// `%START_TIME%`.
    pub start_time: SystemTime,
    /// `%PROTOCOL%`: `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'a str,
    /// `%REQ(name)%` reads these (for response headers: the request's headers).
    pub request_headers: Option<&'a http::HeaderMap>,
    /// `%HOSTNAME%`.
    pub hostname: &'a str,
}

impl Source for FormatContext<'_> {
    fn start_time(&self) -> SystemTime {
        self.start_time
    }
    fn protocol(&self) -> Option<&str> {
        Some(self.protocol).filter(|p| !p.is_empty())
    }
    fn hostname(&self) -> &str {
        self.hostname
    }
    fn downstream_local(&self) -> Option<SocketAddr> {
        self.downstream_local
    }
    fn downstream_remote(&self) -> Option<SocketAddr> {
        self.downstream_remote
    }
    fn upstream_host(&self) -> Option<&str> {
        self.upstream_remote
    }
    fn upstream_cluster(&self) -> Option<&str> {
        self.upstream_cluster
    }
    fn request_headers(&self) -> Option<&http::HeaderMap> {
        self.request_headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn ctx(headers: &http::HeaderMap) -> FormatContext<'_> {
        FormatContext {
            downstream_remote: Some("10.0.0.1:5555".parse().unwrap()),
            downstream_local: Some("[::1]:8080".parse().unwrap()),
            upstream_remote: Some("10.1.1.1:80"),
            upstream_cluster: Some("outbound|80||svc"),
            start_time: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            protocol: "HTTP/1.1",
            request_headers: Some(headers),
            hostname: "pod-1",
        }
    }

    #[test]
    fn renders_every_command() {
        let mut h = http::HeaderMap::new();
        h.insert("x-a", "A".parse().unwrap());
        h.insert("x-b", "Bvalue".parse().unwrap());
        let c = ctx(&h);
        let r = |f: &str| Formatter::parse(f).unwrap().render(&c);
        assert_eq!(r("%DOWNSTREAM_REMOTE_ADDRESS%"), "10.0.0.1:5555");
        assert_eq!(r("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"), "10.0.0.1");
        assert_eq!(r("%DOWNSTREAM_LOCAL_ADDRESS%"), "[::1]:8080");
        assert_eq!(r("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%"), "::1");
        assert_eq!(r("%DOWNSTREAM_LOCAL_PORT%"), "8080");
        assert_eq!(r("%UPSTREAM_REMOTE_ADDRESS%"), "10.1.1.1:80");
        assert_eq!(r("c=%UPSTREAM_CLUSTER%!"), "c=outbound|80||svc!");
        assert_eq!(r("%PROTOCOL%"), "HTTP/1.1");
        assert_eq!(r("%HOSTNAME%"), "pod-1");
        assert_eq!(r("%REQ(X-A)%"), "A");
        assert_eq!(r("%REQ(x-missing?x-b)%"), "Bvalue");
        assert_eq!(r("%REQ(x-b):3%"), "Bva");
        assert_eq!(r("%REQ(x-missing)%"), "");
        assert_eq!(r("100%% sure"), "100% sure");
        assert_eq!(r("%START_TIME%"), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            r("%START_TIME(%Y/%m/%d %H:%M:%S %s.%3f %6f %9f %z %E6S)%"),
            "2023/11/14 22:13:20 1700000000.123 123456 123456789 +0000 20.123456"
        );
        assert_eq!(Formatter::parse("plain").unwrap().literal(), Some("plain"));
        assert_eq!(Formatter::parse("%PROTOCOL%").unwrap().literal(), None);
    }

    #[test]
    fn rejects_bad_formats() {
        for f in [
            "%UNKNOWN%",
            "%PROTOCOL",
            "50%",
            "%REQ()%",
            "%REQ(a b)%",
            "%START_TIME(x",
            "%REQ(a?b?c)%",
            "%RESPONSE_CODE:3%",
            "%lower%",
        ] {
            assert!(Formatter::parse(f).is_err(), "{f}");
        }
        assert!(Formatter::parse("%PROTOCOL(x)%").is_err());
    }
}
