//! The response future of a guarded gRPC call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use breaker_core::{BreakerRef, Outcome, Rejected};
use pin_project_lite::pin_project;

use crate::body::GuardedBody;
use crate::call::{Call, status_code};
use crate::status::rejection_status;

pin_project! {
    /// The future of a [`GrpcBreaker`](crate::GrpcBreaker) call: the inner call, or the
    /// breaker's `UNAVAILABLE` answer to a refused one (which never reached the inner
    /// service).
    pub struct ResponseFuture<F, R: BreakerRef> {
        #[pin]
        inner: Option<F>,
        call: Option<Call<R>>,
        rejected: Option<Rejected>,
    }

    impl<F, R: BreakerRef> PinnedDrop for ResponseFuture<F, R> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(call) = this.project().call.take() {
                call.abandon();
            }
        }
    }
}

impl<F, R: BreakerRef> ResponseFuture<F, R> {
    pub(crate) fn called(inner: F, call: Call<R>) -> Self {
        ResponseFuture {
            inner: Some(inner),
            call: Some(call),
            rejected: None,
        }
    }

    pub(crate) fn rejected(rejected: Rejected) -> Self {
        ResponseFuture {
            inner: None,
            call: None,
            rejected: Some(rejected),
        }
    }
}

impl<F, R: BreakerRef> std::fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("rejected", &self.rejected)
            .finish_non_exhaustive()
    }
}

impl<F, R, B, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    R: BreakerRef,
{
    type Output = Result<http::Response<GuardedBody<B, R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(rejected) = this.rejected.take() {
            return Poll::Ready(Ok(rejection_status(&rejected).into_http()));
        }
        let Some(inner) = this.inner.as_pin_mut() else {
            // Polled again after completion: answer like a refused call would, never panic.
            return Poll::Ready(Ok(tonic::Status::internal(
                "breaker-tonic ResponseFuture polled after it completed",
            )
            .into_http()));
        };
        let result = std::task::ready!(inner.poll(cx));
        let call = this.call.take();
        Poll::Ready(match result {
            Ok(response) => {
                // Trailers-only: the status is in the headers; the call is over.
                let call = match call {
                    Some(call) if status_code(response.headers()).is_some() => {
                        call.record_status(response.headers());
                        None
                    }
                    call => call,
                };
                Ok(response.map(|body| match call {
                    Some(call) => GuardedBody::watching(body, call),
                    None => GuardedBody::passing(body),
                }))
            }
            Err(e) => {
                // A transport error: the call never got an answer.
                if let Some(call) = call {
                    call.record(Outcome::Failure);
                }
                Err(e)
            }
        })
    }
}
