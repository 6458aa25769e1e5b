//! The service.

use std::task::{Context, Poll};

use breaker_core::{BreakerRef, Classify, ErrorsAreFailures};
use tower_service::Service;

use crate::Error;
use crate::future::ResponseFuture;

/// A service guarded by a circuit breaker.
///
/// `poll_ready` passes through to the inner service (the breaker never makes a caller wait);
/// the decision happens in `call`: a refused request is answered by the returned future with
/// [`Error::Rejected`] and never reaches the inner service. Results are classified by `K`
/// (every `Err` is a failure by default) and recorded with their duration.
///
/// Like tower's `LoadShed`, a refused request does not use the readiness it was granted;
/// the next call does.
#[derive(Clone, Debug)]
pub struct Breaker<S, B, K = ErrorsAreFailures> {
    inner: S,
    breaker: B,
    classify: K,
}

impl<S, B, K> Breaker<S, B, K> {
    /// Guards `inner` with `breaker`, classifying results with `classify`.
    pub fn new(inner: S, breaker: B, classify: K) -> Self {
        Breaker {
            inner,
            breaker,
            classify,
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
    B: BreakerRef,
    K: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future, B, K>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self.breaker.breaker().try_acquire_raw() {
            Ok(permit) => ResponseFuture::called(
                self.inner.call(req),
                self.breaker.clone(),
                permit,
                self.classify.clone(),
            ),
            Err(rejected) => ResponseFuture::rejected(rejected),
        }
    }
}
