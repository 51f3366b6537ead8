//! Writing an operator's value from a [`Source`].

use super::{Addr, AddrPart, Command, GrpcFormat, HeaderRef, HeaderSource, Span};
use crate::format::{Source, push_ip, push_socket_addr, push_u64, time};
use crate::stream_info::StreamInfo;
use http::HeaderMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// What writing an operator produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// No value (`-` in text, `null` in JSON).
    Missing,
    /// A string was appended.
    Str,
    /// A number was appended.
    Num,
}

fn addr_part(a: SocketAddr, p: AddrPart, out: &mut String) -> Written {
    match p {
        AddrPart::Full => push_socket_addr(out, a),
        AddrPart::Ip => push_ip(out, a.ip()),
        AddrPart::Port => return num(out, u64::from(a.port())),
    }
    Written::Str
}

/// `ip:port` text without the port.
fn strip_port(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => s,
    }
}

fn num(out: &mut String, v: u64) -> Written {
    push_u64(out, v);
    Written::Num
}

fn text(out: &mut String, s: &str) -> Written {
    out.push_str(s);
    Written::Str
}

/// Envoy replaces whitespace with `_` in details and failure reasons.
fn underscored(out: &mut String, s: &str) -> Written {
    out.extend(s.chars().map(|c| if c.is_whitespace() { '_' } else { c }));
    Written::Str
}

fn opt_text(out: &mut String, s: Option<&str>) -> Written {
    match s {
        Some(s) => text(out, s),
        None => Written::Missing,
    }
}

fn ms(out: &mut String, d: Option<Duration>) -> Written {
    match d {
        Some(d) => num(out, d.as_millis() as u64),
        None => Written::Missing,
    }
}

fn header_bytes(h: Option<&HeaderMap>) -> Option<u64> {
    h.map(crate::stream_info::header_bytes)
}

const GRPC_NAMES: [(&str, &str); 17] = [
    ("OK", "OK"),
    ("Canceled", "CANCELLED"),
    ("Unknown", "UNKNOWN"),
    ("InvalidArgument", "INVALID_ARGUMENT"),
    ("DeadlineExceeded", "DEADLINE_EXCEEDED"),
    ("NotFound", "NOT_FOUND"),
    ("AlreadyExists", "ALREADY_EXISTS"),
    ("PermissionDenied", "PERMISSION_DENIED"),
    ("ResourceExhausted", "RESOURCE_EXHAUSTED"),
    ("FailedPrecondition", "FAILED_PRECONDITION"),
    ("Aborted", "ABORTED"),
    ("OutOfRange", "OUT_OF_RANGE"),
    ("Unimplemented", "UNIMPLEMENTED"),
    ("Internal", "INTERNAL"),
    ("Unavailable", "UNAVAILABLE"),
    ("DataLoss", "DATA_LOSS"),
    ("Unauthenticated", "UNAUTHENTICATED"),
];

fn request_header<'a, S: Source + ?Sized>(src: &'a S, h: &HeaderRef) -> Option<&'a [u8]> {
    let info = src.info();
    match h {
        HeaderRef::Path => info.and_then(|i| i.path.as_deref()).map(str::as_bytes),
        HeaderRef::Method => info
            .and_then(|i| i.method.as_ref())
            .map(|m| m.as_str().as_bytes()),
        HeaderRef::Authority => info
            .and_then(|i| i.authority.as_deref())
            .map(str::as_bytes)
            .or_else(|| {
                src.request_headers()
                    .and_then(|h| h.get(http::header::HOST))
                    .map(|v| v.as_bytes())
            }),
        HeaderRef::Scheme => info.and_then(|i| i.scheme).map(str::as_bytes),
        HeaderRef::Status => None,
        HeaderRef::Name(n) => src
            .request_headers()
            .and_then(|h| h.get(n))
            .map(|v| v.as_bytes()),
    }
}

/// Write a response header (or `:status`) of the record.
fn write_response_header(i: &StreamInfo, h: &HeaderRef, out: &mut String) -> bool {
    match h {
        HeaderRef::Status => match i.response_code {
            Some(c) => {
                let _ = write!(out, "{c}");
                true
            }
            None => false,
        },
        HeaderRef::Name(n) => match i.response_headers.as_ref().and_then(|m| m.get(n)) {
            Some(v) => {
                lossy(out, v.as_bytes());
                true
            }
            None => false,
        },
        _ => false,
    }
}

fn lossy(out: &mut String, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(b)),
    }
}

/// Append the operator's value to `out` (nothing when it is missing).
pub fn write<S: Source + ?Sized>(c: &Command, src: &S, out: &mut String) -> Written {
    let info = src.info();
    match c {
        Command::StartTime(f) => {
            time::format_time(src.start_time(), f, out);
            Written::Str
        }
        Command::EmitTime(f) => {
            time::format_time(SystemTime::now(), f, out);
            Written::Str
        }
        Command::Protocol => opt_text(out, src.protocol()),
        Command::Hostname => text(out, src.hostname()),
        Command::Address(a, p) => {
            let sa = match a {
                Addr::DownstreamLocal => src.downstream_local(),
                Addr::DownstreamRemote => src.downstream_remote(),
                Addr::DownstreamDirectRemote => src.downstream_direct_remote(),
                Addr::UpstreamLocal => info.and_then(|i| i.upstream_local),
                Addr::UpstreamRemote => {
                    let Some(h) = src.upstream_host() else {
                        return Written::Missing;
                    };
                    return match p {
                        AddrPart::Full => text(out, h),
                        AddrPart::Ip => text(out, strip_port(h)),
                        AddrPart::Port => {
                            match h.rsplit_once(':').and_then(|(_, p)| p.parse().ok()) {
                                Some(port) => num(out, port),
                                None => Written::Missing,
                            }
                        }
                    };
                }
            };
            match sa {
                Some(sa) => addr_part(sa, *p, out),
                None => Written::Missing,
            }
        }
        Command::UpstreamCluster => opt_text(out, src.upstream_cluster()),
        Command::Header(HeaderSource::Request, main, alt) => {
            let v = request_header(src, main)
                .or_else(|| alt.as_ref().and_then(|a| request_header(src, a)));
            match v {
                Some(v) => {
                    lossy(out, v);
                    Written::Str
                }
                None => Written::Missing,
            }
        }
        Command::Header(HeaderSource::RequestWithoutQuery, main, alt) => {
            let v = request_header(src, main)
                .or_else(|| alt.as_ref().and_then(|a| request_header(src, a)));
            match v {
                Some(v) => {
                    let end = v.iter().position(|b| *b == b'?').unwrap_or(v.len());
                    lossy(out, &v[..end]);
                    Written::Str
                }
                None => Written::Missing,
            }
        }
        Command::Environment(v) => opt_text(out, v.as_deref()),
        Command::Unavailable(_) => Written::Missing,
        _ => match info {
            Some(i) => write_info(c, i, out),
            None => Written::Missing,
        },
    }
}

/// Operators only a full stream record can answer.
fn write_info(c: &Command, i: &StreamInfo, out: &mut String) -> Written {
    match c {
        Command::ResponseCode => num(out, u64::from(i.response_code.unwrap_or(0))),
        Command::ResponseCodeDetails => match &i.response_code_details {
            Some(d) => underscored(out, d),
            None => Written::Missing,
        },
        Command::ConnectionTerminationDetails => match &i.connection_termination_details {
            Some(d) => underscored(out, d),
            None => Written::Missing,
        },
        Command::ResponseFlags { long } => {
            i.response_flags.write_to(*long, out);
            Written::Str
        }
        Command::BytesReceived => num(out, i.bytes_received),
        Command::BytesSent => num(out, i.bytes_sent),
        Command::HeaderBytes(src) => {
            let h = match src {
                HeaderSource::Request | HeaderSource::RequestWithoutQuery => {
                    i.request_headers.as_ref()
                }
                HeaderSource::Response => i.response_headers.as_ref(),
                HeaderSource::Trailer => i.response_trailers.as_ref(),
            };
            match header_bytes(h) {
                Some(n) => num(out, n),
                // No trailers is zero bytes of trailers.
                None if *src == HeaderSource::Trailer => num(out, 0),
                None => Written::Missing,
            }
        }
        Command::Duration(span) => {
            let t = &i.timing;
            let d = match span {
                Span::Total => Some(i.duration_or_now()),
                Span::Request => t.last_downstream_rx,
                Span::RequestTx => t.last_upstream_tx,
                Span::Response => t.first_upstream_rx,
                Span::ResponseTx => match (t.last_downstream_tx, t.first_upstream_rx) {
                    (Some(end), Some(first)) => Some(end.saturating_sub(first)),
                    _ => None,
                },
            };
            ms(out, d)
        }
        Command::AttemptCount => num(out, u64::from(i.attempt_count)),
        Command::UpstreamHostName { without_port } => {
            let h = i
                .upstream_host_name
                .as_deref()
                .or(i.upstream_host.as_deref());
            match h {
                Some(h) if *without_port => text(out, strip_port(h)),
                h => opt_text(out, h),
            }
        }
        Command::UpstreamClusterRaw => opt_text(out, i.upstream_cluster.as_deref()),
        Command::UpstreamTransportFailureReason => match &i.upstream_transport_failure_reason {
            Some(r) => underscored(out, r),
            None => Written::Missing,
        },
        Command::ConnectionId => num(out, i.connection_id),
        Command::StreamId => match i.request_header("x-request-id") {
            Some(v) => {
                lossy(out, v.as_bytes());
                Written::Str
            }
            None => Written::Missing,
        },
        Command::UniqueId => {
            lossy(out, &crate::stream_info::uuid4());
            Written::Str
        }
        Command::RequestedServerName => opt_text(out, i.requested_server_name.as_deref()),
        Command::Tls { upstream, field } => {
            let tls = if *upstream {
                i.upstream_tls.as_deref()
            } else {
                i.downstream_tls.as_deref()
            };
            opt_text(out, tls.and_then(|t| field.value(t)).as_deref())
        }
        Command::RouteName => opt_text(out, i.route_name.as_deref().filter(|n| !n.is_empty())),
        Command::TraceId => opt_text(out, i.trace_id.as_deref()),
        Command::AccessLogType => text(out, i.log_type.as_str()),
        Command::LocalReplyBody => Written::Str,
        Command::GrpcStatusNumber => match i.grpc_status {
            Some(s) => num(out, u64::from(s)),
            None => Written::Missing,
        },
        Command::GrpcStatus(f) => match (i.grpc_status, f) {
            (None, _) => Written::Missing,
            (Some(s), GrpcFormat::Number) => num(out, u64::from(s)),
            (Some(s), f) => match GRPC_NAMES.get(s as usize) {
                Some((camel, snake)) => text(
                    out,
                    if *f == GrpcFormat::Camel {
                        camel
                    } else {
                        snake
                    },
                ),
                None => {
                    let _ = write!(out, "{s}");
                    Written::Str
                }
            },
        },
        Command::Header(HeaderSource::Response, main, alt) => {
            if write_response_header(i, main, out)
                || alt
                    .as_ref()
                    .is_some_and(|a| write_response_header(i, a, out))
            {
                Written::Str
            } else {
                Written::Missing
            }
        }
        Command::Header(HeaderSource::Trailer, main, alt) => {
            let m = i.response_trailers.as_ref();
            let get = |h: &HeaderRef| match h {
                HeaderRef::Name(n) => m.and_then(|m| m.get(n)),
                _ => None,
            };
            match get(main).or_else(|| alt.as_ref().and_then(get)) {
                Some(v) => {
                    lossy(out, v.as_bytes());
                    Written::Str
                }
                None => Written::Missing,
            }
        }
        _ => Written::Missing,
    }
}
