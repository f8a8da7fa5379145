//! What a worker runs: the [`Handler`] a topic's requests go to, the
//! [`Request`] it sees and the [`HandlerError`] it answers with.

use std::future::Future;

use bytes::Bytes;
use holdfast_core::{Envelope, Topic};

/// One request as the handler sees it.
#[derive(Clone, Debug)]
pub struct Request {
    /// The envelope: id, deadline, body, trace context, idempotency key.
    pub envelope: Envelope,
    /// The topic it came from.
    pub topic: Topic,
    /// Its stream entry id.
    pub entry_id: String,
}

/// How a handler declines a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// The request itself is wrong; retrying cannot help. Answered `error`.
    #[error("{code}: {message}")]
    Rejected {
        /// Stable code for the caller.
        code: String,
        /// Message for a person.
        message: String,
    },
    /// Something failed that may work on another try; the entry is
    /// delivered again, up to `max_deliveries`.
    #[error("handler failed: {0}")]
    Failed(String),
}

/// The code that answers requests of a topic.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request. A panic counts as a failed delivery and harms
    /// nothing else; at the deadline the future is dropped.
    fn handle(
        &self,
        req: Request,
    ) -> impl Future<Output = Result<Bytes, HandlerError>> + Send + 'static;
}

/// A [`Handler`] made from a closure.
pub struct FnHandler<F>(F);

/// Wraps `f` as a [`Handler`].
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, HandlerError>> + Send + 'static,
{
    FnHandler(f)
}

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, HandlerError>> + Send + 'static,
{
    fn handle(
        &self,
        req: Request,
    ) -> impl Future<Output = Result<Bytes, HandlerError>> + Send + 'static {
        (self.0)(req)
    }
}
