//! The response future of a guarded gRPC call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use breaker_core::{BreakerRef, Outcome, Rejected};
use pin_project_lite::pin_project;

use crate::body::GuardedBody;
use crate::call::{Call, is_grpc_content, status_code};
use crate::status::rejection_status;

pin_project! {
    /// The future of a [`GrpcBreaker`](crate::GrpcBreaker) call: the inner call, or the
    /// breaker's `UNAVAILABLE` answer to a refused one (which never reached the inner
    /// service).
    ///
    /// Dropped before the answer's headers arrived, the call was abandoned: neutral, unless
    /// it had already run past its deadline (its `grpc-timeout`, or the layer's timeout) or
    /// the breaker's slow-call duration, when it counts as a failure. Polling it again after it returned its answer
    /// panics, as polling any completed future may.
    pub struct ResponseFuture<F, R: BreakerRef> {
        #[pin]
        kind: Kind<F, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, R: BreakerRef> {
        Called {
            #[pin]
            inner: F,
            // `None` once the answer is out.
            call: Option<Call<R>>,
        },
        Rejected {
            rejected: Option<Rejected>,
        },
    }
}

impl<F, R: BreakerRef> ResponseFuture<F, R> {
    pub(crate) fn called(inner: F, call: Call<R>) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                inner,
                call: Some(call),
            },
        }
    }

    pub(crate) fn rejected(rejected: Rejected) -> Self {
        ResponseFuture {
            kind: Kind::Rejected {
                rejected: Some(rejected),
            },
        }
    }
}

impl<F, R: BreakerRef> std::fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Called { call: Some(_), .. } => "called",
            Kind::Called { call: None, .. } => "done",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
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
        match self.project().kind.project() {
            KindProj::Rejected { rejected } => match rejected.take() {
                Some(rejected) => Poll::Ready(Ok(rejection_status(&rejected).into_http())),
                None => polled_after_completion(),
            },
            KindProj::Called { inner, call } => {
                if call.is_none() {
                    polled_after_completion()
                }
                let result = std::task::ready!(inner.poll(cx));
                let Some(mut call) = call.take() else {
                    polled_after_completion()
                };
                Poll::Ready(match result {
                    Ok(response) => {
                        let headers = response.headers();
                        let call = if status_code(headers).is_some() {
                            // Trailers-only: the status is in the headers; the call is over.
                            call.record_status(headers);
                            None
                        } else if response.status() != http::StatusCode::OK
                            || !is_grpc_content(headers)
                        {
                            // Not a gRPC answer (a proxy's error page, a maintenance page
                            // served as 200): it never will be.
                            call.record_http_answer(response.status(), headers);
                            None
                        } else {
                            call.headers_arrived();
                            Some(call)
                        };
                        Ok(response.map(|body| match call {
                            Some(call) => GuardedBody::watching(body, call),
                            None => GuardedBody::passing(body),
                        }))
                    }
                    Err(e) => {
                        // A transport error (or tonic's own client timeout): no answer.
                        call.record(Outcome::Failure);
                        Err(e)
                    }
                })
            }
        }
    }
}

#[cold]
#[inline(never)]
fn polled_after_completion() -> ! {
    panic!("breaker_tonic::ResponseFuture polled after it completed")
}
