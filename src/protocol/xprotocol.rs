//! The framework for multiplexed RPC protocols (MOSN's `xprotocol`): what a protocol such as
//! Dubbo or Bolt implements so that the generic proxy (`proxy::rpc`) can forward it, and
//! nothing else. A codec turns bytes into [`Frame`]s and back; the proxy does the rest (route,
//! host choice, request-id remapping on shared upstream connections, timeouts, stats).
//!
//! A frame keeps the bytes it was decoded from ([`Frame::raw`]): the body is forwarded
//! untouched, never re-serialised, and rewriting the request id is an in-place patch of the
//! bytes at [`Frame::id_field`]. A codec reads only what routing needs (service, method,
//! version, group, attachments).
//!
//! This module is a leaf of the protocol layer: it knows nothing about routes, clusters or
//! snapshots. Each codec lives in a submodule (`dubbo`, `bolt`) and is reached through the
//! [`XProtocol`] trait object; [`detect`] picks one by the first bytes (magic), as MOSN's
//! `SelectStreamFactoryProtocol`, so one listener can serve several protocols.

pub mod bolt;
pub mod dubbo;

use std::borrow::Cow;
use std::sync::Arc;

use bytes::BytesMut;

/// What a frame is, as the proxy needs to treat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A request that expects a response.
    Request,
    /// A one-way request: forwarded, never waits for a response, never answered.
    Oneway,
    /// A response to a request (any status).
    Response,
    /// A heartbeat request: the proxy answers it locally with
    /// [`XProtocol::heartbeat_response`] and does not forward it.
    Heartbeat,
    /// A response to a heartbeat.
    HeartbeatResponse,
    /// The peer's "go away" signal (Dubbo's read-only event, for example): no new requests
    /// should be sent on this connection; requests in flight still get their responses.
    Goaway,
}

impl FrameKind {
    /// Whether a frame of this kind is a request that the proxy routes (one-way included).
    pub fn is_request(self) -> bool {
        matches!(self, Self::Request | Self::Oneway)
    }
}

/// Where the request id sits in [`Frame::raw`]: a big-endian unsigned integer of `width`
/// bytes (4 or 8) at byte `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdField {
    /// Byte offset of the id in the frame.
    pub offset: usize,
    /// Width of the id in bytes: 4 or 8.
    pub width: u8,
}

impl IdField {
    /// Largest id the field can hold.
    pub fn max(self) -> u64 {
        if self.width >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * u32::from(self.width))) - 1
        }
    }
}

/// A response status in the protocol's own codes (Dubbo's status byte, Bolt's response
/// status), with whether the protocol counts it as a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The protocol's code, as on the wire.
    pub code: u32,
    /// Whether the code means success (for stats and access logs).
    pub ok: bool,
}

/// What routing may look at in a request (Envoy generic_proxy's `service`, `method` and
/// `properties`). Empty for responses and heartbeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteHeaders {
    /// The service (Dubbo's service path / interface, Bolt's service name).
    pub service: Option<String>,
    /// The method name.
    pub method: Option<String>,
    /// The service version.
    pub version: Option<String>,
    /// The service group.
    pub group: Option<String>,
    /// Other key/value pairs the protocol carries (Dubbo attachments, Bolt's header map), in
    /// wire order.
    pub attachments: Vec<(String, String)>,
}

impl RouteHeaders {
    /// A routing property by name: `service`, `method`, `version`, `group` map to the fields
    /// above, anything else is looked up in the attachments (first match).
    pub fn get(&self, key: &str) -> Option<&str> {
        match key {
            "service" => self.service.as_deref(),
            "method" => self.method.as_deref(),
            "version" => self.version.as_deref(),
            "group" => self.group.as_deref(),
            _ => self
                .attachments
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str()),
        }
    }
}

/// One decoded frame: its kind, request id, routing headers and the bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the frame is.
    pub kind: FrameKind,
    /// The request id as on the wire (responses carry the id of their request).
    pub request_id: u64,
    /// Where the id sits in `raw`.
    pub id_field: IdField,
    /// Routing headers (requests only).
    pub headers: RouteHeaders,
    /// The response status (responses only).
    pub status: Option<Status>,
    /// The whole frame as on the wire, header and body. Forwarded as is apart from the id.
    pub raw: BytesMut,
}

impl Frame {
    /// Rewrite the request id: patches the bytes at `id_field` and `request_id`. An id wider
    /// than the field is truncated to the field's width (the proxy allocates ids below
    /// [`IdField::max`]).
    pub fn set_request_id(&mut self, id: u64) {
        let IdField { offset, width } = self.id_field;
        let width = usize::from(width).min(8);
        let be = id.to_be_bytes();
        if let Some(dst) = self.raw.get_mut(offset..offset + width) {
            dst.copy_from_slice(&be[8 - width..]);
            self.request_id = id & self.id_field.max();
        }
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the frame has no bytes (never true for a decoded frame).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// Why the proxy answers a request itself. Each codec maps these onto its own status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No route matched the request (Envoy response flag NR).
    NoRoute,
    /// The route's cluster is unknown or has no healthy host (NC / UH).
    NoHealthyUpstream,
    /// Connecting to the upstream host failed (UF).
    ConnectFailure,
    /// The upstream connection was lost with the request in flight (UC).
    UpstreamReset,
    /// The route's timeout expired (UT).
    Timeout,
    /// A limit was reached: circuit breaker, too many requests in flight, no free id (UO).
    Overflow,
    /// The request could not be handled (bad frame content the proxy needs to read).
    BadRequest,
}

impl ErrorKind {
    /// Envoy's short response flag for access logs.
    pub fn response_flag(self) -> &'static str {
        match self {
            Self::NoRoute => "NR",
            Self::NoHealthyUpstream => "UH",
            Self::ConnectFailure => "UF",
            Self::UpstreamReset => "UC",
            Self::Timeout => "UT",
            Self::Overflow => "UO",
            Self::BadRequest => "DPE",
        }
    }
}

/// A frame that cannot be decoded. The connection it came from is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The frame's declared size is over the configured limit.
    #[error("{protocol}: frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The codec's name.
        protocol: &'static str,
        /// Declared size (header and body).
        size: u64,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a frame of this protocol.
    #[error("{protocol}: malformed frame: {reason}")]
    Malformed {
        /// The codec's name.
        protocol: &'static str,
        /// What is wrong, for logs.
        reason: Cow<'static, str>,
    },
}

/// The answer of [`XProtocol::detect`] for the bytes seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detect {
    /// The bytes so far are a prefix of this protocol's magic: more are needed.
    NeedMore,
    /// The bytes start with this protocol's magic.
    Matched,
    /// Not this protocol.
    NotMatched,
}

/// A multiplexed RPC protocol. Implementations are stateless between frames (a frame is
/// decoded from the buffer alone) and carry their limits (maximum frame size) from config.
/// Nothing here may panic on any input or allocate more than the configured frame size.
pub trait XProtocol: Send + Sync + std::fmt::Debug + 'static {
    /// The protocol's name for logs and stats (`dubbo`, `bolt`).
    fn name(&self) -> &'static str;

    /// Whether `prefix` (the first bytes of a connection) starts with this protocol's magic.
    fn detect(&self, prefix: &[u8]) -> Detect;

    /// Decode one frame from the front of `buf`, removing its bytes. `Ok(None)` when `buf`
    /// holds no complete frame yet (needing more bytes is not an error; nothing is consumed).
    /// A header that declares a frame over the limit is an error as soon as it is read.
    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError>;

    /// Append the frame's bytes to `dst`. The default writes [`Frame::raw`] unchanged, which
    /// is right for protocols whose id rewrite is the in-place patch of
    /// [`Frame::set_request_id`]; a protocol with a checksum over the header overrides it.
    fn encode(&self, frame: &Frame, dst: &mut BytesMut) {
        dst.extend_from_slice(&frame.raw);
    }

    /// The response to a heartbeat request (same id, the protocol's heartbeat response).
    fn heartbeat_response(&self, request: &Frame) -> Frame;

    /// A response of the protocol's own shape that tells the client its request failed, with
    /// the status code the protocol uses for `kind` and `message` in the body where the
    /// protocol has room for one. Same id as `request`.
    fn error_response(&self, request: &Frame, kind: ErrorKind, message: &str) -> Frame;

    /// A frame that tells the peer to stop sending requests on this connection (sent to
    /// downstream connections when a listener drains), if the protocol has one.
    fn goaway(&self) -> Option<Frame> {
        None
    }
}

/// A codec shared by the connections of a filter chain.
pub type Codec = Arc<dyn XProtocol>;

/// Which of several codecs the first bytes of a connection select, as MOSN's
/// `SelectStreamFactoryProtocol`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selected {
    /// Undecided: some codec's magic still matches a prefix of the bytes.
    NeedMore,
    /// The index in the list of the first codec whose magic matches.
    Codec(usize),
    /// No codec matches.
    None,
}

/// Pick the codec for a connection from its first bytes. The first codec that matches wins;
/// while a codec earlier in the list is undecided the answer is `NeedMore`.
pub fn detect(codecs: &[Codec], prefix: &[u8]) -> Selected {
    let mut undecided = false;
    for (i, codec) in codecs.iter().enumerate() {
        match codec.detect(prefix) {
            Detect::Matched if !undecided => return Selected::Codec(i),
            Detect::Matched | Detect::NeedMore => undecided = true,
            Detect::NotMatched => {}
        }
    }
    if undecided {
        Selected::NeedMore
    } else {
        Selected::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Magic(&'static [u8]);

    impl XProtocol for Magic {
        fn name(&self) -> &'static str {
            "magic"
        }
        fn detect(&self, prefix: &[u8]) -> Detect {
            let n = prefix.len().min(self.0.len());
            if prefix[..n] != self.0[..n] {
                Detect::NotMatched
            } else if n == self.0.len() {
                Detect::Matched
            } else {
                Detect::NeedMore
            }
        }
        fn decode(&self, _: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
            Ok(None)
        }
        fn heartbeat_response(&self, request: &Frame) -> Frame {
            request.clone()
        }
        fn error_response(&self, request: &Frame, _: ErrorKind, _: &str) -> Frame {
            request.clone()
        }
    }

    #[test]
    fn detect_picks_by_magic_and_waits_for_undecided() {
        let codecs: Vec<Codec> = vec![Arc::new(Magic(&[0xda, 0xbb])), Arc::new(Magic(&[1]))];
        assert_eq!(detect(&codecs, &[]), Selected::NeedMore);
        assert_eq!(detect(&codecs, &[0xda]), Selected::NeedMore);
        assert_eq!(detect(&codecs, &[0xda, 0xbb, 0]), Selected::Codec(0));
        assert_eq!(detect(&codecs, &[1, 0]), Selected::Codec(1));
        assert_eq!(detect(&codecs, b"GET /"), Selected::None);
    }

    #[test]
    fn set_request_id_patches_in_place() {
        let mut f = Frame {
            kind: FrameKind::Request,
            request_id: 7,
            id_field: IdField {
                offset: 2,
                width: 4,
            },
            headers: RouteHeaders::default(),
            status: None,
            raw: BytesMut::from(&[9u8, 9, 0, 0, 0, 7, 9][..]),
        };
        f.set_request_id(0x0102_0304);
        assert_eq!(&f.raw[..], &[9, 9, 1, 2, 3, 4, 9]);
        assert_eq!(f.request_id, 0x0102_0304);
        assert_eq!(f.id_field.max(), u64::from(u32::MAX));
    }

    #[test]
    fn route_headers_get_maps_names() {
        let h = RouteHeaders {
            service: Some("s".into()),
            method: Some("m".into()),
            attachments: vec![("k".into(), "v".into())],
            ..Default::default()
        };
        assert_eq!(h.get("service"), Some("s"));
        assert_eq!(h.get("method"), Some("m"));
        assert_eq!(h.get("version"), None);
        assert_eq!(h.get("k"), Some("v"));
    }
}
