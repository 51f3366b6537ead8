//! Envoy's substitution format strings: text with `%COMMAND%` operators (`%RESPONSE_CODE%`,
//! `%REQ(x-request-id):8%`, `%START_TIME(%s.%3f)%`), parsed once when configuration arrives
//! and rendered per stream. Header mutations (`router`) render them from the little a request
//! knows before it goes upstream; access logs render them, as text or JSON, from the whole
//! [`StreamInfo`] when the stream ends.
//!
//! Depends on `config` (errors) and `stream_info` only.

pub mod command;
pub mod json;
mod time;

#[cfg(test)]
mod tests;

pub use command::{Command, ParseOptions, Written};
pub use json::JsonFormat;

use crate::config::ConfigError;
use crate::stream_info::{Needs, StreamInfo};
use http::HeaderMap;
use std::net::SocketAddr;
use std::time::SystemTime;

/// What a format reads. A header formatter has only a few of these before the request goes
/// upstream; an access log has the whole record ([`Source::info`]).
pub trait Source {
    /// `%START_TIME%`.
    fn start_time(&self) -> SystemTime;
    /// `%PROTOCOL%`.
    fn protocol(&self) -> Option<&str>;
    /// `%HOSTNAME%`.
    fn hostname(&self) -> &str;
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`.
    fn downstream_local(&self) -> Option<SocketAddr>;
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`.
    fn downstream_remote(&self) -> Option<SocketAddr>;
    /// `%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%`.
    fn downstream_direct_remote(&self) -> Option<SocketAddr> {
        self.downstream_remote()
    }
    /// `%UPSTREAM_HOST%` as `ip:port`.
    fn upstream_host(&self) -> Option<&str>;
    /// `%UPSTREAM_CLUSTER%`.
    fn upstream_cluster(&self) -> Option<&str>;
    /// The request headers `%REQ(...)%` reads.
    fn request_headers(&self) -> Option<&HeaderMap>;
    /// The whole stream record, when there is one (access logs).
    fn info(&self) -> Option<&StreamInfo> {
        None
    }
}

/// `v` in decimal ASCII digits, written at the end of `scratch` (without `core::fmt`, which is
/// slow on the logging and request paths).
pub(crate) fn decimal(mut v: u64, scratch: &mut [u8; 20]) -> &[u8] {
    let mut i = scratch.len();
    loop {
        i -= 1;
        scratch[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &scratch[i..]
}

/// Append `v` in decimal.
pub fn push_u64(out: &mut String, v: u64) {
    let mut scratch = [0; 20];
    let digits = decimal(v, &mut scratch);
    out.push_str(std::str::from_utf8(digits).expect("ASCII digits"));
}

/// Append `v` in decimal, zero-padded to `width` digits.
pub(crate) fn push_padded(out: &mut String, v: u64, width: usize) {
    let mut digits = 1;
    let mut x = v;
    while x >= 10 {
        x /= 10;
        digits += 1;
    }
    for _ in digits..width {
        out.push('0');
    }
    push_u64(out, v);
}

/// Append an IP address as Envoy prints it (IPv6 through `core::fmt`, IPv4 directly).
pub fn push_ip(out: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(*o));
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// Append a socket address (`1.2.3.4:80`, `[::1]:80`).
pub fn push_socket_addr(out: &mut String, a: SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            push_ip(out, std::net::IpAddr::V4(*v4.ip()));
            out.push(':');
            push_u64(out, u64::from(a.port()));
        }
        // With its scope id, if any.
        SocketAddr::V6(_) => {
            use std::fmt::Write;
            let _ = write!(out, "{a}");
        }
    }
}

/// The machine's host name (`%HOSTNAME%`), read once.
pub fn hostname() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "-".to_owned())
    })
}

impl Source for StreamInfo {
    fn start_time(&self) -> SystemTime {
        self.start_time
    }
    fn protocol(&self) -> Option<&str> {
        self.protocol.map(|p| p.as_str())
    }
    fn hostname(&self) -> &str {
        hostname()
    }
    fn downstream_local(&self) -> Option<SocketAddr> {
        self.downstream_local
    }
    fn downstream_remote(&self) -> Option<SocketAddr> {
        self.downstream_remote
    }
    fn downstream_direct_remote(&self) -> Option<SocketAddr> {
        self.downstream_direct_remote.or(self.downstream_remote)
    }
    fn upstream_host(&self) -> Option<&str> {
        self.upstream_host.as_deref()
    }
    fn upstream_cluster(&self) -> Option<&str> {
        self.upstream_cluster_observability
            .as_deref()
            .or(self.upstream_cluster.as_deref())
    }
    fn request_headers(&self) -> Option<&HeaderMap> {
        self.request_headers.as_ref()
    }
    fn info(&self) -> Option<&StreamInfo> {
        Some(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Command(Command, Option<usize>),
}

/// A compiled format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatter {
    segments: Vec<Segment>,
}

fn invalid(fmt: &str, pos: usize) -> ConfigError {
    ConfigError::new(
        "",
        format!("invalid format {fmt:?}: couldn't find a valid command at position {pos}"),
    )
}

impl Formatter {
    /// Parse a format string without formatter extensions.
    pub fn parse(fmt: &str) -> Result<Self, ConfigError> {
        Self::parse_with(fmt, ParseOptions::default())
    }

    /// Parse a format string. `%%` is a literal `%`; a `%` that does not start a valid
    /// `%NAME(arg):len%` operator, or an unknown operator, is an error, as in Envoy.
    pub fn parse_with(fmt: &str, opts: ParseOptions) -> Result<Self, ConfigError> {
        let mut segments = Vec::new();
        let mut lit = String::new();
        let mut rest = fmt;
        while let Some(i) = rest.find('%') {
            lit.push_str(&rest[..i]);
            let pos = fmt.len() - rest.len() + i;
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('%') {
                lit.push('%');
                rest = r;
                continue;
            }
            let name_len = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            if name_len == 0 {
                return Err(invalid(fmt, pos));
            }
            let name = &rest[..name_len];
            rest = &rest[name_len..];
            let mut arg = None;
            if let Some(r) = rest.strip_prefix('(') {
                let close = r.find(')').ok_or_else(|| invalid(fmt, pos))?;
                arg = Some(&r[..close]);
                rest = &r[close + 1..];
            }
            let mut max_len = None;
            if let Some(r) = rest.strip_prefix(':') {
                let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                max_len = Some(r[..n].parse::<usize>().map_err(|_| invalid(fmt, pos))?);
                rest = &r[n..];
            }
            rest = rest.strip_prefix('%').ok_or_else(|| invalid(fmt, pos))?;
            let cmd = Command::parse(name, arg, max_len, opts, fmt)?;
            if !lit.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut lit)));
            }
            segments.push(Segment::Command(cmd, max_len));
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            segments.push(Segment::Literal(lit));
        }
        Ok(Formatter { segments })
    }

    /// The literal value, if the format has no command.
    pub fn literal(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [] => Some(""),
            [Segment::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// The only command of a format that is exactly one command (JSON keeps its type).
    pub(crate) fn single_command(&self) -> Option<(&Command, Option<usize>)> {
        match self.segments.as_slice() {
            [Segment::Command(c, len)] => Some((c, *len)),
            _ => None,
        }
    }

    /// What rendering reads beyond the record's fixed fields.
    pub fn needs(&self) -> Needs {
        self.segments.iter().fold(Needs::default(), |n, s| match s {
            Segment::Command(c, _) => n.union(c.needs()),
            Segment::Literal(_) => n,
        })
    }

    /// Render for a header value: a value that is not available renders as the empty string.
    pub fn render<S: Source + ?Sized>(&self, src: &S) -> String {
        let mut out = String::new();
        self.write(src, &mut out, "");
        out
    }

    /// Append the rendering to `out`, with `missing` (`-` in access logs, or the empty string
    /// with `omit_empty_values`) for values that are not available.
    pub fn write<S: Source + ?Sized>(&self, src: &S, out: &mut String, missing: &str) {
        for seg in &self.segments {
            match seg {
                Segment::Literal(s) => out.push_str(s),
                Segment::Command(c, max) => {
                    write_command(c, *max, src, out, missing);
                }
            }
        }
    }
}

/// Write one command with its length limit; returns what it wrote.
pub(crate) fn write_command<S: Source + ?Sized>(
    c: &Command,
    max: Option<usize>,
    src: &S,
    out: &mut String,
    missing: &str,
) -> Written {
    let start = out.len();
    let w = command::write(c, src, out);
    if w == Written::Missing {
        out.push_str(missing);
        return w;
    }
    if let Some(max) = max {
        let mut end = (start + max).min(out.len());
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    w
}
