//! SOFARPC Bolt v1 frames (protocol code 1): requests, one-way requests, responses,
//! heartbeats and their answers, as SOFABolt's `RpcProtocol` lays them out.
//!
//! ```text
//! request (22-byte header)
//! proto(1) type(1) cmdcode(2) ver2(1) requestId(4) codec(1) timeout(4) classLen(2) headerLen(2) contentLen(4)
//! response (20-byte header)
//! proto(1) type(1) cmdcode(2) ver2(1) requestId(4) codec(1) respStatus(2) classLen(2) headerLen(2) contentLen(4)
//! then className, header map, content; every integer big-endian.
//! ```
//!
//! `type` is 1 (request), 2 (one-way request) or 0 (response); `cmdcode` is 0 (heartbeat), 1
//! (RPC request) or 2 (RPC response). The header map is what SOFARPC's `SimpleMapSerializer`
//! writes: pairs of (int32 length, UTF-8 bytes) for key then value, a value length of -1 being
//! a null value. The content (hessian 2, protobuf...) is carried as raw bytes; the one look
//! into it is for the method name of a hessian 2 `SofaRequest` whose header map names none
//! (see `hessian_method_name`), bounded and read-only.
//!
//! [`Bolt`] is the [`XProtocol`] the generic proxy uses: it decodes a frame into the
//! framework's [`Frame`] (kind, id field at byte 5, routing headers from the header map) and
//! answers heartbeats and failures with Bolt's own frames and status codes. [`Command`] is a
//! typed view of one frame, used to build frames (local replies, tests, load generators;
//! `bolt/command.rs`). Both keep the bytes a frame arrived in, so forwarding is one copy and
//! rewriting the request id is four bytes written in place. Everything is checked before a
//! frame is accepted: the protocol code, the type and command code, the three lengths (signed
//! on the wire; negative is an error), the total against the configured maximum (no buffer
//! grows past it) and the header map's structure. Nothing here panics on any input or depends
//! on routes, clusters or connections.

use super::{
    CodecError, Detect, ErrorKind, Frame, FrameKind, IdField, RouteHeaders, Status, XProtocol,
};
use bytes::{BufMut, BytesMut};

mod command;
#[cfg(test)]
mod tests;

pub use command::{Command, CommandHead, decode_all, error_response};

/// Protocol code of Bolt v1 (`RpcProtocol.PROTOCOL_CODE`).
pub const PROTOCOL_CODE: u8 = 1;
/// Protocol code of Bolt v2 (`RpcProtocolV2`): recognised only to name it in errors.
pub const PROTOCOL_CODE_V2: u8 = 2;
/// Length of a request header.
pub const REQUEST_HEADER_LEN: usize = 22;
/// Length of a response header.
pub const RESPONSE_HEADER_LEN: usize = 20;
/// The largest frame accepted when the codec config sets no `max_frame_size` (8 MiB).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 8 << 20;
/// `ver2` tern writes in frames it makes itself (SOFABolt's `RpcCommand` default).
pub const VER2: u8 = 1;

/// Header-map keys that SOFARPC clients write and tern routes on.
pub mod header_key {
    /// The service unique name (`interface:version[:uniqueId]`), written by every SOFARPC
    /// client (`RemotingConstants.HEAD_SERVICE`).
    pub const SERVICE: &str = "service";
    /// The target service (`RemotingConstants.HEAD_TARGET_SERVICE`).
    pub const TARGET_SERVICE: &str = "sofa_head_target_service";
    /// The method name (`RemotingConstants.HEAD_METHOD_NAME`).
    pub const METHOD_NAME: &str = "sofa_head_method_name";
    /// The target application (`RemotingConstants.HEAD_TARGET_APP`).
    pub const TARGET_APP: &str = "sofa_head_target_app";
}

/// Class name of SOFARPC requests (`SofaRequest`).
pub const SOFA_REQUEST_CLASS: &str = "com.alipay.sofa.rpc.core.request.SofaRequest";
/// Class name of SOFARPC responses (`SofaResponse`).
pub const SOFA_RESPONSE_CLASS: &str = "com.alipay.sofa.rpc.core.response.SofaResponse";

/// Command type byte (`RpcCommandType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmdType {
    /// `RESPONSE` (0).
    Response,
    /// `REQUEST` (1): the client waits for a response.
    Request,
    /// `REQUEST_ONEWAY` (2): no response is ever sent.
    Oneway,
}

impl CmdType {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Response),
            1 => Some(Self::Request),
            2 => Some(Self::Oneway),
            _ => None,
        }
    }

    fn byte(self) -> u8 {
        match self {
            Self::Response => 0,
            Self::Request => 1,
            Self::Oneway => 2,
        }
    }
}

/// Command code (`CommonCommandCode` and `RpcCommandCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmdCode {
    /// `HEARTBEAT` (0): a heartbeat (request types) or its answer (response type).
    Heartbeat,
    /// `RPC_REQUEST` (1).
    Request,
    /// `RPC_RESPONSE` (2).
    Response,
}

impl CmdCode {
    fn from_u16(v: u16) -> Option<Self> {
        match v {
            0 => Some(Self::Heartbeat),
            1 => Some(Self::Request),
            2 => Some(Self::Response),
            _ => None,
        }
    }

    fn value(self) -> u16 {
        match self {
            Self::Heartbeat => 0,
            Self::Request => 1,
            Self::Response => 2,
        }
    }
}

/// A response status (`com.alipay.remoting.ResponseStatus`). Any value is carried through;
/// the named ones are SOFABolt's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseStatus(pub u16);

impl ResponseStatus {
    /// `SUCCESS`.
    pub const SUCCESS: Self = Self(0x0000);
    /// `ERROR`: error caught.
    pub const ERROR: Self = Self(0x0001);
    /// `SERVER_EXCEPTION`: the server's code threw.
    pub const SERVER_EXCEPTION: Self = Self(0x0002);
    /// `UNKNOWN`.
    pub const UNKNOWN: Self = Self(0x0003);
    /// `SERVER_THREADPOOL_BUSY`: the server is overloaded.
    pub const SERVER_THREADPOOL_BUSY: Self = Self(0x0004);
    /// `ERROR_COMM`: communication error.
    pub const ERROR_COMM: Self = Self(0x0005);
    /// `NO_PROCESSOR`: nothing handles this request.
    pub const NO_PROCESSOR: Self = Self(0x0006);
    /// `TIMEOUT`.
    pub const TIMEOUT: Self = Self(0x0007);
    /// `CLIENT_SEND_ERROR`: sending failed.
    pub const CLIENT_SEND_ERROR: Self = Self(0x0008);
    /// `CODEC_EXCEPTION`: encoding or decoding failed.
    pub const CODEC_EXCEPTION: Self = Self(0x0009);
    /// `CONNECTION_CLOSED`.
    pub const CONNECTION_CLOSED: Self = Self(0x0010);
    /// `SERVER_SERIAL_EXCEPTION`.
    pub const SERVER_SERIAL_EXCEPTION: Self = Self(0x0011);
    /// `SERVER_DESERIAL_EXCEPTION`.
    pub const SERVER_DESERIAL_EXCEPTION: Self = Self(0x0012);

    /// SOFABolt's name for the status, if it has one.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0000 => "SUCCESS",
            0x0001 => "ERROR",
            0x0002 => "SERVER_EXCEPTION",
            0x0003 => "UNKNOWN",
            0x0004 => "SERVER_THREADPOOL_BUSY",
            0x0005 => "ERROR_COMM",
            0x0006 => "NO_PROCESSOR",
            0x0007 => "TIMEOUT",
            0x0008 => "CLIENT_SEND_ERROR",
            0x0009 => "CODEC_EXCEPTION",
            0x0010 => "CONNECTION_CLOSED",
            0x0011 => "SERVER_SERIAL_EXCEPTION",
            0x0012 => "SERVER_DESERIAL_EXCEPTION",
            _ => return None,
        })
    }
}

/// Why bytes are not a Bolt v1 frame. Each is fatal for the connection: after a bad header
/// nothing says where the next frame starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoltError {
    /// The first byte is not protocol code 1.
    #[error("bolt: protocol code {0:#04x} is not Bolt v1 (1){hint}", hint = if *.0 == PROTOCOL_CODE_V2 { "; Bolt v2 is not supported" } else { "" })]
    ProtocolCode(u8),
    /// The type byte is none of 0, 1, 2.
    #[error("bolt: unknown command type {0}")]
    CmdType(u8),
    /// The command code is unknown or does not fit the type.
    #[error("bolt: command code {code} does not fit command type {cmd_type}")]
    CmdCode {
        /// The type byte.
        cmd_type: u8,
        /// The command code.
        code: u16,
    },
    /// A length field is negative.
    #[error("bolt: negative {field} length {len}")]
    NegativeLength {
        /// `class`, `header` or `content`.
        field: &'static str,
        /// The value read.
        len: i32,
    },
    /// The frame is bigger than the configured maximum.
    #[error("bolt: frame of {len} bytes exceeds max_frame_size {max}")]
    TooLarge {
        /// The frame's total length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A part given to [`Command::build`] is longer than its length field allows.
    #[error("bolt: {field} of {len} bytes is longer than a frame can carry")]
    PartTooLong {
        /// `class`, `header` or `content`.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The header map does not parse as length-prefixed key/value pairs.
    #[error("bolt: malformed header map at byte {at} of {len}: {reason}")]
    HeaderMap {
        /// Offset inside the header map.
        at: usize,
        /// The header map's length.
        len: usize,
        /// What was wrong.
        reason: &'static str,
    },
}

/// The fixed part of a frame, as read from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Request, one-way request or response.
    pub cmd_type: CmdType,
    /// Heartbeat, RPC request or RPC response.
    pub cmd_code: CmdCode,
    /// `ver2`, the remoting command version.
    pub ver2: u8,
    /// The request id (a Java `int`, carried as its bits).
    pub request_id: u32,
    /// The serializer of the content (1 hessian 2, 11 protobuf...).
    pub codec: u8,
    /// Requests: the client's timeout in milliseconds (0: none).
    pub timeout_ms: i32,
    /// Responses: the status.
    pub status: ResponseStatus,
    /// Length of the class name.
    pub class_len: u16,
    /// Length of the header map.
    pub header_len: u16,
    /// Length of the content.
    pub content_len: u32,
}

impl Layout {
    /// Length of the fixed header: 22 for requests, 20 for responses.
    pub fn header_size(&self) -> usize {
        header_size(self.cmd_type)
    }

    fn class_start(&self) -> usize {
        self.header_size()
    }

    fn header_start(&self) -> usize {
        self.class_start() + self.class_len as usize
    }

    fn content_start(&self) -> usize {
        self.header_start() + self.header_len as usize
    }

    /// The whole frame's length.
    pub fn frame_len(&self) -> usize {
        self.content_start() + self.content_len as usize
    }
}

fn header_size(t: CmdType) -> usize {
    match t {
        CmdType::Response => RESPONSE_HEADER_LEN,
        CmdType::Request | CmdType::Oneway => REQUEST_HEADER_LEN,
    }
}

/// What the start of a buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// Not a whole frame yet: nothing can be decided before the buffer holds this many bytes.
    NeedMore(usize),
    /// A whole, valid frame of `layout.frame_len()` bytes starts the buffer.
    Frame(Layout),
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Read the header at the start of `buf` and, once the frame is whole, check its header map.
/// Errors as soon as the bytes seen so far cannot start a valid frame; a frame longer than
/// `max_frame_size` is an error as soon as its header is read, so no caller buffers it.
pub fn peek(buf: &[u8], max_frame_size: usize) -> Result<Peek, BoltError> {
    let Some(&proto) = buf.first() else {
        return Ok(Peek::NeedMore(REQUEST_HEADER_LEN.min(RESPONSE_HEADER_LEN)));
    };
    if proto != PROTOCOL_CODE {
        return Err(BoltError::ProtocolCode(proto));
    }
    let Some(&type_byte) = buf.get(1) else {
        return Ok(Peek::NeedMore(RESPONSE_HEADER_LEN));
    };
    let cmd_type = CmdType::from_byte(type_byte).ok_or(BoltError::CmdType(type_byte))?;
    let hlen = header_size(cmd_type);
    if buf.len() < 4 {
        return Ok(Peek::NeedMore(hlen));
    }
    let code = be16(buf, 2);
    let cmd_code = match (cmd_type, CmdCode::from_u16(code)) {
        (CmdType::Request | CmdType::Oneway, Some(c @ (CmdCode::Heartbeat | CmdCode::Request)))
        | (CmdType::Response, Some(c @ (CmdCode::Heartbeat | CmdCode::Response))) => c,
        _ => {
            return Err(BoltError::CmdCode {
                cmd_type: type_byte,
                code,
            });
        }
    };
    if buf.len() < hlen {
        return Ok(Peek::NeedMore(hlen));
    }
    let ver2 = buf[4];
    let request_id = be32(buf, 5);
    let codec = buf[9];
    let (timeout_ms, status, lens) = match cmd_type {
        CmdType::Response => (0, ResponseStatus(be16(buf, 10)), 12),
        CmdType::Request | CmdType::Oneway => (be32(buf, 10) as i32, ResponseStatus::SUCCESS, 14),
    };
    let class_len = be16(buf, lens) as i16;
    let header_len = be16(buf, lens + 2) as i16;
    let content_len = be32(buf, lens + 4) as i32;
    for (field, len) in [
        ("class", i32::from(class_len)),
        ("header", i32::from(header_len)),
        ("content", content_len),
    ] {
        if len < 0 {
            return Err(BoltError::NegativeLength { field, len });
        }
    }
    let layout = Layout {
        cmd_type,
        cmd_code,
        ver2,
        request_id,
        codec,
        timeout_ms,
        status,
        class_len: class_len as u16,
        header_len: header_len as u16,
        content_len: content_len as u32,
    };
    // At most 20 + 2 * 32767 + 2^31 - 1: no overflow in usize on 64-bit, and u64 elsewhere.
    let total = hlen as u64 + class_len as u64 + header_len as u64 + content_len as u64;
    if total > max_frame_size as u64 {
        return Err(BoltError::TooLarge {
            len: total,
            max: max_frame_size,
        });
    }
    let total = layout.frame_len();
    if buf.len() < total {
        return Ok(Peek::NeedMore(total));
    }
    check_header_map(&buf[layout.header_start()..layout.content_start()])?;
    Ok(Peek::Frame(layout))
}

/// Walk a header map, calling `f` on each (key, value); a null value (length -1) is empty.
fn walk_header_map<'a>(
    map: &'a [u8],
    mut f: impl FnMut(&'a [u8], &'a [u8]) -> bool,
) -> Result<(), BoltError> {
    let err = |at, reason| BoltError::HeaderMap {
        at,
        len: map.len(),
        reason,
    };
    let mut at = 0;
    while at < map.len() {
        let mut field = [&[][..]; 2];
        for (i, slot) in field.iter_mut().enumerate() {
            let Some(len) = map.get(at..at + 4) else {
                return Err(err(at, "length cut short"));
            };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            at += 4;
            if len < 0 {
                // SimpleMapSerializer writes -1 for a null value; nothing else is negative.
                if i == 1 && len == -1 {
                    continue;
                }
                return Err(err(at - 4, "negative length"));
            }
            let Some(bytes) = map.get(at..at + len as usize) else {
                return Err(err(at, "length past the end of the map"));
            };
            *slot = bytes;
            at += len as usize;
        }
        if !f(field[0], field[1]) {
            return Ok(());
        }
    }
    Ok(())
}

fn check_header_map(map: &[u8]) -> Result<(), BoltError> {
    walk_header_map(map, |_, _| true)
}

/// Offset of the request id in every Bolt v1 frame.
const ID_OFFSET: usize = 5;

/// Key under which [`Bolt`] adds a request's class name to its routing attachments (after
/// the header map, so a header of the same name wins).
pub const CLASS_NAME_KEY: &str = "bolt.class_name";

/// Header-map key of the reason in tern's own error responses.
pub const ERROR_MESSAGE_KEY: &str = "tern_error";

/// Serializer byte of hessian 2 content.
pub const CODEC_HESSIAN2: u8 = 1;
/// Serializer byte of protobuf content.
pub const CODEC_PROTOBUF: u8 = 11;

/// The Bolt v1 codec for the generic proxy (tern's `BoltCodecConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bolt {
    max_frame_size: usize,
}

impl Default for Bolt {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl Bolt {
    /// A codec that rejects frames longer than `max_frame_size` bytes (header included).
    pub fn new(max_frame_size: usize) -> Self {
        Self { max_frame_size }
    }

    /// The frame size limit.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// The Bolt status tern answers with when it cannot forward a request:
    ///
    /// | why | status |
    /// | --- | --- |
    /// | no route | `NO_PROCESSOR` (nothing here handles the service) |
    /// | no healthy host, connect failure | `ERROR_COMM` (communication error) |
    /// | upstream connection lost mid-flight | `CONNECTION_CLOSED` |
    /// | route timeout | `TIMEOUT` |
    /// | circuit breaker, no free id | `SERVER_THREADPOOL_BUSY` (overloaded) |
    /// | a request tern cannot read | `CODEC_EXCEPTION` |
    pub fn status_for(kind: ErrorKind) -> ResponseStatus {
        match kind {
            ErrorKind::NoRoute => ResponseStatus::NO_PROCESSOR,
            ErrorKind::NoHealthyUpstream | ErrorKind::ConnectFailure => ResponseStatus::ERROR_COMM,
            ErrorKind::UpstreamReset => ResponseStatus::CONNECTION_CLOSED,
            ErrorKind::Timeout => ResponseStatus::TIMEOUT,
            ErrorKind::Overflow => ResponseStatus::SERVER_THREADPOOL_BUSY,
            ErrorKind::BadRequest => ResponseStatus::CODEC_EXCEPTION,
        }
    }

    /// The framework's view of a decoded command.
    pub fn frame(command: Command) -> Frame {
        let layout = command.layout;
        let kind = match (layout.cmd_type, layout.cmd_code) {
            (CmdType::Response, CmdCode::Heartbeat) => FrameKind::HeartbeatResponse,
            (CmdType::Response, _) => FrameKind::Response,
            (_, CmdCode::Heartbeat) => FrameKind::Heartbeat,
            (CmdType::Oneway, _) => FrameKind::Oneway,
            (CmdType::Request, _) => FrameKind::Request,
        };
        let headers = if kind.is_request() {
            route_headers(&command)
        } else {
            RouteHeaders::default()
        };
        let status = (layout.cmd_type == CmdType::Response).then_some(Status {
            code: u32::from(layout.status.0),
            ok: layout.status == ResponseStatus::SUCCESS,
        });
        Frame {
            kind,
            request_id: u64::from(layout.request_id),
            id_field: IdField {
                offset: ID_OFFSET,
                width: 4,
            },
            headers,
            status,
            raw: command.raw,
        }
    }
}

/// Routing headers of a request: `service` from the `service` header (else
/// `sofa_head_target_service`), its version and unique id (SOFARPC's `interface:version[:uniqueId]`)
/// as `version` and `group`, `method` from `sofa_head_method_name`, and every header-map
/// entry as an attachment, followed by the class name under [`CLASS_NAME_KEY`].
fn route_headers(command: &Command) -> RouteHeaders {
    let mut h = RouteHeaders::default();
    let _ = walk_header_map(command.header_map_bytes(), |k, v| {
        h.attachments.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
        true
    });
    let find = |key: &str| {
        h.attachments
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    h.service = find(header_key::SERVICE).or_else(|| find(header_key::TARGET_SERVICE));
    h.method = find(header_key::METHOD_NAME).or_else(|| {
        (command.codec() == CODEC_HESSIAN2
            && command.class_name_bytes() == SOFA_REQUEST_CLASS.as_bytes())
        .then(|| hessian_method_name(command.content()))
        .flatten()
    });
    if let Some(service) = &h.service {
        let mut parts = service.splitn(3, ':').skip(1);
        h.version = parts.next().filter(|v| !v.is_empty()).map(str::to_owned);
        h.group = parts.next().filter(|v| !v.is_empty()).map(str::to_owned);
    }
    h.attachments.push((
        CLASS_NAME_KEY.to_owned(),
        String::from_utf8_lossy(command.class_name_bytes()).into_owned(),
    ));
    h
}

/// The `methodName` of a hessian 2 `SofaRequest`, for requests whose header map names no
/// method (sofa-bolt-node's hessian requests). The fields before it are skipped with a bounded
/// reader (depth and class limits); anything malformed is `None`, and tern reads no further
/// into the content than the method name.
///
/// Hessian 2: a class definition `C` string(class name) int(field count) string(field)…,
/// then an object `0x60..=0x6f` (or `O` int) whose field values follow in that order.
fn hessian_method_name(content: &[u8]) -> Option<String> {
    use super::dubbo::hessian::Reader;
    const MAX_FIELDS: usize = 64;
    let (&tag, rest) = content.split_first()?;
    if tag != b'C' {
        return None;
    }
    let mut r = Reader::new(rest);
    if r.string().ok()?.as_deref() != Some(SOFA_REQUEST_CLASS) {
        return None;
    }
    let at = r.position();
    let (count, used) = match *rest.get(at)? {
        // Compact ints are -16..=47; a negative field count is malformed.
        b @ 0x80..=0xbf => (usize::try_from(i32::from(b) - 0x90).ok()?, 1),
        b @ 0xc8..=0xcf => (
            (usize::from(b) - 0xc8) << 8 | usize::from(*rest.get(at + 1)?),
            2,
        ),
        _ => return None,
    };
    if count > MAX_FIELDS {
        return None;
    }
    let mut r = Reader::new(rest.get(at + used..)?);
    let mut method_at = None;
    for i in 0..count {
        if r.string().ok()?.as_deref() == Some("methodName") && method_at.is_none() {
            method_at = Some(i);
        }
    }
    let method_at = method_at?;
    let fields_end = at + used + r.position();
    // The object: a compact reference to definition 0 (0x60), as the only class defined.
    if *rest.get(fields_end)? != 0x60 {
        return None;
    }
    let mut r = Reader::new(rest.get(fields_end + 1..)?);
    // The fields before it are skipped whatever their type (Java writes `targetAppName` and
    // the `requestProps` map first), with the bounded skipper Dubbo's codec uses.
    let mut classes = vec![count];
    for _ in 0..method_at {
        r.skip(&mut classes).ok()?;
    }
    r.string().ok()?.filter(|m| !m.is_empty())
}

fn codec_error(e: BoltError) -> CodecError {
    match e {
        BoltError::TooLarge { len, max } => CodecError::TooLarge {
            protocol: "bolt",
            size: len,
            max,
        },
        other => CodecError::Malformed {
            protocol: "bolt",
            reason: other.to_string().into(),
        },
    }
}

impl XProtocol for Bolt {
    fn name(&self) -> &'static str {
        "bolt"
    }

    /// Protocol code 1, then a known command type and a command code that fits it.
    fn detect(&self, prefix: &[u8]) -> Detect {
        match peek(&prefix[..prefix.len().min(4)], usize::MAX) {
            Err(_) => Detect::NotMatched,
            Ok(_) if prefix.len() >= 4 => Detect::Matched,
            Ok(_) => Detect::NeedMore,
        }
    }

    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match Command::decode(buf, self.max_frame_size) {
            Ok(Some(command)) => Ok(Some(Self::frame(command))),
            Ok(None) => Ok(None),
            Err(e) => Err(codec_error(e)),
        }
    }

    fn heartbeat_response(&self, request: &Frame) -> Frame {
        let codec = request.raw.get(9).copied().unwrap_or(CODEC_HESSIAN2);
        let ack = Command::assemble(
            CommandHead::response(request.request_id as u32, ResponseStatus::SUCCESS)
                .cmd_code(CmdCode::Heartbeat)
                .codec(codec),
            &[],
            &[],
            &[],
        );
        Self::frame(ack)
    }

    /// An RPC response with [`Bolt::status_for`]`(kind)`, no class name and no content (what
    /// MOSN answers too: the content of a failed Bolt response is a serialized exception in the
    /// request's codec, which SOFARPC clients read only for `SERVER_EXCEPTION`); `message` goes
    /// in the header map under [`ERROR_MESSAGE_KEY`], where clients that read response headers
    /// see it and the others skip it.
    fn error_response(&self, request: &Frame, kind: ErrorKind, message: &str) -> Frame {
        let codec = request.raw.get(9).copied().unwrap_or(CODEC_HESSIAN2);
        let mut map = BytesMut::new();
        if !message.is_empty() {
            let message = &message.as_bytes()[..message.len().min(1024)];
            map.put_i32(ERROR_MESSAGE_KEY.len() as i32);
            map.extend_from_slice(ERROR_MESSAGE_KEY.as_bytes());
            map.put_i32(message.len() as i32);
            map.extend_from_slice(message);
        }
        Self::frame(Command::assemble(
            CommandHead::response(request.request_id as u32, Self::status_for(kind)).codec(codec),
            &[],
            &map,
            &[],
        ))
    }
}
