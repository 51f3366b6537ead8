//! The xDS stream's gRPC framing, over a tonic [`Channel`]: requests are length-prefixed
//! protobuf messages on the HTTP/2 request body, responses are read from the response body
//! with a buffer of our own.
//!
//! Why not `tonic::client::Grpc::streaming`: its receive buffer keeps the capacity of the
//! largest message it ever held. A control plane's first push is one message of tens of MB
//! (istiod sends every endpoint of the mesh in one EDS response), and tonic would keep that
//! much memory for the life of the stream. Here, a buffer that held a large message is given
//! back once the message is decoded.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HeaderValue, TE};
use http_body_util::BodyExt;
use std::marker::PhantomData;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The gRPC message header: a compression flag and a big-endian length.
const HEADER: usize = 5;
/// A buffer larger than this is given back after the message that grew it.
const KEEP_CAPACITY: usize = 256 * 1024;

/// Open a bidirectional stream at `path`: every message on `requests` is sent as it comes;
/// `metadata` are the request headers (initial metadata).
pub(super) async fn open<Req, Resp>(
    channel: Channel,
    path: http::uri::PathAndQuery,
    metadata: http::HeaderMap,
    requests: mpsc::Receiver<Req>,
    max_message: usize,
) -> Result<Responses<Resp>, BoxError>
where
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default,
{
    let frames = futures_util::stream::unfold(requests, |mut rx| async move {
        let msg = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(frame(&msg)), rx))
    });
    let body = tonic::body::Body::new(http_body_util::StreamBody::new(frames));
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .version(http::Version::HTTP_2)
        .uri(http::Uri::from(path))
        .body(body)?;
    let headers = req.headers_mut();
    headers.extend(metadata);
    headers.insert(TE, HeaderValue::from_static("trailers"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    let resp = channel.oneshot(req).await?;
    if resp.status() != http::StatusCode::OK {
        return Err(format!("xds stream refused: HTTP {}", resp.status()).into());
    }
    // A trailers-only response: the stream failed before it began.
    if let Some(status) = tonic::Status::from_header_map(resp.headers())
        && status.code() != tonic::Code::Ok
    {
        return Err(Box::new(status));
    }
    Ok(Responses {
        body: resp.into_body(),
        buf: BytesMut::new(),
        max_message,
        done: false,
        _resp: PhantomData,
    })
}

/// One message in gRPC's framing.
fn frame<M: prost::Message>(msg: &M) -> http_body::Frame<Bytes> {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(HEADER + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer of the right capacity cannot fail.
    let _ = msg.encode(&mut buf);
    http_body::Frame::data(buf.freeze())
}

/// The response side of a stream.
pub(super) struct Responses<Resp> {
    body: tonic::body::Body,
    buf: BytesMut,
    max_message: usize,
    done: bool,
    _resp: PhantomData<fn() -> Resp>,
}

impl<Resp: prost::Message + Default> Responses<Resp> {
    /// The next message; `None` when the server ended the stream with status OK.
    pub(super) async fn message(&mut self) -> Result<Option<Resp>, BoxError> {
        loop {
            if let Some(msg) = self.decode()? {
                return Ok(Some(msg));
            }
            if self.done {
                return Err("xds stream ended in the middle of a message".into());
            }
            match self.body.frame().await {
                None => {
                    self.done = true;
                    if self.buf.is_empty() {
                        return Err("xds stream ended without a gRPC status".into());
                    }
                }
                Some(frame) => {
                    let frame = frame?;
                    match frame.into_data() {
                        Ok(data) => self.buf.extend_from_slice(&data),
                        Err(frame) => {
                            let status = frame
                                .trailers_ref()
                                .and_then(tonic::Status::from_header_map)
                                .ok_or("xds stream ended without a gRPC status")?;
                            if status.code() == tonic::Code::Ok && self.buf.is_empty() {
                                return Ok(None);
                            }
                            return Err(Box::new(status));
                        }
                    }
                }
            }
        }
    }

    /// A whole message from the front of the buffer, if it is there.
    fn decode(&mut self) -> Result<Option<Resp>, BoxError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err("xds stream: compressed message (no compression was offered)".into());
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.max_message {
            return Err(format!(
                "xds stream: message of {len} bytes over the limit of {}",
                self.max_message
            )
            .into());
        }
        if self.buf.len() < HEADER + len {
            // Room for the whole message at once, not doubling step by step.
            self.buf.reserve(HEADER + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(HEADER);
        let msg = Resp::decode(&self.buf[..len])?;
        self.buf.advance(len);
        // The bytes after it (the start of the next message, if any) move to a small buffer.
        if self.buf.capacity() > KEEP_CAPACITY && self.buf.len() <= KEEP_CAPACITY {
            self.buf = BytesMut::from(&self.buf[..]);
        }
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;

    fn responses(chunks: Vec<Bytes>, status: u8) -> Responses<DiscoveryResponse> {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from(u16::from(status)));
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, std::convert::Infallible>(http_body::Frame::data(c)))
            .chain(std::iter::once(Ok(http_body::Frame::trailers(trailers))));
        Responses {
            body: tonic::body::Body::new(http_body_util::StreamBody::new(
                futures_util::stream::iter(frames),
            )),
            buf: BytesMut::new(),
            max_message: 1 << 20,
            done: false,
            _resp: PhantomData,
        }
    }

    fn message(version: &str, filler: usize) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: version.into(),
            nonce: "x".repeat(filler),
            ..Default::default()
        }
    }

    fn wire(msgs: &[DiscoveryResponse]) -> Bytes {
        let mut out = BytesMut::new();
        for m in msgs {
            out.extend_from_slice(&frame(m).into_data().unwrap());
        }
        out.freeze()
    }

    #[tokio::test]
    async fn messages_across_and_within_chunks_then_ok() {
        let all = wire(&[message("1", 10), message("2", 300_000), message("3", 0)]);
        // Split at every awkward place: inside a header, inside a body, two in one chunk.
        let chunks = vec![
            all.slice(..3),
            all.slice(3..20),
            all.slice(20..100_000),
            all.slice(100_000..),
        ];
        let mut r = responses(chunks, 0);
        let versions: Vec<String> = {
            let mut v = Vec::new();
            while let Some(m) = r.message().await.unwrap() {
                v.push(m.version_info.clone());
                if m.version_info == "2" {
                    // The buffer that held the large message was given back.
                    assert!(r.buf.capacity() <= KEEP_CAPACITY, "{}", r.buf.capacity());
                }
            }
            v
        };
        assert_eq!(versions, ["1", "2", "3"]);
    }

    #[tokio::test]
    async fn errors_are_reported() {
        // A status other than OK.
        let mut r = responses(vec![], 14);
        let e = r.message().await.unwrap_err();
        assert!(
            e.to_string().contains("Unavailable") || e.to_string().contains("unavailable"),
            "{e}"
        );
        // A truncated message.
        let all = wire(&[message("1", 100)]);
        let mut r = responses(vec![all.slice(..50)], 0);
        assert!(r.message().await.is_err());
        // Over the limit.
        let mut r = responses(vec![wire(&[message("1", 2 << 20)])], 0);
        let e = r.message().await.unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
        // Compressed.
        let mut bad = BytesMut::from(&wire(&[message("1", 1)])[..]);
        bad[0] = 1;
        let mut r = responses(vec![bad.freeze()], 0);
        assert!(r.message().await.is_err());
    }
}
