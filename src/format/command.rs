//! Command operators (`%RESPONSE_CODE%`, `%REQ(x-request-id):10%`, ...): parsed once from a
//! format string, then written per stream from a [`Source`].

mod tls;
mod write;

pub use tls::TlsField;

pub use write::{Written, write};

use crate::config::ConfigError;
use crate::stream_info::Needs;
use http::HeaderName;

/// A header a `%REQ%`, `%RESP%` or `%TRAILER%` operator reads: a pseudo-header or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderRef {
    /// `:path`.
    Path,
    /// `:method`.
    Method,
    /// `:authority` (or `host`).
    Authority,
    /// `:scheme`.
    Scheme,
    /// `:status` (responses).
    Status,
    /// A regular header.
    Name(HeaderName),
}

impl HeaderRef {
    fn parse(s: &str, fmt: &str) -> Result<HeaderRef, ConfigError> {
        let lower = s.to_ascii_lowercase();
        Ok(match lower.as_str() {
            ":path" => HeaderRef::Path,
            ":method" => HeaderRef::Method,
            ":authority" | "host" => HeaderRef::Authority,
            ":scheme" => HeaderRef::Scheme,
            ":status" => HeaderRef::Status,
            _ => HeaderRef::Name(HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
                ConfigError::new(
                    "",
                    format!("invalid header name {s:?} in {fmt:?}: it contains invalid characters"),
                )
            })?),
        })
    }
}

/// Which header map a header operator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderSource {
    /// `%REQ%`.
    Request,
    /// `%REQ_WITHOUT_QUERY%`: the request's, query string removed.
    RequestWithoutQuery,
    /// `%RESP%`.
    Response,
    /// `%TRAILER%`.
    Trailer,
}

/// An address and which part of it to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrPart {
    /// `ip:port`.
    Full,
    /// `_WITHOUT_PORT`.
    Ip,
    /// `_PORT`.
    Port,
}

/// Which address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    /// `DOWNSTREAM_LOCAL_ADDRESS` (and `DOWNSTREAM_DIRECT_LOCAL_ADDRESS`).
    DownstreamLocal,
    /// `DOWNSTREAM_REMOTE_ADDRESS`.
    DownstreamRemote,
    /// `DOWNSTREAM_DIRECT_REMOTE_ADDRESS`.
    DownstreamDirectRemote,
    /// `UPSTREAM_LOCAL_ADDRESS`.
    UpstreamLocal,
    /// `UPSTREAM_REMOTE_ADDRESS` / `UPSTREAM_HOST`.
    UpstreamRemote,
}

/// A duration operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// `DURATION`.
    Total,
    /// `REQUEST_DURATION`.
    Request,
    /// `REQUEST_TX_DURATION`.
    RequestTx,
    /// `RESPONSE_DURATION`.
    Response,
    /// `RESPONSE_TX_DURATION`.
    ResponseTx,
}

/// How `%GRPC_STATUS%` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcFormat {
    /// `CAMEL_STRING` (default): `Unavailable`.
    Camel,
    /// `SNAKE_STRING`: `UNAVAILABLE`.
    Snake,
    /// `NUMBER`: `14`.
    Number,
}

/// One command operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `START_TIME(fmt)` (empty: Envoy's default).
    StartTime(String),
    /// `EMIT_TIME(fmt)`.
    EmitTime(String),
    /// `PROTOCOL`.
    Protocol,
    /// `RESPONSE_CODE`.
    ResponseCode,
    /// `RESPONSE_CODE_DETAILS`.
    ResponseCodeDetails,
    /// `CONNECTION_TERMINATION_DETAILS`.
    ConnectionTerminationDetails,
    /// `RESPONSE_FLAGS` / `RESPONSE_FLAGS_LONG`.
    ResponseFlags {
        /// Long names.
        long: bool,
    },
    /// `BYTES_RECEIVED`.
    BytesReceived,
    /// `BYTES_SENT`.
    BytesSent,
    /// `REQUEST_HEADERS_BYTES`, `RESPONSE_HEADERS_BYTES`, `RESPONSE_TRAILERS_BYTES`.
    HeaderBytes(HeaderSource),
    /// A duration in milliseconds.
    Duration(Span),
    /// `UPSTREAM_REQUEST_ATTEMPT_COUNT`.
    AttemptCount,
    /// An address.
    Address(Addr, AddrPart),
    /// `UPSTREAM_HOST_NAME` (`_WITHOUT_PORT`).
    UpstreamHostName {
        /// Strip `:port`.
        without_port: bool,
    },
    /// `UPSTREAM_CLUSTER`.
    UpstreamCluster,
    /// `UPSTREAM_CLUSTER_RAW`.
    UpstreamClusterRaw,
    /// `UPSTREAM_TRANSPORT_FAILURE_REASON`.
    UpstreamTransportFailureReason,
    /// `CONNECTION_ID`.
    ConnectionId,
    /// `STREAM_ID`: the request id.
    StreamId,
    /// `UNIQUE_ID`: a new UUID each time.
    UniqueId,
    /// `REQUESTED_SERVER_NAME`.
    RequestedServerName,
    /// `DOWNSTREAM_*` / `UPSTREAM_*` TLS facts (`DOWNSTREAM_PEER_URI_SAN`...).
    Tls {
        /// `UPSTREAM_*`.
        upstream: bool,
        /// Which fact.
        field: TlsField,
    },
    /// `ROUTE_NAME`.
    RouteName,
    /// `HOSTNAME`.
    Hostname,
    /// `TRACE_ID`.
    TraceId,
    /// `ACCESS_LOG_TYPE`.
    AccessLogType,
    /// `LOCAL_REPLY_BODY` (tern keeps no copy: empty, as Envoy 1.40 prints it).
    LocalReplyBody,
    /// `GRPC_STATUS(fmt)`.
    GrpcStatus(GrpcFormat),
    /// `GRPC_STATUS_NUMBER`.
    GrpcStatusNumber,
    /// `REQ(a?b)`, `RESP(...)`, `TRAILER(...)`, `REQ_WITHOUT_QUERY(...)`.
    Header(HeaderSource, HeaderRef, Option<HeaderRef>),
    /// `ENVIRONMENT(NAME)`, read when the format is parsed.
    Environment(Option<String>),
    /// An operator Envoy knows whose value tern does not have (TLS details before tern
    /// terminates TLS, dynamic metadata, filter state, wire byte counts...): always missing.
    Unavailable(&'static str),
}

/// Options for parsing: formatter extensions configured alongside the format.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// `envoy.formatter.req_without_query` is configured.
    pub req_without_query: bool,
    /// `envoy.formatter.metadata` is configured (`%METADATA(...)%`).
    pub metadata: bool,
    /// `envoy.formatter.cel` is configured (`%CEL(...)%`).
    pub cel: bool,
}

/// Operators whose value tern does not know yet. They parse (so Envoy configurations that use
/// them are accepted) and print as missing.
const UNAVAILABLE_NO_ARG: &[&str] = &[
    "UPSTREAM_WIRE_BYTES_SENT",
    "UPSTREAM_WIRE_BYTES_RECEIVED",
    "UPSTREAM_HEADER_BYTES_SENT",
    "UPSTREAM_HEADER_BYTES_RECEIVED",
    "DOWNSTREAM_WIRE_BYTES_SENT",
    "DOWNSTREAM_WIRE_BYTES_RECEIVED",
    "DOWNSTREAM_HEADER_BYTES_SENT",
    "DOWNSTREAM_HEADER_BYTES_RECEIVED",
    "ROUNDTRIP_DURATION",
    "DOWNSTREAM_HANDSHAKE_DURATION",
    "UPSTREAM_CONNECTION_POOL_READY_DURATION",
    "UPSTREAM_CONNECTION_ID",
    "VIRTUAL_CLUSTER_NAME",
    "DOWNSTREAM_TRANSPORT_FAILURE_REASON",
    "DOWNSTREAM_PEER_URI_SAN",
    "DOWNSTREAM_LOCAL_URI_SAN",
    "DOWNSTREAM_PEER_DNS_SAN",
    "DOWNSTREAM_LOCAL_DNS_SAN",
    "DOWNSTREAM_PEER_IP_SAN",
    "DOWNSTREAM_LOCAL_IP_SAN",
    "DOWNSTREAM_PEER_EMAIL_SAN",
    "DOWNSTREAM_LOCAL_EMAIL_SAN",
    "DOWNSTREAM_PEER_OTHERNAME_SAN",
    "DOWNSTREAM_LOCAL_OTHERNAME_SAN",
    "DOWNSTREAM_PEER_SUBJECT",
    "DOWNSTREAM_LOCAL_SUBJECT",
    "DOWNSTREAM_PEER_ISSUER",
    "DOWNSTREAM_TLS_SESSION_ID",
    "DOWNSTREAM_TLS_CIPHER",
    "DOWNSTREAM_TLS_VERSION",
    "DOWNSTREAM_PEER_FINGERPRINT_256",
    "DOWNSTREAM_PEER_FINGERPRINT_1",
    "DOWNSTREAM_PEER_SERIAL",
    "DOWNSTREAM_PEER_CERT",
    "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_256",
    "DOWNSTREAM_PEER_CHAIN_FINGERPRINTS_1",
    "DOWNSTREAM_PEER_CHAIN_SERIALS",
    "UPSTREAM_PEER_URI_SAN",
    "UPSTREAM_LOCAL_URI_SAN",
    "UPSTREAM_PEER_DNS_SAN",
    "UPSTREAM_LOCAL_DNS_SAN",
    "UPSTREAM_PEER_IP_SAN",
    "UPSTREAM_LOCAL_IP_SAN",
    "UPSTREAM_PEER_SUBJECT",
    "UPSTREAM_LOCAL_SUBJECT",
    "UPSTREAM_PEER_ISSUER",
    "UPSTREAM_TLS_SESSION_ID",
    "UPSTREAM_TLS_CIPHER",
    "UPSTREAM_TLS_VERSION",
    "UPSTREAM_PEER_CERT",
    "UPSTREAM_PEER_FINGERPRINT_256",
    "UPSTREAM_PEER_FINGERPRINT_1",
    "UPSTREAM_PEER_SERIAL",
];

/// Operators with an argument (and an optional length) whose value tern does not know.
const UNAVAILABLE_WITH_ARG: &[&str] = &[
    "DYNAMIC_METADATA",
    "CLUSTER_METADATA",
    "UPSTREAM_METADATA",
    "FILTER_STATE",
    "UPSTREAM_FILTER_STATE",
    "DOWNSTREAM_PEER_CERT_V_START",
    "DOWNSTREAM_PEER_CERT_V_END",
    "UPSTREAM_PEER_CERT_V_START",
    "UPSTREAM_PEER_CERT_V_END",
];

impl Command {
    /// Parse one operator: its name, its argument (between parentheses) and its length
    /// (`:N`). Errors match Envoy's checks: an unknown operator, an argument or length on an
    /// operator that takes none, a missing argument, more than one alternative header.
    pub fn parse(
        name: &str,
        arg: Option<&str>,
        len: Option<usize>,
        opts: ParseOptions,
        fmt: &str,
    ) -> Result<Command, ConfigError> {
        let err = |m: String| ConfigError::new("", m);
        let plain = |c: Command| {
            if arg.is_some() || len.is_some() {
                Err(err(format!(
                    "{name} does not take any parameters or length"
                )))
            } else {
                Ok(c)
            }
        };
        let no_len = |c: Command| {
            if len.is_some() {
                Err(err(format!("{name} does not take a length")))
            } else {
                Ok(c)
            }
        };
        let required = || {
            arg.filter(|a| !a.is_empty())
                .ok_or_else(|| err(format!("{name} requires parameters")))
        };
        let header = |src: HeaderSource| -> Result<Command, ConfigError> {
            let a = required()?;
            let mut parts = a.split('?');
            let main = HeaderRef::parse(parts.next().unwrap_or(""), fmt)?;
            let alt = parts.next().map(|b| HeaderRef::parse(b, fmt)).transpose()?;
            if parts.next().is_some() {
                return Err(err(format!(
                    "More than 1 alternative header specified in token: {a}"
                )));
            }
            Ok(Command::Header(src, main, alt))
        };
        use Addr::*;
        use AddrPart::*;
        let addr = |a: Addr, p: AddrPart| plain(Command::Address(a, p));
        if let Some((upstream, field)) = TlsField::parse(name) {
            return plain(Command::Tls { upstream, field });
        }
        match name {
            "START_TIME" => no_len(Command::StartTime(arg.unwrap_or("").to_owned())),
            "EMIT_TIME" => no_len(Command::EmitTime(arg.unwrap_or("").to_owned())),
            "PROTOCOL" => plain(Command::Protocol),
            "RESPONSE_CODE" => plain(Command::ResponseCode),
            "RESPONSE_CODE_DETAILS" => plain(Command::ResponseCodeDetails),
            "CONNECTION_TERMINATION_DETAILS" => plain(Command::ConnectionTerminationDetails),
            "RESPONSE_FLAGS" => plain(Command::ResponseFlags { long: false }),
            "RESPONSE_FLAGS_LONG" => plain(Command::ResponseFlags { long: true }),
            "BYTES_RECEIVED" => plain(Command::BytesReceived),
            "BYTES_SENT" => plain(Command::BytesSent),
            "REQUEST_HEADERS_BYTES" => plain(Command::HeaderBytes(HeaderSource::Request)),
            "RESPONSE_HEADERS_BYTES" => plain(Command::HeaderBytes(HeaderSource::Response)),
            "RESPONSE_TRAILERS_BYTES" => plain(Command::HeaderBytes(HeaderSource::Trailer)),
            "DURATION" => plain(Command::Duration(Span::Total)),
            "REQUEST_DURATION" => plain(Command::Duration(Span::Request)),
            "REQUEST_TX_DURATION" => plain(Command::Duration(Span::RequestTx)),
            "RESPONSE_DURATION" => plain(Command::Duration(Span::Response)),
            "RESPONSE_TX_DURATION" => plain(Command::Duration(Span::ResponseTx)),
            "UPSTREAM_REQUEST_ATTEMPT_COUNT" => plain(Command::AttemptCount),
            "DOWNSTREAM_LOCAL_ADDRESS" | "DOWNSTREAM_DIRECT_LOCAL_ADDRESS" => {
                addr(DownstreamLocal, Full)
            }
            "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT"
            | "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT" => addr(DownstreamLocal, Ip),
            "DOWNSTREAM_LOCAL_PORT" | "DOWNSTREAM_DIRECT_LOCAL_PORT" => addr(DownstreamLocal, Port),
            "DOWNSTREAM_REMOTE_ADDRESS" => addr(DownstreamRemote, Full),
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => addr(DownstreamRemote, Ip),
            "DOWNSTREAM_REMOTE_PORT" => addr(DownstreamRemote, Port),
            "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => addr(DownstreamDirectRemote, Full),
            "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => addr(DownstreamDirectRemote, Ip),
            "DOWNSTREAM_DIRECT_REMOTE_PORT" => addr(DownstreamDirectRemote, Port),
            "UPSTREAM_LOCAL_ADDRESS" => addr(UpstreamLocal, Full),
            "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => addr(UpstreamLocal, Ip),
            "UPSTREAM_LOCAL_PORT" => addr(UpstreamLocal, Port),
            "UPSTREAM_HOST" | "UPSTREAM_REMOTE_ADDRESS" => addr(UpstreamRemote, Full),
            "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => addr(UpstreamRemote, Ip),
            "UPSTREAM_REMOTE_PORT" => addr(UpstreamRemote, Port),
            "UPSTREAM_HOST_NAME" => plain(Command::UpstreamHostName {
                without_port: false,
            }),
            "UPSTREAM_HOST_NAME_WITHOUT_PORT" => {
                plain(Command::UpstreamHostName { without_port: true })
            }
            "UPSTREAM_CLUSTER" => plain(Command::UpstreamCluster),
            "UPSTREAM_CLUSTER_RAW" => plain(Command::UpstreamClusterRaw),
            "UPSTREAM_TRANSPORT_FAILURE_REASON" => plain(Command::UpstreamTransportFailureReason),
            "CONNECTION_ID" => plain(Command::ConnectionId),
            "STREAM_ID" => plain(Command::StreamId),
            "UNIQUE_ID" => plain(Command::UniqueId),
            "REQUESTED_SERVER_NAME" => plain(Command::RequestedServerName),
            "ROUTE_NAME" => plain(Command::RouteName),
            "HOSTNAME" => plain(Command::Hostname),
            "TRACE_ID" => plain(Command::TraceId),
            "ACCESS_LOG_TYPE" => plain(Command::AccessLogType),
            "LOCAL_REPLY_BODY" => plain(Command::LocalReplyBody),
            "GRPC_STATUS_NUMBER" => plain(Command::GrpcStatusNumber),
            "GRPC_STATUS" => {
                let f = match arg.unwrap_or("") {
                    "" | "CAMEL_STRING" => GrpcFormat::Camel,
                    "SNAKE_STRING" => GrpcFormat::Snake,
                    "NUMBER" => GrpcFormat::Number,
                    other => {
                        return Err(err(format!(
                            "GRPC_STATUS only supports CAMEL_STRING, SNAKE_STRING or NUMBER, not {other:?}"
                        )));
                    }
                };
                no_len(Command::GrpcStatus(f))
            }
            "REQ" => header(HeaderSource::Request),
            "RESP" => header(HeaderSource::Response),
            "TRAILER" => header(HeaderSource::Trailer),
            "REQ_WITHOUT_QUERY" if opts.req_without_query => {
                header(HeaderSource::RequestWithoutQuery)
            }
            "ENVIRONMENT" => {
                let var = required()?;
                Ok(Command::Environment(std::env::var(var).ok()))
            }
            "METADATA" if opts.metadata => {
                required()?;
                Ok(Command::Unavailable("METADATA"))
            }
            "CEL" if opts.cel => {
                required()?;
                Ok(Command::Unavailable("CEL"))
            }
            _ => {
                if let Some(n) = UNAVAILABLE_NO_ARG.iter().find(|n| **n == name) {
                    return plain(Command::Unavailable(n));
                }
                if let Some(n) = UNAVAILABLE_WITH_ARG.iter().find(|n| **n == name) {
                    required()?;
                    return Ok(Command::Unavailable(n));
                }
                Err(err(format!(
                    "invalid format {fmt:?}: unknown command %{name}% (Not supported field in StreamInfo: {name})"
                )))
            }
        }
    }

    /// Whether the value is a number (in JSON formats it stays one).
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            Command::ResponseCode
                | Command::BytesReceived
                | Command::BytesSent
                | Command::HeaderBytes(_)
                | Command::Duration(_)
                | Command::AttemptCount
                | Command::ConnectionId
                | Command::GrpcStatusNumber
        ) || matches!(
            self,
            Command::Address(_, AddrPart::Port) | Command::GrpcStatus(GrpcFormat::Number)
        )
    }

    /// What the operator reads beyond the record's fixed fields.
    pub fn needs(&self) -> Needs {
        match self {
            Command::Header(HeaderSource::Request | HeaderSource::RequestWithoutQuery, ..)
            | Command::HeaderBytes(HeaderSource::Request)
            | Command::StreamId => Needs {
                request_headers: true,
                ..Needs::default()
            },
            Command::Header(HeaderSource::Response, ..)
            | Command::HeaderBytes(HeaderSource::Response) => Needs {
                response_headers: true,
                ..Needs::default()
            },
            Command::Header(HeaderSource::Trailer, ..)
            | Command::HeaderBytes(HeaderSource::Trailer) => Needs {
                response_trailers: true,
                ..Needs::default()
            },
            _ => Needs::default(),
        }
    }
}
