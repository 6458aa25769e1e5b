//! One breaker per gRPC method (or service), in a bounded registry.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use breaker_core::{CircuitBreaker, Clock, Observer, Permit};
use breaker_tower::KeyedRegistry;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::GuardedBody;
use crate::call::{Call, Deadlines};
use crate::classify::GrpcClassifier;
use crate::future::ResponseFuture;

/// Which breaker a call belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyBy {
    /// One breaker per method: the request path, `/package.Service/Method`.
    Method,
    /// One breaker per service: `/package.Service`.
    Service,
}

impl KeyBy {
    /// The part of the request path that names the breaker (a slice: no allocation).
    fn key(self, path: &str) -> &str {
        match self {
            KeyBy::Method => path,
            KeyBy::Service => match path.rfind('/') {
                Some(i) if i > 0 => &path[..i],
                _ => path,
            },
        }
    }
}

/// Guards gRPC calls with one breaker per method or per service, made on first use by a
/// bounded [`KeyedRegistry`] (keyed by the path, e.g. `/flaky.Flaky/Call`): a failing
/// method trips alone.
#[derive(Debug)]
pub struct KeyedGrpcBreakerLayer<C, O> {
    registry: Arc<KeyedRegistry<String, C, O>>,
    key_by: KeyBy,
    classify: GrpcClassifier,
    deadlines: Deadlines,
}

impl<C, O> Clone for KeyedGrpcBreakerLayer<C, O> {
    fn clone(&self) -> Self {
        KeyedGrpcBreakerLayer {
            registry: Arc::clone(&self.registry),
            key_by: self.key_by,
            classify: self.classify.clone(),
            deadlines: self.deadlines,
        }
    }
}

impl<C, O> KeyedGrpcBreakerLayer<C, O> {
    /// Calls are guarded by their key's breaker from `registry`.
    pub fn new(registry: Arc<KeyedRegistry<String, C, O>>, key_by: KeyBy) -> Self {
        KeyedGrpcBreakerLayer {
            registry,
            key_by,
            classify: GrpcClassifier::new(),
            deadlines: Deadlines::new(),
        }
    }

    /// Classifies statuses with `classify`.
    pub fn classify(mut self, classify: GrpcClassifier) -> Self {
        self.classify = classify;
        self
    }

    /// The timeout tonic enforces around this layer (see
    /// [`GrpcBreakerLayer::timeout`](crate::GrpcBreakerLayer::timeout)). Allowed: more than
    /// zero.
    pub fn timeout(mut self, timeout: Duration) -> Result<Self, breaker_core::ConfigError> {
        self.deadlines = self.deadlines.with_timeout(timeout)?;
        Ok(self)
    }

    /// The shortest `grpc-timeout` a call is held to (see
    /// [`GrpcBreakerLayer::min_peer_deadline`](crate::GrpcBreakerLayer::min_peer_deadline)).
    pub fn min_peer_deadline(mut self, min: Duration) -> Self {
        self.deadlines = self.deadlines.with_min_peer_deadline(min);
        self
    }
}

impl<S, C, O> Layer<S> for KeyedGrpcBreakerLayer<C, O> {
    type Service = KeyedGrpcBreaker<S, C, O>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedGrpcBreaker {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of a [`KeyedGrpcBreakerLayer`].
#[derive(Debug)]
pub struct KeyedGrpcBreaker<S, C, O> {
    inner: S,
    layer: KeyedGrpcBreakerLayer<C, O>,
}

impl<S: tonic::server::NamedService, C, O> tonic::server::NamedService
    for KeyedGrpcBreaker<S, C, O>
{
    const NAME: &'static str = S::NAME;
}

impl<S: Clone, C, O> Clone for KeyedGrpcBreaker<S, C, O> {
    fn clone(&self) -> Self {
        KeyedGrpcBreaker {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, C, O, ReqBody, ResBody> Service<http::Request<ReqBody>> for KeyedGrpcBreaker<S, C, O>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    C: Clock,
    O: Observer,
{
    type Response = http::Response<GuardedBody<ResBody, Arc<CircuitBreaker<C, O>>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Arc<CircuitBreaker<C, O>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let breaker = self
            .layer
            .registry
            .get(self.layer.key_by.key(req.uri().path()));
        match Permit::acquire(&breaker) {
            Ok(permit) => {
                let classify = self.layer.classify.clone();
                let call = Call::new(permit, classify, req.headers(), &self.layer.deadlines);
                ResponseFuture::called(self.inner.call(req), call)
            }
            Err(rejected) => ResponseFuture::rejected(rejected),
        }
    }
}
