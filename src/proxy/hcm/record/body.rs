//! The bodies a stream record wraps: the request body (bytes received, when it ended) and the
//! response body (bytes sent, trailers, and the end of the stream).

use super::{Rec, RequestSide, details, elapsed_us};
use crate::protocol::body::{Body, BodyTimeout, BoxError};
use crate::stream_info::{ResponseFlag, grpc_status_of};
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

pin_project_lite::pin_project! {
    pub(super) struct CountedBody {
        #[pin]
        pub(super) inner: Body,
        pub(super) side: Arc<RequestSide>,
        pub(super) start: Instant,
    }
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let res = this.inner.as_mut().poll_frame(cx);
        let ended = match &res {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.side.bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                // The reader may stop at the last frame without polling for the end.
                f.is_trailers() || this.inner.is_end_stream()
            }
            Poll::Ready(None) => true,
            _ => false,
        };
        if ended {
            let _ = this.side.ended_us.compare_exchange(
                0,
                elapsed_us(*this.start),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// The response body: counts what is sent and ends the record when the body ends, fails,
    /// or is dropped before its end (the client went away).
    pub(super) struct LoggedBody {
        #[pin]
        pub(super) inner: Body,
        pub(super) rec: Option<Box<Rec>>,
    }
    impl PinnedDrop for LoggedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(r) = this.rec.as_mut()
                && this.inner.is_end_stream()
            {
                r.ended = true;
            }
            this.rec.take();
        }
    }
}

/// Record why a response body failed (Envoy's `upstream_reset_after_response_started`).
fn body_failed(r: &mut Rec, e: &BoxError) {
    let i = &mut r.info;
    if e.downcast_ref::<BodyTimeout>().is_some() {
        i.response_flags.insert(ResponseFlag::StreamIdleTimeout);
        i.response_code_details = Some(Cow::Borrowed(details::STREAM_IDLE_TIMEOUT));
        return;
    }
    // A body cut short (the upstream closed before its content-length) or malformed is
    // Envoy's protocol error; anything else is a connection termination.
    let mut incomplete = e
        .downcast_ref::<hyper::Error>()
        .is_some_and(|h| h.is_incomplete_message() || h.is_parse())
        || e.downcast_ref::<crate::protocol::http1::ParseError>()
            .is_some();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
        {
            incomplete = true;
        }
        cause = c.source();
    }
    let (flag, reason) = if incomplete {
        (ResponseFlag::UpstreamProtocolError, "protocol_error")
    } else {
        (
            ResponseFlag::UpstreamConnectionTermination,
            "connection_termination",
        )
    };
    i.response_flags.insert(flag);
    i.response_code_details = Some(Cow::Owned(format!(
        "upstream_reset_after_response_started{{{reason}}}"
    )));
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let res = this.inner.poll_frame(cx);
        let Some(r) = this.rec.as_mut() else {
            return res;
        };
        match &res {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    r.info.bytes_sent += d.len() as u64;
                } else if let Some(t) = f.trailers_ref() {
                    if let Some(s) = grpc_status_of(t) {
                        r.info.grpc_status = Some(s);
                    }
                    if r.needs.response_trailers {
                        r.info.response_trailers = Some(t.clone());
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => {
                body_failed(r, e);
                this.rec.take();
            }
            Poll::Ready(None) => {
                r.ended = true;
                this.rec.take();
            }
            Poll::Pending => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
