//! Header value formatters: `HeaderValueOption.header.value` with `%COMMAND%` substitutions,
//! compiled once into segments and rendered per request.

use crate::config::ConfigError;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    DownstreamRemote,
    DownstreamRemoteNoPort,
    DownstreamLocal,
    DownstreamLocalNoPort,
    DownstreamLocalPort,
    UpstreamRemote,
    UpstreamCluster,
    /// `START_TIME` with its format (empty: Envoy's default ISO 8601 with milliseconds).
    StartTime(String),
    Protocol,
    /// `REQ(name)`, with alternative `REQ(a?b)`, and `:N` truncation.
    Req(http::HeaderName, Option<http::HeaderName>),
    Hostname,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Command(Command, Option<usize>),
}

/// A compiled header value format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatter {
    segments: Vec<Segment>,
}

fn header_name(s: &str) -> Result<http::HeaderName, ConfigError> {
    http::HeaderName::from_bytes(s.as_bytes())
        .map_err(|_| ConfigError::new("", format!("invalid header name {s:?} in %REQ(...)%")))
}

impl Formatter {
    /// Parse a format string; unknown commands and unterminated `%` are errors, as in Envoy.
    pub fn parse(fmt: &str) -> Result<Self, ConfigError> {
        let mut segments = Vec::new();
        let mut lit = String::new();
        let mut rest = fmt;
        while let Some(i) = rest.find('%') {
            lit.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('%') {
                lit.push('%');
                rest = r;
                continue;
            }
            let name_len = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..name_len];
            rest = &rest[name_len..];
            let mut arg = None;
            if let Some(r) = rest.strip_prefix('(') {
                let close = r.find(")").ok_or_else(|| {
                    ConfigError::new("", format!("unterminated '(' after %{name} in {fmt:?}"))
                })?;
                arg = Some(&r[..close]);
                rest = &r[close + 1..];
            }
            let mut max_len = None;
            if let Some(r) = rest.strip_prefix(':') {
                let n = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                max_len = Some(r[..n].parse::<usize>().map_err(|_| {
                    ConfigError::new("", format!("invalid length after %{name} in {fmt:?}"))
                })?);
                rest = &r[n..];
            }
            rest = rest.strip_prefix('%').ok_or_else(|| {
                ConfigError::new(
                    "",
                    format!("invalid header formatter {fmt:?}: '%' without a closing '%' or unknown syntax"),
                )
            })?;
            let no_arg = |c: Command| {
                if arg.is_some() {
                    Err(ConfigError::new("", format!("%{name}% takes no argument")))
                } else {
                    Ok(c)
                }
            };
            let cmd = match name {
                "DOWNSTREAM_REMOTE_ADDRESS" => no_arg(Command::DownstreamRemote)?,
                "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
                    no_arg(Command::DownstreamRemoteNoPort)?
                }
                "DOWNSTREAM_LOCAL_ADDRESS" => no_arg(Command::DownstreamLocal)?,
                "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => no_arg(Command::DownstreamLocalNoPort)?,
                "DOWNSTREAM_LOCAL_PORT" => no_arg(Command::DownstreamLocalPort)?,
                "UPSTREAM_REMOTE_ADDRESS" => no_arg(Command::UpstreamRemote)?,
                "UPSTREAM_CLUSTER" => no_arg(Command::UpstreamCluster)?,
                "PROTOCOL" => no_arg(Command::Protocol)?,
                "HOSTNAME" => no_arg(Command::Hostname)?,
                "START_TIME" => Command::StartTime(arg.unwrap_or("").to_string()),
                "REQ" => {
                    let arg = arg.filter(|a| !a.is_empty()).ok_or_else(|| {
                        ConfigError::new("", format!("%REQ% needs a header name in {fmt:?}"))
                    })?;
                    let (main, alt) = match arg.split_once('?') {
                        Some((a, b)) => (a, Some(header_name(b)?)),
                        None => (arg, None),
                    };
                    Command::Req(header_name(main)?, alt)
                }
                _ => {
                    return Err(ConfigError::new(
                        "",
                        format!("invalid header formatter {fmt:?}: unknown command %{name}%"),
                    ));
                }
            };
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

    /// Render; a value that is not available renders as the empty string.
    pub fn render(&self, ctx: &FormatContext<'_>) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(s) => out.push_str(s),
                Segment::Command(c, max) => {
                    let start = out.len();
                    render_command(c, ctx, &mut out);
                    if let Some(max) = max {
                        let mut end = (start + max).min(out.len());
                        while !out.is_char_boundary(end) {
                            end -= 1;
                        }
                        out.truncate(end);
                    }
                }
            }
        }
        out
    }
}

fn render_command(c: &Command, ctx: &FormatContext<'_>, out: &mut String) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = match c {
        Command::DownstreamRemote => ctx.downstream_remote.map_or(Ok(()), |a| write!(out, "{a}")),
        Command::DownstreamRemoteNoPort => ctx
            .downstream_remote
            .map_or(Ok(()), |a| write!(out, "{}", a.ip())),
        Command::DownstreamLocal => ctx.downstream_local.map_or(Ok(()), |a| write!(out, "{a}")),
        Command::DownstreamLocalNoPort => ctx
            .downstream_local
            .map_or(Ok(()), |a| write!(out, "{}", a.ip())),
        Command::DownstreamLocalPort => ctx
            .downstream_local
            .map_or(Ok(()), |a| write!(out, "{}", a.port())),
        Command::UpstreamRemote => {
            out.push_str(ctx.upstream_remote.unwrap_or(""));
            Ok(())
        }
        Command::UpstreamCluster => {
            out.push_str(ctx.upstream_cluster.unwrap_or(""));
            Ok(())
        }
        Command::Protocol => {
            out.push_str(ctx.protocol);
            Ok(())
        }
        Command::Hostname => {
            out.push_str(ctx.hostname);
            Ok(())
        }
        Command::StartTime(f) => {
            format_time(ctx.start_time, f, out);
            Ok(())
        }
        Command::Req(main, alt) => {
            if let Some(h) = ctx.request_headers {
                let v = h.get(main).or_else(|| alt.as_ref().and_then(|a| h.get(a)));
                if let Some(v) = v {
                    out.push_str(&String::from_utf8_lossy(v.as_bytes()));
                }
            }
            Ok(())
        }
    };
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_date(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a 400-year era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// strftime subset, always UTC: `%Y %m %d %H %M %S %s %z %Nf %ENS %%` (N = 1..9 digits of
/// fraction); other sequences are copied as-is. Empty format: `%Y-%m-%dT%H:%M:%E3SZ`.
pub(crate) fn format_time(t: SystemTime, fmt: &str, out: &mut String) {
    use std::fmt::Write;
    let fmt = if fmt.is_empty() {
        "%Y-%m-%dT%H:%M:%E3SZ"
    } else {
        fmt
    };
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
            if n == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - n)
            }
        }
    };
    let (y, mo, d) = civil_date(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    let frac = |out: &mut String, digits: usize| {
        let digits = digits.clamp(1, 9);
        let v = nanos / 10u32.pow(9 - digits as u32);
        let _ = write!(out, "{v:0digits$}");
    };
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match chars.next() {
            Some('Y') => write!(out, "{y:04}"),
            Some('m') => write!(out, "{mo:02}"),
            Some('d') => write!(out, "{d:02}"),
            Some('H') => write!(out, "{h:02}"),
            Some('M') => write!(out, "{mi:02}"),
            Some('S') => write!(out, "{s:02}"),
            Some('s') => write!(out, "{secs}"),
            Some('z') => write!(out, "+0000"),
            Some('%') => write!(out, "%"),
            Some(n @ '1'..='9') if chars.peek() == Some(&'f') => {
                chars.next();
                frac(out, n as usize - '0' as usize);
                Ok(())
            }
            Some('f') => {
                frac(out, 9);
                Ok(())
            }
            Some('E') => {
                let n = chars.next_if(|c| c.is_ascii_digit());
                if chars.next_if_eq(&'S').is_some() {
                    let _ = write!(out, "{s:02}.");
                    frac(out, n.map_or(9, |n| n as usize - '0' as usize));
                } else {
                    out.push_str("%E");
                    if let Some(n) = n {
                        out.push(n);
                    }
                }
                Ok(())
            }
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        ] {
            assert!(Formatter::parse(f).is_err(), "{f}");
        }
        assert!(Formatter::parse("%PROTOCOL(x)%").is_err());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(19_675), (2023, 11, 14));
    }
}
