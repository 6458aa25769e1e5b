//! The layer and its service, for clients (around a `Channel`) and servers alike.

use std::task::{Context, Poll};
use std::time::Duration;

use breaker_core::{BreakerRef, ConfigError, IntoBreakerRef, Permit};
use tower_layer::Layer;
use tower_service::Service;

use crate::body::GuardedBody;
use crate::call::{Call, Deadlines};
use crate::classify::GrpcClassifier;
use crate::future::ResponseFuture;

/// Guards gRPC calls with one breaker: around a client's `Channel`
/// (`ServiceBuilder::new().layer(GrpcBreakerLayer::new(breaker)).service(channel)`), or a
/// server's services (`Server::builder().layer(GrpcBreakerLayer::new(breaker))`).
///
/// Each call is classified by its `grpc-status` (response headers for a trailers-only
/// answer, trailers for normal and streaming answers) with a [`GrpcClassifier`]; a transport
/// error or a broken body is a failure; so is an answer that is not gRPC at all (a proxy's
/// `502`/`503`/`504` error page, classified by gRPC's HTTP-to-status mapping at once). A
/// refused call is answered with `UNAVAILABLE` and [`RETRY_PUSHBACK`](crate::RETRY_PUSHBACK)
/// metadata, and never reaches the inner service. The decision is made in `call`, not in
/// `poll_ready` (tonic's generated clients would report a readiness error as `UNKNOWN`).
///
/// # Deadlines and timeouts
///
/// A call's deadline is its request's `grpc-timeout` (set by the client's
/// `Request::set_timeout`; at least [`min_peer_deadline`](Self::min_peer_deadline), and
/// counted from a little before it ends), or the layer's [`timeout`](Self::timeout) if
/// shorter; it covers the answer's headers, as tonic's timeouts do. A call abandoned at or
/// past its deadline is a timeout: a failure. On a server, that is what
/// tonic's own timeout does: it sits outside every layer, drops the call when the deadline
/// passes and answers `CANCELLED "Timeout expired"`, so without the deadline a hanging
/// handler would never count. On a client, a `CANCELLED` answer that is a timeout (tonic's
/// "Timeout expired", or at or past the deadline) is classified as `DEADLINE_EXCEEDED`; a
/// cancellation before the deadline (the caller gave up) stays neutral.
#[derive(Clone, Debug)]
pub struct GrpcBreakerLayer<R> {
    breaker: R,
    classify: GrpcClassifier,
    deadlines: Deadlines,
}

impl<R: BreakerRef> GrpcBreakerLayer<R> {
    /// A layer guarding calls with `breaker` (any [`IntoBreakerRef`]: an
    /// `Arc<CircuitBreaker>`, a `&'static` one, or a breaker by value).
    pub fn new(breaker: impl IntoBreakerRef<Ref = R>) -> Self {
        GrpcBreakerLayer {
            breaker: breaker.into_breaker_ref(),
            classify: GrpcClassifier::new(),
            deadlines: Deadlines::new(),
        }
    }

    /// Classifies statuses with `classify`.
    pub fn classify(mut self, classify: GrpcClassifier) -> Self {
        self.classify = classify;
        self
    }

    /// On a server: the timeout tonic enforces around this layer
    /// (`Server::builder().timeout(..)`), so a call that tonic abandons when it expires
    /// counts as timed out. It covers the answer's headers, as tonic's does; calls whose
    /// request carries a shorter `grpc-timeout` keep that one. (On a client, a channel's
    /// `Endpoint::timeout` already comes back as an error, a failure: nothing to set.)
    /// Allowed: more than zero.
    pub fn timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        self.deadlines = self.deadlines.with_timeout(timeout)?;
        Ok(self)
    }

    /// The shortest `grpc-timeout` a call is held to (default 100 ms): a request whose
    /// deadline is shorter is not counted against the service when it passes. On a server,
    /// the deadline is the peer's word: without a floor, any client could open the server's
    /// breaker for everyone with absurdly short deadlines. Raise it above what your handlers
    /// normally take; `Duration::MAX` ignores peers' deadlines altogether.
    pub fn min_peer_deadline(mut self, min: Duration) -> Self {
        self.deadlines = self.deadlines.with_min_peer_deadline(min);
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
            deadlines: self.deadlines,
        }
    }
}

/// A gRPC service (client or server side) guarded by a breaker. See [`GrpcBreakerLayer`].
#[derive(Clone, Debug)]
pub struct GrpcBreaker<S, R> {
    inner: S,
    breaker: R,
    classify: GrpcClassifier,
    deadlines: Deadlines,
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
            Ok(permit) => {
                let call = Call::new(
                    permit,
                    self.classify.clone(),
                    req.headers(),
                    &self.deadlines,
                );
                ResponseFuture::called(self.inner.call(req), call)
            }
            Err(rejected) => ResponseFuture::rejected(rejected),
        }
    }
}
