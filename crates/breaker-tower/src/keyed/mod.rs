//! One breaker per key (host, route, tenant), in a bounded registry: the registry
//! ([`KeyedRegistry`]), the breakers it holds aside while they are in trouble (`aside`), and
//! the layer that picks a request's breaker ([`KeyedBreakerLayer`], [`SelectBreaker`]).

mod aside;
mod registry;

pub use registry::{KeyedRegistry, KeyedRegistryBuilder, KeyedStats};

use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use breaker_core::{
    BreakerRef, CircuitBreaker, Classify, Clock, ErrorsAreFailures, MonotonicClock, NoopObserver,
    Observer, Permit,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BoxError, Error};
use crate::future::ResponseFuture;

/// Picks the breaker that guards a request: [`ByKey`] (a key function over a
/// [`KeyedRegistry`]) or your own routing.
///
/// ```
/// use breaker_core::CircuitBreaker;
/// use breaker_tower::SelectBreaker;
/// use std::sync::Arc;
///
/// /// A database request: a read or a write.
/// enum Query {
///     Read(String),
///     Write(String),
/// }
///
/// /// Writes have a breaker of their own; reads share another.
/// struct ReadsAndWrites {
///     reads: Arc<CircuitBreaker>,
///     writes: Arc<CircuitBreaker>,
/// }
///
/// impl SelectBreaker<Query> for ReadsAndWrites {
///     type Breaker = Arc<CircuitBreaker>;
///
///     fn select(&self, query: &Query) -> Arc<CircuitBreaker> {
///         match query {
///             Query::Read(_) => self.reads.clone(),
///             Query::Write(_) => self.writes.clone(),
///         }
///     }
/// }
/// ```
pub trait SelectBreaker<Req> {
    /// The handle of the breakers it picks from.
    type Breaker: BreakerRef;

    /// The breaker that guards `req`.
    fn select(&self, req: &Req) -> Self::Breaker;
}

/// Requests keyed by a function (e.g. the upstream host) and guarded by that key's breaker
/// from a [`KeyedRegistry`]: the [`SelectBreaker`] of [`KeyedBreakerLayer::new`].
pub struct ByKey<F, Key, C = MonotonicClock, O = NoopObserver> {
    key: F,
    registry: Arc<KeyedRegistry<Key, C, O>>,
}

impl<F: Clone, Key, C, O> Clone for ByKey<F, Key, C, O> {
    fn clone(&self) -> Self {
        ByKey {
            key: self.key.clone(),
            registry: Arc::clone(&self.registry),
        }
    }
}

impl<F, Key, C, O> std::fmt::Debug for ByKey<F, Key, C, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByKey")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl<F, Key, C, O> ByKey<F, Key, C, O> {
    /// The registry of breakers.
    pub fn registry(&self) -> &Arc<KeyedRegistry<Key, C, O>> {
        &self.registry
    }
}

impl<Req, F, Key, C, O> SelectBreaker<Req> for ByKey<F, Key, C, O>
where
    F: Fn(&Req) -> Key,
    Key: Hash + Eq + Clone,
    C: Clock,
    O: Observer,
{
    type Breaker = Arc<CircuitBreaker<C, O>>;

    #[inline]
    fn select(&self, req: &Req) -> Self::Breaker {
        self.registry.get(&(self.key)(req))
    }
}

/// Wraps services in a [`KeyedBreaker`]: each request is guarded by the breaker its
/// [`SelectBreaker`] picks (one per key with [`KeyedBreakerLayer::new`]).
///
/// ```
/// use breaker_core::CircuitBreaker;
/// use breaker_tower::{KeyedBreakerLayer, KeyedRegistry};
/// use std::sync::Arc;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hosts = Arc::new(KeyedRegistry::new(10_000, |_host: &String| {
///     CircuitBreaker::builder().consecutive_failures(5).thread_counters(0).build().unwrap()
/// })?);
/// let client = KeyedBreakerLayer::new(|url: &String| url.split('/').nth(2).unwrap_or("").to_string(), hosts.clone())
///     .layer(service_fn(|url: String| async move { Ok::<_, std::io::Error>(url.len()) }));
/// client.oneshot("https://api.example.com/prices".to_string()).await?;
/// assert!(hosts.peek("api.example.com").is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct KeyedBreakerLayer<Sel, K = ErrorsAreFailures> {
    select: Sel,
    classify: K,
}

impl<F, Key, C, O> KeyedBreakerLayer<ByKey<F, Key, C, O>> {
    /// Requests are keyed by `key(&request)` (e.g. the upstream host) and guarded by that
    /// key's breaker from `registry`.
    pub fn new(key: F, registry: Arc<KeyedRegistry<Key, C, O>>) -> Self {
        KeyedBreakerLayer::select(ByKey { key, registry })
    }
}

impl<Sel> KeyedBreakerLayer<Sel> {
    /// Requests are guarded by the breaker `select` picks for them.
    pub fn select(select: Sel) -> Self {
        KeyedBreakerLayer {
            select,
            classify: ErrorsAreFailures,
        }
    }
}

impl<Sel, K> KeyedBreakerLayer<Sel, K> {
    /// Classifies results with `classify`.
    pub fn classify<K2>(self, classify: K2) -> KeyedBreakerLayer<Sel, K2> {
        KeyedBreakerLayer {
            select: self.select,
            classify,
        }
    }
}

impl<S, Sel: Clone, K: Clone> Layer<S> for KeyedBreakerLayer<Sel, K> {
    type Service = KeyedBreaker<S, Sel, K>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBreaker {
            inner,
            select: self.select.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// A service whose requests are guarded by the breaker a [`SelectBreaker`] picks for each
/// (one per key with [`ByKey`]). See [`KeyedBreakerLayer`].
///
/// `poll_ready` passes through to the inner service: which breaker decides depends on the
/// request, which `poll_ready` does not see. A refused request does not use the readiness.
#[derive(Clone, Debug)]
pub struct KeyedBreaker<S, Sel, K = ErrorsAreFailures> {
    inner: S,
    select: Sel,
    classify: K,
}

impl<S, Sel, K> KeyedBreaker<S, Sel, K> {
    /// What picks each request's breaker ([`ByKey::registry`] gives the registry).
    pub fn selector(&self) -> &Sel {
        &self.select
    }
}

impl<S, Sel, K, Req> Service<Req> for KeyedBreaker<S, Sel, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Sel: SelectBreaker<Req>,
    K: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future, Sel::Breaker, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::Inner(e.into()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let breaker = self.select.select(&req);
        match Permit::acquire(&breaker) {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classify.clone())
            }
            Err(rejected) => ResponseFuture::rejected(rejected),
        }
    }
}
