//! The response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use breaker_core::{BreakerRef, Classify, Permit, Rejected};
use pin_project_lite::pin_project;

use crate::error::{BoxError, Error};

/// What a called request needs to record its outcome.
#[derive(Debug)]
struct Called<B: BreakerRef, K> {
    permit: Permit<B>,
    classify: K,
}

pin_project! {
    /// The future of a [`Breaker`](crate::Breaker) service: either the inner service's
    /// future, whose result is classified and recorded, or a rejection returned without
    /// calling the inner service.
    ///
    /// Dropping it before it completes (a cancelled request, an outer `Timeout`) abandons the
    /// call: neutral, its half-open slot given back, unless the call had already run longer
    /// than the breaker's slow-call duration: then it counts as a slow failure (see
    /// [`Permit`]). A classifier that panics abandons the call the same way as it unwinds.
    ///
    /// Polling it again after it returned its result panics, as polling any completed
    /// future may.
    pub struct ResponseFuture<F, B, K>
    where
        B: BreakerRef,
    {
        #[pin]
        kind: Kind<F, B, K>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, K>
    where
        B: BreakerRef,
    {
        Called {
            #[pin]
            fut: F,
            called: Option<Called<B, K>>,
        },
        Rejected {
            rejected: Option<Rejected>,
        },
    }
}

impl<F, B: BreakerRef, K> ResponseFuture<F, B, K> {
    pub(crate) fn called(fut: F, permit: Permit<B>, classify: K) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                fut,
                called: Some(Called { permit, classify }),
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

impl<F, B: BreakerRef, K> std::fmt::Debug for ResponseFuture<F, B, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Called { called, .. } if called.is_some() => "called",
            Kind::Called { .. } => "done",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl<F, B, K, T, E> Future for ResponseFuture<F, B, K>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    B: BreakerRef,
    K: Classify<T, E>,
{
    type Output = Result<T, Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { rejected } => match rejected.take() {
                Some(rejected) => Poll::Ready(Err(Error::Rejected(rejected))),
                None => polled_after_completion(),
            },
            KindProj::Called { fut, called } => {
                if called.is_none() {
                    polled_after_completion()
                }
                let result = std::task::ready!(fut.poll(cx));
                // Recorded where it is: moved out, the permit would be copied right after
                // `call` wrote it (a store-forwarding stall). `Spend` empties the slot even if
                // the classifier panics: the permit, still unrecorded, then abandons the call
                // as the panic unwinds, and the future is done like any completed one.
                let spend = Spend(called);
                if let Some(called) = spend.0.as_mut() {
                    called
                        .permit
                        .record_result_in_place(&called.classify, &result);
                }
                drop(spend);
                Poll::Ready(result.map_err(|e| Error::Inner(e.into())))
            }
        }
    }
}

/// Empties the response future's call slot when dropped, on return or unwind.
struct Spend<'a, T>(&'a mut Option<T>);

impl<T> Drop for Spend<'_, T> {
    #[inline]
    fn drop(&mut self) {
        *self.0 = None;
    }
}

#[cold]
#[inline(never)]
fn polled_after_completion() -> ! {
    panic!("breaker_tower::future::ResponseFuture polled after it completed")
}
