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
    /// A body under a timer: either a deadline for its end (the connection manager's
    /// `request_timeout`) or an idle timeout restarted by every frame (`stream_idle_timeout`).
    /// When the timer fires first, the next poll fails and `expired` is set, so the caller can
    /// tell a timeout from a reset. The timer is armed only when the body has to wait: a body
    /// whose frames are already there costs no timer at all.
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
        deadline: Option<tokio::time::Instant>,
        idle: Option<std::time::Duration>,
        expired: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    }
}

impl<B> TimedBody<B> {
    /// `inner` must end by `deadline`.
    pub fn deadline(
        inner: B,
        deadline: tokio::time::Instant,
        expired: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        Self {
            inner,
            sleep: None,
            deadline: Some(deadline),
            idle: None,
            expired: Some(expired),
        }
    }

    /// `inner` must yield a frame at least every `idle`; `expired`, if given, is set when it
    /// does not.
    pub fn idle(
        inner: B,
        idle: std::time::Duration,
        expired: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    ) -> Self {
        Self {
            inner,
            sleep: None,
            deadline: None,
            idle: Some(idle),
            expired,
        }
    }
}

/// The error a [`TimedBody`] fails with.
#[derive(Debug, thiserror::Error)]
#[error("body timed out")]
pub struct BodyTimeout;

impl<B> http_body::Body for TimedBody<B>
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
        if let Poll::Ready(f) = this.inner.poll_frame(cx) {
            if this.idle.is_some() {
                // The idle timer restarts from the next wait.
                *this.sleep = None;
            }
            return Poll::Ready(f.map(|r| r.map_err(Into::into)));
        }
        let sleep = this.sleep.get_or_insert_with(|| {
            let at = match (*this.deadline, *this.idle) {
                (Some(d), _) => d,
                (None, Some(i)) => tokio::time::Instant::now() + i,
                (None, None) => {
                    tokio::time::Instant::now() + std::time::Duration::from_secs(u32::MAX.into())
                }
            };
            Box::pin(tokio::time::sleep_until(at))
        });
        if sleep.as_mut().poll(cx).is_ready() {
            if let Some(e) = this.expired {
                e.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
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

pin_project_lite::pin_project! {
    /// A body that runs `done` once, when it ends (the last frame was read, or it was empty)
    /// or when it is dropped before that (the peer went away): for stats taken at the end of
    /// a response.
    pub struct OnEnd<B, F: FnOnce()> {
        #[pin]
        inner: B,
        done: Option<F>,
    }
    impl<B, F: FnOnce()> PinnedDrop for OnEnd<B, F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(f) = this.project().done.take() {
                f();
            }
        }
    }
}

impl<B, F: FnOnce()> OnEnd<B, F> {
    /// Run `done` at the end of `inner`.
    pub fn new(inner: B, done: F) -> Self {
        Self {
            inner,
            done: Some(done),
        }
    }
}

impl<B, F> http_body::Body for OnEnd<B, F>
where
    B: http_body::Body<Data = Bytes>,
    F: FnOnce(),
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let res = this.inner.poll_frame(cx);
        if let std::task::Poll::Ready(None) = res
            && let Some(f) = this.done.take()
        {
            f();
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
