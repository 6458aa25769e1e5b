//! The layer.

use breaker_core::{BreakerRef, ErrorsAreFailures, IntoBreakerRef};
use tower_layer::Layer;

use crate::service::Breaker;

/// Wraps services in a [`Breaker`] sharing one circuit breaker.
///
/// ```
/// use breaker_core::{CircuitBreaker, Outcome};
/// use breaker_tower::BreakerLayer;
/// use std::sync::Arc;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let breaker = Arc::new(CircuitBreaker::builder().consecutive_failures(3).build()?);
/// let service = BreakerLayer::new(breaker)
///     // 4xx-like errors are the caller's, not an outage:
///     .classify(|r: &Result<u16, String>| match r {
///         Err(e) if e.starts_with('5') => Outcome::Failure,
///         _ => Outcome::Success,
///     })
///     .layer(service_fn(|code: u16| async move {
///         if code < 400 { Ok(code) } else { Err(format!("{code} from upstream")) }
///     }));
/// assert_eq!(service.oneshot(200).await?, 200);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct BreakerLayer<B, K = ErrorsAreFailures> {
    breaker: B,
    classify: K,
}

impl<B: BreakerRef> BreakerLayer<B> {
    /// A layer guarding services with `breaker` (any [`IntoBreakerRef`]: an
    /// `Arc<CircuitBreaker>`, a `&'static CircuitBreaker`, or a breaker by value, which goes
    /// into an `Arc`); every `Err` counts as a failure.
    ///
    /// Over an `Arc`, each admitted request's response future holds a clone: two atomic
    /// read-modify-writes on the `Arc`'s count, a cache line that every thread calling the
    /// service writes (from ~4 ns to over 20 ns a request on one thread, by CPU, and more under
    /// contention; `docs/benchmarks.md`). A breaker
    /// that lives as long as the process can be [`leak`](breaker_core::CircuitBreaker::leak)ed
    /// instead, and the layer adds a few nanoseconds:
    ///
    /// ```
    /// use breaker_core::CircuitBreaker;
    /// use breaker_tower::BreakerLayer;
    /// use tower::{Layer, service_fn};
    ///
    /// let payments = CircuitBreaker::builder().consecutive_failures(5).build()?.leak();
    /// let service = BreakerLayer::new(payments)
    ///     .layer(service_fn(|amount: u64| async move { Ok::<_, std::io::Error>(amount) }));
    /// # let _ = service;
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn new(breaker: impl IntoBreakerRef<Ref = B>) -> Self {
        BreakerLayer {
            breaker: breaker.into_breaker_ref(),
            classify: ErrorsAreFailures,
        }
    }
}

impl<B, K> BreakerLayer<B, K> {
    /// Classifies results with `classify` (a [`Classify`](breaker_core::Classify)).
    pub fn classify<K2>(self, classify: K2) -> BreakerLayer<B, K2> {
        BreakerLayer {
            breaker: self.breaker,
            classify,
        }
    }
}

impl<S, B: BreakerRef, K: Clone> Layer<S> for BreakerLayer<B, K> {
    type Service = Breaker<S, B, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker::new(inner, self.breaker.clone(), self.classify.clone())
    }
}
