//! The response body of a guarded call: passes the body through, and records the call's
//! outcome from the `grpc-status` in its trailers.

use std::pin::Pin;
use std::task::{Context, Poll};

use breaker_core::{BreakerRef, Outcome};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::call::Call;

pin_project! {
    /// The body of a guarded gRPC response. A normal or streaming response's status comes in
    /// its trailers: the call is recorded when they arrive (or when the body fails, or ends
    /// without a status: both failures). Dropped before its end (the caller abandoned the
    /// stream): neutral once it had yielded data (the dependency was answering); before
    /// that, neutral unless it had already run past the breaker's slow-call duration.
    pub struct GuardedBody<B, R: BreakerRef> {
        #[pin]
        inner: Option<B>,
        call: Option<Call<R>>,
    }
}

impl<B, R: BreakerRef> GuardedBody<B, R> {
    /// A body whose call is still open (its status will come in the trailers).
    pub(crate) fn watching(inner: B, call: Call<R>) -> Self {
        GuardedBody {
            inner: Some(inner),
            call: Some(call),
        }
    }

    /// A body whose call is already recorded (a trailers-only response).
    pub(crate) fn passing(inner: B) -> Self {
        GuardedBody {
            inner: Some(inner),
            call: None,
        }
    }
}

impl<B, R: BreakerRef> Default for GuardedBody<B, R> {
    /// An empty body (the answer to a refused call).
    fn default() -> Self {
        GuardedBody {
            inner: None,
            call: None,
        }
    }
}

impl<B, R: BreakerRef> std::fmt::Debug for GuardedBody<B, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedBody")
            .field("recording", &self.call.is_some())
            .finish_non_exhaustive()
    }
}

impl<B: Body, R: BreakerRef> Body for GuardedBody<B, R> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(inner.poll_frame(cx));
        if let Some(mut call) = this.call.take() {
            match &frame {
                Some(Ok(frame)) => match frame.trailers_ref() {
                    Some(trailers) => call.record_status(trailers),
                    None => {
                        call.answered();
                        *this.call = Some(call);
                    }
                },
                // A broken body, or one that ends without a status.
                Some(Err(_)) | None => call.record(Outcome::Failure),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        // While the call waits for its status, the end (trailers, or their absence) is
        // still to be read.
        self.call.is_none() && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
