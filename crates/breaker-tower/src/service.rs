//! The service.

use std::task::{Context, Poll};

use breaker_core::{BreakerRef, Classify, ErrorsAreFailures, Permit, Rejected};
use tower_service::Service;

use crate::error::{BoxError, Error};
use crate::future::ResponseFuture;

/// A service guarded by a circuit breaker.
///
/// The breaker decides in `poll_ready`, the way tower's `LoadShed` does: while it refuses
/// (open, forced open, half-open and full), `poll_ready` is ready at once without waiting
/// for the inner service, and the next `call` answers with a [`Rejected`] error without
/// calling the inner service. While it admits, `poll_ready` holds the permit and waits for
/// the inner service's readiness; the inner service is only ever called after it reported
/// ready. Results are classified by `K` (every `Err` is a failure by default) and recorded
/// with their duration. Errors are [`Error`]s: [`Error::Rejected`], or the inner error as a
/// [`BoxError`] (see [`error`](crate::error)).
#[derive(Debug)]
pub struct Breaker<S, B: BreakerRef, K = ErrorsAreFailures> {
    inner: S,
    breaker: B,
    classify: K,
    decision: Decision<B>,
}

/// What `poll_ready` decided for the next `call`.
#[derive(Debug)]
enum Decision<B: BreakerRef> {
    /// `poll_ready` has not been called since the last `call`.
    Undecided,
    /// Admitted; the inner service is being polled for readiness (or is ready).
    Admitted(Permit<B>),
    /// Refused; `call` answers with this without calling the inner service.
    Rejected(Rejected),
}

impl<B: BreakerRef> Decision<B> {
    /// Decides while the breaker is not closed. Out of line, so that the closed state's
    /// `poll_ready` (one load) stays small enough to inline into its caller.
    #[cold]
    #[inline(never)]
    fn decide(breaker: &B) -> Self {
        match Permit::acquire(breaker) {
            Ok(permit) => Decision::Admitted(permit),
            Err(rejected) => Decision::Rejected(rejected),
        }
    }
}

impl<S: Clone, B: BreakerRef, K: Clone> Clone for Breaker<S, B, K> {
    /// A clone starts undecided: a permit taken by `poll_ready` belongs to one service.
    fn clone(&self) -> Self {
        Breaker::new(
            self.inner.clone(),
            self.breaker.clone(),
            self.classify.clone(),
        )
    }
}

impl<S, B: BreakerRef, K> Breaker<S, B, K> {
    /// Guards `inner` with `breaker`, classifying results with `classify`.
    pub fn new(inner: S, breaker: B, classify: K) -> Self {
        Breaker {
            inner,
            breaker,
            classify,
            decision: Decision::Undecided,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The breaker handle.
    pub fn breaker(&self) -> &B {
        &self.breaker
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, K, Req> Service<Req> for Breaker<S, B, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    B: BreakerRef,
    K: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future, B, K>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Closed (or disabled, metrics-only): every call is admitted, so `call` takes its
        // permit as a plain breaker does; reading the state is one atomic load. Otherwise
        // decide now, so a refused caller does not wait for the inner service.
        if matches!(self.decision, Decision::Undecided)
            && !self.breaker.breaker().state().admits_calls()
        {
            self.decision = Decision::decide(&self.breaker);
        }
        match self.decision {
            Decision::Rejected(_) => Poll::Ready(Ok(())),
            _ => self
                .inner
                .poll_ready(cx)
                .map_err(|e| Error::Inner(e.into())),
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match std::mem::replace(&mut self.decision, Decision::Undecided) {
            Decision::Admitted(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classify.clone())
            }
            Decision::Rejected(rejected) => ResponseFuture::rejected(rejected),
            // Closed at `poll_ready` (or `call` without `poll_ready`, which breaks the
            // `Service` contract): decide now. If the breaker refuses meanwhile, the inner
            // service's readiness goes unused, as with tower's `LoadShed`.
            //
            // The permit is taken from a borrow and holds a clone of the handle only after the
            // inner call: cloned before, it would wait in memory across that call and be
            // copied into the future (a store-forwarding stall, measured ~5 ns a call).
            Decision::Undecided => match self.breaker.breaker().try_acquire() {
                Ok(permit) => {
                    let fut = self.inner.call(req);
                    let permit = permit.with_handle(self.breaker.clone());
                    ResponseFuture::called(fut, permit, self.classify.clone())
                }
                Err(rejected) => ResponseFuture::rejected(rejected),
            },
        }
    }
}
