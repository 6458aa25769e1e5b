//! One breaker per key (host, route, tenant), in a bounded registry.

use std::borrow::Borrow;
use std::convert::Infallible;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};

use breaker_core::{
    CircuitBreaker, Classify, Clock, ConfigError, ConfigValue, ErrorsAreFailures, Inspect,
    InspectGroup, Observer, Permit, Snapshot,
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
pub struct KeyedRegistry<Key, C, O> {
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

/// Wraps services in a [`KeyedBreaker`]: requests are guarded by the breaker of their key.
#[derive(Debug)]
pub struct KeyedBreakerLayer<F, Key, C, O, K = ErrorsAreFailures> {
    key: F,
    registry: Arc<KeyedRegistry<Key, C, O>>,
    classify: K,
}

impl<F: Clone, Key, C, O, K: Clone> Clone for KeyedBreakerLayer<F, Key, C, O, K> {
    fn clone(&self) -> Self {
        KeyedBreakerLayer {
            key: self.key.clone(),
            registry: Arc::clone(&self.registry),
            classify: self.classify.clone(),
        }
    }
}

impl<F, Key, C, O> KeyedBreakerLayer<F, Key, C, O> {
    /// Requests are keyed by `key(&request)` (e.g. the upstream host) and guarded by that
    /// key's breaker from `registry`.
    pub fn new(key: F, registry: Arc<KeyedRegistry<Key, C, O>>) -> Self {
        KeyedBreakerLayer {
            key,
            registry,
            classify: ErrorsAreFailures,
        }
    }
}

impl<F, Key, C, O, K> KeyedBreakerLayer<F, Key, C, O, K> {
    /// Classifies results with `classify`.
    pub fn classify<K2>(self, classify: K2) -> KeyedBreakerLayer<F, Key, C, O, K2> {
        KeyedBreakerLayer {
            key: self.key,
            registry: self.registry,
            classify,
        }
    }
}

impl<S, F: Clone, Key, C, O, K: Clone> Layer<S> for KeyedBreakerLayer<F, Key, C, O, K> {
    type Service = KeyedBreaker<S, F, Key, C, O, K>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBreaker {
            inner,
            key: self.key.clone(),
            registry: Arc::clone(&self.registry),
            classify: self.classify.clone(),
        }
    }
}

/// A service whose requests are guarded by one breaker per key. See [`KeyedBreakerLayer`].
#[derive(Debug)]
pub struct KeyedBreaker<S, F, Key, C, O, K = ErrorsAreFailures> {
    inner: S,
    key: F,
    registry: Arc<KeyedRegistry<Key, C, O>>,
    classify: K,
}

impl<S: Clone, F: Clone, Key, C, O, K: Clone> Clone for KeyedBreaker<S, F, Key, C, O, K> {
    fn clone(&self) -> Self {
        KeyedBreaker {
            inner: self.inner.clone(),
            key: self.key.clone(),
            registry: Arc::clone(&self.registry),
            classify: self.classify.clone(),
        }
    }
}

impl<S, F, Key, C, O, K> KeyedBreaker<S, F, Key, C, O, K> {
    /// The registry of breakers.
    pub fn registry(&self) -> &Arc<KeyedRegistry<Key, C, O>> {
        &self.registry
    }
}

impl<S, F, Key, C, O, K, Req> Service<Req> for KeyedBreaker<S, F, Key, C, O, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: Fn(&Req) -> Key,
    Key: Hash + Eq + Clone,
    C: Clock,
    O: Observer,
    K: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future, Arc<CircuitBreaker<C, O>>, K>;

    /// Passes through to the inner service: which breaker decides depends on the request,
    /// which `poll_ready` does not see. A refused request does not use the readiness.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::Inner(e.into()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let breaker = self.registry.get(&(self.key)(&req));
        match Permit::acquire(&breaker) {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classify.clone())
            }
            Err(rejected) => ResponseFuture::rejected(rejected),
        }
    }
}
