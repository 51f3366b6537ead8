//! The HTTP body type that flows through the proxy in both directions.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

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
