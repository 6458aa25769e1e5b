//! The layer and its service, for clients (around a `Channel`) and servers alike.

use std::task::{Context, Poll};

use breaker_core::{BreakerRef, Permit};
use tower_layer::Layer;
use tower_service::Service;

use crate::GrpcClassifier;
use crate::body::GuardedBody;
use crate::call::Call;
use crate::future::ResponseFuture;

/// Guards gRPC calls with one breaker: around a client's `Channel`
/// (`ServiceBuilder::new().layer(GrpcBreakerLayer::new(breaker)).service(channel)`), or a
/// server's services (`Server::builder().layer(GrpcBreakerLayer::new(breaker))`).
///
/// Each call is classified by its `grpc-status` (response headers for a trailers-only
/// answer, trailers for normal and streaming answers) with a [`GrpcClassifier`]; a transport
/// error or a broken body is a failure; an abandoned stream counts as nothing. A refused
/// call is answered with `UNAVAILABLE` and [`RETRY_PUSHBACK`](crate::RETRY_PUSHBACK)
/// metadata, and never reaches the inner service. The decision is made in `call`, not in
/// `poll_ready` (tonic's generated clients would report a readiness error as `UNKNOWN`).
#[derive(Clone, Debug)]
pub struct GrpcBreakerLayer<R> {
    breaker: R,
    classify: GrpcClassifier,
}

impl<R: BreakerRef> GrpcBreakerLayer<R> {
    /// A layer guarding calls with `breaker` (an `Arc<CircuitBreaker>` or a `&'static` one).
    pub fn new(breaker: R) -> Self {
        GrpcBreakerLayer {
            breaker,
            classify: GrpcClassifier::new(),
        }
    }

    /// Classifies statuses with `classify`.
    pub fn classify(mut self, classify: GrpcClassifier) -> Self {
        self.classify = classify;
        self
    }
}

impl<S, R: BreakerRef> Layer<S> for GrpcBreakerLayer<R> {
    type Service = GrpcBreaker<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcBreaker {
            inner,
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// A gRPC service (client or server side) guarded by a breaker. See [`GrpcBreakerLayer`].
#[derive(Clone, Debug)]
pub struct GrpcBreaker<S, R> {
    inner: S,
    breaker: R,
    classify: GrpcClassifier,
}

/// A guarded service keeps the gRPC name of the service it wraps, so it can be added to a
/// server on its own: `Server::builder().add_service(GrpcBreakerLayer::new(b).layer(svc))`
/// protects that service only.
impl<S: tonic::server::NamedService, R> tonic::server::NamedService for GrpcBreaker<S, R> {
    const NAME: &'static str = S::NAME;
}

impl<S, R: BreakerRef> GrpcBreaker<S, R> {
    /// The breaker handle.
    pub fn breaker(&self) -> &R {
        &self.breaker
    }
}

impl<S, R, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcBreaker<S, R>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    R: BreakerRef,
{
    type Response = http::Response<GuardedBody<ResBody, R>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        match Permit::acquire(&self.breaker) {
            Ok(permit) => ResponseFuture::called(
                self.inner.call(req),
                Call::new(permit, self.classify.clone()),
            ),
            Err(rejected) => ResponseFuture::rejected(rejected),
        }
    }
}
