//! The response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use breaker_core::{BreakerRef, Classify, Permit, Rejected};
use pin_project_lite::pin_project;

use crate::error::{BoxError, Error};

/// What a called request needs to record its outcome.
#[derive(Debug)]
struct Called<B: BreakerRef, K> {
    permit: Permit<B>,
    classify: K,
    started: u64,
}

impl<B: BreakerRef, K> Called<B, K> {
    fn elapsed(&self) -> Duration {
        let breaker = self.permit.breaker().breaker();
        if breaker.measures_duration() {
            Duration::from_nanos(breaker.now_nanos().saturating_sub(self.started))
        } else {
            Duration::ZERO
        }
    }
}

pin_project! {
    /// The future of a [`Breaker`](crate::Breaker) service: either the inner service's
    /// future, whose result is classified and recorded, or a rejection returned without
    /// calling the inner service.
    ///
    /// Dropping it before it completes (a cancelled request, an outer `Timeout`) is neutral
    /// and gives back the permit's half-open slot, unless the call had already run longer
    /// than the breaker's slow-call duration: then it counts as a slow failure (see
    /// [`Permit::abandon`]). A classifier that panics gives the slot back as it unwinds.
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
                let elapsed = called.elapsed();
                called.permit.abandon(elapsed);
            }
        }
    }
}

impl<F, B: BreakerRef, K> ResponseFuture<F, B, K> {
    pub(crate) fn called(inner: F, permit: Permit<B>, classify: K) -> Self {
        let b = permit.breaker().breaker();
        let started = if b.measures_duration() {
            b.now_nanos()
        } else {
            0
        };
        ResponseFuture {
            inner: Some(inner),
            called: Some(Called {
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
    E: Into<BoxError>,
    B: BreakerRef,
    K: Classify<T, E>,
{
    type Output = Result<T, Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(rejected) = this.rejected.take() {
            return Poll::Ready(Err(Error::Rejected(rejected)));
        }
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err(Error::Inner(PolledAfterCompletion.into())));
        };
        let result = std::task::ready!(inner.poll(cx));
        if let Some(called) = this.called.take() {
            // Taken out first: if the classifier panics, the permit unwinds with `called`
            // and gives its slot back.
            let outcome = called.classify.classify(&result);
            let elapsed = called.elapsed();
            called.permit.record(outcome, elapsed);
        }
        Poll::Ready(result.map_err(|e| Error::Inner(e.into())))
    }
}

/// A [`ResponseFuture`] was polled again after it returned its result.
#[derive(Debug)]
struct PolledAfterCompletion;

impl std::fmt::Display for PolledAfterCompletion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "breaker ResponseFuture polled after it completed: poll each future once to completion",
        )
    }
}

impl std::error::Error for PolledAfterCompletion {}
