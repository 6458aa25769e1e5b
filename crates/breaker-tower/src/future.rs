//! The response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use breaker_core::{BreakerRef, Classify, RawPermit, Rejected};
use pin_project_lite::pin_project;

use crate::Error;

/// What a called request needs to record its outcome.
#[derive(Debug)]
struct Called<B, K> {
    breaker: B,
    permit: RawPermit,
    classify: K,
    started: u64,
}

pin_project! {
    /// The future of a [`Breaker`](crate::Breaker) service: either the inner service's
    /// future, whose result is classified and recorded, or a rejection returned without
    /// calling the inner service.
    ///
    /// Dropping it before it completes (a cancelled request) records nothing and gives back
    /// the permit's half-open slot.
    pub struct ResponseFuture<F, B, K>
    where
        B: BreakerRef,
    {
        #[pin]
        inner: Option<F>,
        called: Option<Called<B, K>>,
        rejected: Option<Rejected>,
    }

    impl<F, B, K> PinnedDrop for ResponseFuture<F, B, K>
    where
        B: BreakerRef,
    {
        fn drop(this: Pin<&mut Self>) {
            if let Some(called) = this.project().called.take() {
                called.breaker.breaker().cancel_raw(called.permit);
            }
        }
    }
}

impl<F, B: BreakerRef, K> ResponseFuture<F, B, K> {
    pub(crate) fn called(inner: F, breaker: B, permit: RawPermit, classify: K) -> Self {
        let b = breaker.breaker();
        let started = if b.measures_duration() {
            b.now_nanos()
        } else {
            0
        };
        ResponseFuture {
            inner: Some(inner),
            called: Some(Called {
                breaker,
                permit,
                classify,
                started,
            }),
            rejected: None,
        }
    }

    pub(crate) fn rejected(rejected: Rejected) -> Self {
        ResponseFuture {
            inner: None,
            called: None,
            rejected: Some(rejected),
        }
    }
}

impl<F, B: BreakerRef, K> std::fmt::Debug for ResponseFuture<F, B, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("called", &self.called.is_some())
            .field("rejected", &self.rejected)
            .finish_non_exhaustive()
    }
}

impl<F, B, K, T, E> Future for ResponseFuture<F, B, K>
where
    F: Future<Output = Result<T, E>>,
    B: BreakerRef,
    K: Classify<T, E>,
{
    type Output = Result<T, Error<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(rejected) = this.rejected.take() {
            return Poll::Ready(Err(Error::Rejected(rejected)));
        }
        let inner = this
            .inner
            .as_pin_mut()
            .expect("`ResponseFuture` polled after it completed");
        let result = std::task::ready!(inner.poll(cx));
        if let Some(called) = this.called.take() {
            let breaker = called.breaker.breaker();
            let outcome = called.classify.classify(&result);
            let elapsed = if breaker.measures_duration() {
                Duration::from_nanos(breaker.now_nanos().saturating_sub(called.started))
            } else {
                Duration::ZERO
            };
            breaker.record_raw(called.permit, outcome, elapsed);
        }
        Poll::Ready(result.map_err(Error::Inner))
    }
}
