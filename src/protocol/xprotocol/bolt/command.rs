//! [`Command`]: one Bolt v1 frame as the bytes it is made of, with typed accessors, and the
//! builders of frames (requests, responses, heartbeats and their answers).

use super::{
    BoltError, CODEC_HESSIAN2, CmdCode, CmdType, Layout, PROTOCOL_CODE, Peek, ResponseStatus, VER2,
    header_key, peek, walk_header_map,
};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// One Bolt v1 frame, kept as the bytes it is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub(super) raw: BytesMut,
    pub(super) layout: Layout,
}

impl Command {
    /// Take one frame off the front of `buf`: `Ok(None)` when more bytes are needed (the
    /// buffer is left as it is), an error when the bytes cannot be a frame or one longer than
    /// `max_frame_size`.
    pub fn decode(buf: &mut BytesMut, max_frame_size: usize) -> Result<Option<Command>, BoltError> {
        match peek(buf, max_frame_size)? {
            Peek::NeedMore(_) => Ok(None),
            Peek::Frame(layout) => Ok(Some(Command {
                raw: buf.split_to(layout.frame_len()),
                layout,
            })),
        }
    }

    /// The fixed fields.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The request id.
    pub fn request_id(&self) -> u32 {
        self.layout.request_id
    }

    /// Rewrite the request id in place (the proxy's id mapping on a shared connection).
    pub fn set_request_id(&mut self, id: u32) {
        self.layout.request_id = id;
        self.raw[5..9].copy_from_slice(&id.to_be_bytes());
    }

    /// A request or one-way request (heartbeats included).
    pub fn is_request(&self) -> bool {
        self.layout.cmd_type != CmdType::Response
    }

    /// A one-way request: no response will come.
    pub fn is_oneway(&self) -> bool {
        self.layout.cmd_type == CmdType::Oneway
    }

    /// A heartbeat (request side) or a heartbeat answer (response side).
    pub fn is_heartbeat(&self) -> bool {
        self.layout.cmd_code == CmdCode::Heartbeat
    }

    /// A response's status (`SUCCESS` for requests).
    pub fn status(&self) -> ResponseStatus {
        self.layout.status
    }

    /// The serializer byte of the content.
    pub fn codec(&self) -> u8 {
        self.layout.codec
    }

    /// A request's timeout in milliseconds, if it set one.
    pub fn timeout_ms(&self) -> Option<u32> {
        match self.layout.cmd_type {
            CmdType::Response => None,
            _ => u32::try_from(self.layout.timeout_ms)
                .ok()
                .filter(|t| *t > 0),
        }
    }

    /// The class name bytes (for SOFARPC, `SofaRequest` / `SofaResponse`).
    pub fn class_name_bytes(&self) -> &[u8] {
        &self.raw[self.layout.class_start()..self.layout.header_start()]
    }

    /// The class name, if it is UTF-8.
    pub fn class_name(&self) -> Option<&str> {
        std::str::from_utf8(self.class_name_bytes()).ok()
    }

    /// The header map, undecoded.
    pub fn header_map_bytes(&self) -> &[u8] {
        &self.raw[self.layout.header_start()..self.layout.content_start()]
    }

    /// The header map's entries in wire order (a null value is empty).
    pub fn headers(&self) -> Vec<(&[u8], &[u8])> {
        let mut out = Vec::new();
        // Checked when the frame was decoded or built.
        let _ = walk_header_map(self.header_map_bytes(), |k, v| {
            out.push((k, v));
            true
        });
        out
    }

    /// The first value of header `key`.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        let mut found = None;
        let _ = walk_header_map(self.header_map_bytes(), |k, v| {
            if k == key.as_bytes() {
                found = Some(v);
                false
            } else {
                true
            }
        });
        found
    }

    /// The first value of header `key`, if UTF-8.
    pub fn header_str(&self, key: &str) -> Option<&str> {
        self.header(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The service a request is for: the `service` header, else `sofa_head_target_service`.
    pub fn service(&self) -> Option<&str> {
        self.header_str(header_key::SERVICE)
            .filter(|s| !s.is_empty())
            .or_else(|| self.header_str(header_key::TARGET_SERVICE))
    }

    /// The method a request calls: the `sofa_head_method_name` header.
    pub fn method(&self) -> Option<&str> {
        self.header_str(header_key::METHOD_NAME)
    }

    /// The content, undecoded.
    pub fn content(&self) -> &[u8] {
        &self.raw[self.layout.content_start()..]
    }

    /// The whole frame as it goes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The whole frame, for writing.
    pub fn into_bytes(self) -> Bytes {
        self.raw.freeze()
    }

    /// Append the frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.extend_from_slice(&self.raw);
    }

    /// Build a frame from its parts; `header` pairs are written as SOFARPC's
    /// `SimpleMapSerializer` does. Errors when a part is longer than its length field allows
    /// (class name or header map over 32767 bytes, content over 2^31 - 1).
    pub fn build(
        head: CommandHead,
        class: &[u8],
        header: &[(&[u8], &[u8])],
        content: &[u8],
    ) -> Result<Command, BoltError> {
        let mut map = BytesMut::new();
        for (k, v) in header {
            put_str(&mut map, k)?;
            put_str(&mut map, v)?;
        }
        for (field, len, max) in [
            ("class", class.len(), i16::MAX as usize),
            ("header", map.len(), i16::MAX as usize),
            ("content", content.len(), i32::MAX as usize),
        ] {
            if len > max {
                return Err(BoltError::PartTooLong { field, len });
            }
        }
        Ok(Command::assemble(head, class, &map, content))
    }

    /// `build` for parts known to fit their length fields.
    pub(super) fn assemble(head: CommandHead, class: &[u8], map: &[u8], content: &[u8]) -> Command {
        let layout = Layout {
            cmd_type: head.cmd_type,
            cmd_code: head.cmd_code,
            ver2: head.ver2,
            request_id: head.request_id,
            codec: head.codec,
            timeout_ms: head.timeout_ms,
            status: head.status,
            class_len: class.len() as u16,
            header_len: map.len() as u16,
            content_len: content.len() as u32,
        };
        let mut raw = BytesMut::with_capacity(layout.frame_len());
        raw.put_u8(PROTOCOL_CODE);
        raw.put_u8(layout.cmd_type.byte());
        raw.put_u16(layout.cmd_code.value());
        raw.put_u8(layout.ver2);
        raw.put_u32(layout.request_id);
        raw.put_u8(layout.codec);
        match layout.cmd_type {
            CmdType::Response => raw.put_u16(layout.status.0),
            CmdType::Request | CmdType::Oneway => raw.put_i32(layout.timeout_ms),
        }
        raw.put_u16(layout.class_len);
        raw.put_u16(layout.header_len);
        raw.put_u32(layout.content_len);
        raw.extend_from_slice(class);
        raw.extend_from_slice(map);
        raw.extend_from_slice(content);
        Command { raw, layout }
    }

    /// The answer to a heartbeat: a response with command code HEARTBEAT, status SUCCESS and
    /// the heartbeat's id and codec, nothing else (SOFABolt's `HeartbeatAckCommand`).
    pub fn heartbeat_ack(&self) -> Command {
        Command::assemble(
            CommandHead::response(self.request_id(), ResponseStatus::SUCCESS)
                .cmd_code(CmdCode::Heartbeat)
                .codec(self.codec()),
            &[],
            &[],
            &[],
        )
    }

    /// An RPC response to this request with `status` and no class, header or content, as a
    /// proxy answers when it cannot forward (MOSN's Bolt hijack response).
    pub fn error_response(&self, status: ResponseStatus) -> Command {
        error_response(self.request_id(), self.codec(), status)
    }
}

/// An RPC response with `status` and nothing else, for request `request_id`.
pub fn error_response(request_id: u32, codec: u8, status: ResponseStatus) -> Command {
    Command::assemble(
        CommandHead::response(request_id, status).codec(codec),
        &[],
        &[],
        &[],
    )
}

fn put_str(dst: &mut BytesMut, s: &[u8]) -> Result<(), BoltError> {
    if s.len() > i16::MAX as usize {
        return Err(BoltError::PartTooLong {
            field: "header",
            len: s.len(),
        });
    }
    dst.put_i32(s.len() as i32);
    dst.extend_from_slice(s);
    Ok(())
}

/// The fixed fields of a frame to build (see [`Command::build`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandHead {
    cmd_type: CmdType,
    cmd_code: CmdCode,
    ver2: u8,
    request_id: u32,
    codec: u8,
    timeout_ms: i32,
    status: ResponseStatus,
}

impl CommandHead {
    /// An RPC request (or, with `oneway`, a one-way request) with a hessian 2 codec byte.
    pub fn request(request_id: u32, oneway: bool, timeout_ms: i32) -> Self {
        CommandHead {
            cmd_type: if oneway {
                CmdType::Oneway
            } else {
                CmdType::Request
            },
            cmd_code: CmdCode::Request,
            ver2: VER2,
            request_id,
            codec: CODEC_HESSIAN2,
            timeout_ms,
            status: ResponseStatus::SUCCESS,
        }
    }

    /// A heartbeat.
    pub fn heartbeat(request_id: u32) -> Self {
        Self::request(request_id, false, 0).cmd_code(CmdCode::Heartbeat)
    }

    /// An RPC response.
    pub fn response(request_id: u32, status: ResponseStatus) -> Self {
        CommandHead {
            cmd_type: CmdType::Response,
            cmd_code: CmdCode::Response,
            ver2: VER2,
            request_id,
            codec: CODEC_HESSIAN2,
            timeout_ms: 0,
            status,
        }
    }

    /// Set the command code.
    pub fn cmd_code(mut self, code: CmdCode) -> Self {
        self.cmd_code = code;
        self
    }

    /// Set the serializer byte.
    pub fn codec(mut self, codec: u8) -> Self {
        self.codec = codec;
        self
    }

    /// Set `ver2`.
    pub fn ver2(mut self, ver2: u8) -> Self {
        self.ver2 = ver2;
        self
    }
}

/// Decode every whole frame at the start of `buf` (for tests and fuzzing): the frames, and
/// either the number of bytes left over or the error that stopped decoding.
pub fn decode_all(
    mut buf: &[u8],
    max_frame_size: usize,
) -> (Vec<Command>, Result<usize, BoltError>) {
    let mut frames = Vec::new();
    loop {
        match peek(buf, max_frame_size) {
            Ok(Peek::NeedMore(_)) => return (frames, Ok(buf.len())),
            Ok(Peek::Frame(layout)) => {
                let len = layout.frame_len();
                frames.push(Command {
                    raw: BytesMut::from(&buf[..len]),
                    layout,
                });
                buf.advance(len);
            }
            Err(e) => return (frames, Err(e)),
        }
    }
}
