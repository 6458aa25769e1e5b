//! One breaker per key (host, route, tenant), in a bounded registry.

use std::borrow::Borrow;
use std::convert::Infallible;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use breaker_core::{
    BreakerRef, CircuitBreaker, Classify, Clock, ConfigError, ConfigValue, ErrorsAreFailures,
    Inspect, InspectGroup, MonotonicClock, NoopObserver, Observer, Permit, Snapshot,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BoxError, Error};
use crate::future::ResponseFuture;

type Make<Key, C, O> = dyn Fn(&Key) -> CircuitBreaker<C, O> + Send + Sync;

/// Breakers by key, made on first use by a factory, at most `capacity` of them.
///
/// When full, the least useful breakers are evicted (quick_cache's S3-FIFO: keys seen once
/// go first, frequently used keys stay), so a client that invents keys cannot grow memory
/// without limit; an evicted key starts again with a fresh, closed breaker. The capacity is
/// quick_cache's target: it may evict a little before it is reached.
///
/// Per-key breakers are many and each sees a share of the traffic: build them with
/// [`thread_counters(0)`](breaker_core::Builder::thread_counters), which leaves out the
/// per-thread counter lines a breaker shared by every thread wants (128 bytes per CPU). A
/// per-key breaker with a count window of 20 then takes about 780 bytes, and a registry of
/// 100,000 hosts about 91 MB with keys and map (measured by `tests/memory.rs`).
///
/// ```
/// use breaker_core::CircuitBreaker;
/// use breaker_tower::KeyedRegistry;
///
/// let registry = KeyedRegistry::new(10_000, |_host: &String| {
///     CircuitBreaker::builder()
///         .consecutive_failures(5)
///         .thread_counters(0)
///         .build()
///         .expect("valid settings")
/// })?;
/// let a = registry.get(&"api.example.com".to_string());
/// let b = registry.get(&"api.example.com".to_string());
/// assert!(std::sync::Arc::ptr_eq(&a, &b));
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
pub struct KeyedRegistry<Key, C = MonotonicClock, O = NoopObserver> {
    breakers: quick_cache::sync::Cache<Key, Arc<CircuitBreaker<C, O>>>,
    make: Box<Make<Key, C, O>>,
    capacity: usize,
}

impl<Key, C, O> std::fmt::Debug for KeyedRegistry<Key, C, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedRegistry")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<Key, C, O> KeyedRegistry<Key, C, O>
where
    Key: Hash + Eq + Clone,
{
    /// A registry of at most `capacity` breakers (allowed: `>= 1`), each made by `make`
    /// on the first request for its key.
    pub fn new(
        capacity: usize,
        make: impl Fn(&Key) -> CircuitBreaker<C, O> + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        if capacity == 0 {
            return Err(ConfigError::new(
                "keyed.capacity",
                ConfigValue::Count(0),
                "at least 1 breaker",
            ));
        }
        Ok(KeyedRegistry {
            breakers: quick_cache::sync::Cache::new(capacity),
            make: Box::new(make),
            capacity,
        })
    }

    /// The breaker for `key`, made now if there is none. `key` may be any borrowed form of
    /// the key (a `&str` for `String` keys): looking up an existing breaker allocates
    /// nothing.
    pub fn get<Q>(&self, key: &Q) -> Arc<CircuitBreaker<C, O>>
    where
        Key: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = Key> + ?Sized,
    {
        let made = self.breakers.get_or_insert_with(key, || {
            Ok::<_, Infallible>(Arc::new((self.make)(&key.to_owned())))
        });
        match made {
            Ok(breaker) => breaker,
            Err(never) => match never {},
        }
    }

    /// The breaker for `key`, if one exists.
    pub fn peek<Q>(&self, key: &Q) -> Option<Arc<CircuitBreaker<C, O>>>
    where
        Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.breakers.peek(key)
    }

    /// Breakers held.
    pub fn len(&self) -> usize {
        self.breakers.len()
    }

    /// Whether no breaker exists yet.
    pub fn is_empty(&self) -> bool {
        self.breakers.is_empty()
    }

    /// The bound on breakers held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// A keyed registry is reported by health routes one line per key: register it with
/// `Registry::register_group("upstreams", registry)`, and `/health` lists
/// `upstreams/<key>` for every breaker it holds.
impl<Key, C, O> InspectGroup for KeyedRegistry<Key, C, O>
where
    Key: Hash + Eq + Clone + std::fmt::Display + Send + Sync,
    C: Clock + Send + Sync + 'static,
    O: Observer + Send + Sync + 'static,
{
    fn snapshots(&self) -> Vec<(String, Snapshot)> {
        self.breakers
            .iter()
            .map(|(key, breaker)| (key.to_string(), breaker.snapshot()))
            .collect()
    }

    /// Every breaker held, to inspect in full and steer (an admin interface's `group/key`).
    fn members(&self) -> Vec<(String, Arc<dyn Inspect>)> {
        self.breakers
            .iter()
            .map(|(key, breaker)| (key.to_string(), breaker as Arc<dyn Inspect>))
            .collect()
    }

    /// The breaker whose key displays as `key`, if one is held (never made by this call).
    fn member(&self, key: &str) -> Option<Arc<dyn Inspect>> {
        use std::fmt::Write as _;
        let mut shown = String::new();
        self.breakers.iter().find_map(|(k, breaker)| {
            shown.clear();
            let _ = write!(shown, "{k}");
            (shown == key).then_some(breaker as Arc<dyn Inspect>)
        })
    }
}

/// Picks the breaker that guards a request: [`ByKey`] (a key function over a
/// [`KeyedRegistry`]) or your own routing.
///
/// ```
/// use breaker_core::CircuitBreaker;
/// use breaker_tower::SelectBreaker;
/// use std::sync::Arc;
///
/// /// Writes have a breaker of their own; reads share another.
/// struct ReadsAndWrites {
///     reads: Arc<CircuitBreaker>,
///     writes: Arc<CircuitBreaker>,
/// }
///
/// impl SelectBreaker<http::Request<()>> for ReadsAndWrites {
///     type Breaker = Arc<CircuitBreaker>;
///
///     fn select(&self, req: &http::Request<()>) -> Arc<CircuitBreaker> {
///         if req.method() == http::Method::GET { &self.reads } else { &self.writes }.clone()
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
