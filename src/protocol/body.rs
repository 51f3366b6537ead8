//! The HTTP body type that flows through the proxy in both directions.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use std::future::Future;

/// A boxed error from any body source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body: a downstream or upstream `Incoming`, or a local reply.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body of known bytes.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Box any body whose error converts into a [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

pin_project_lite::pin_project! {
    /// A body that must end by a deadline (the connection manager's `request_timeout`): past
    /// it, the next poll fails and `expired` is set, so the caller can answer 408.
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: tokio::time::Sleep,
        expired: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }
}

impl<B> DeadlineBody<B> {
    /// Wrap `inner`; `expired` is set if the deadline passes before its end.
    pub fn new(
        inner: B,
        deadline: tokio::time::Instant,
        expired: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep_until(deadline),
            expired,
        }
    }
}

/// The error a [`DeadlineBody`] fails with.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within the request timeout")]
pub struct RequestTimeout;

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(f) => return Poll::Ready(f.map(|r| r.map_err(Into::into))),
            Poll::Pending => {}
        }
        if this.sleep.poll(cx).is_ready() {
            this.expired
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(RequestTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
