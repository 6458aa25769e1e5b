//! An admission-only interceptor.

use breaker_core::BreakerRef;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::status::rejection_status;

/// A tonic [`Interceptor`] that refuses calls while the breaker does, with the same
/// `UNAVAILABLE` answer as the layer. **Admission only**: an interceptor never sees the
/// response, so it cannot record outcomes: something else must (the [`GrpcBreakerLayer`]
/// on the same breaker, or your code with the breaker's two-step protocol). Prefer the
/// layer; use this where only an interceptor fits (`FlakyClient::with_interceptor`,
/// `FlakyServer::with_interceptor`).
///
/// An admitted call's permit is given back at once (neutral), so in half-open this
/// interceptor does not limit the number of probes: the breaker that records does.
///
/// [`GrpcBreakerLayer`]: crate::GrpcBreakerLayer
#[derive(Clone, Debug)]
pub struct BreakerInterceptor<R> {
    breaker: R,
}

impl<R: BreakerRef> BreakerInterceptor<R> {
    /// Refuses calls while `breaker` refuses them (any
    /// [`IntoBreakerRef`](breaker_core::IntoBreakerRef)).
    pub fn new(breaker: impl breaker_core::IntoBreakerRef<Ref = R>) -> Self {
        BreakerInterceptor {
            breaker: breaker.into_breaker_ref(),
        }
    }
}

impl<R: BreakerRef> Interceptor for BreakerInterceptor<R> {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match self.breaker.breaker().try_acquire() {
            Ok(admitted) => {
                // Admission only: the layer that records the call holds its own permit.
                admitted.cancel();
                Ok(request)
            }
            Err(rejected) => Err(rejection_status(&rejected)),
        }
    }
}
