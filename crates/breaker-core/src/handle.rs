//! Handles through which adapters reach a breaker.

use crate::breaker::CircuitBreaker;
use crate::clock::Clock;
use crate::observer::Observer;

/// A cloneable handle to a breaker that an adapter (a future, a service, a pool) keeps, and
/// the one way every adapter of this workspace accepts a breaker:
///
/// - `&'static CircuitBreaker`, from [`CircuitBreaker::leak`] or a `static`: a pointer copy
///   per call, nothing to count;
/// - `Arc<CircuitBreaker>`: one reference-count increment and decrement per admitted call;
/// - `&CircuitBreaker`, for calls that do not outlive a borrow;
/// - any type of yours that gives access to a breaker (a fleet-shared breaker, a struct
///   that holds the breaker beside other settings): implement this trait.
///
/// A handle and its clones reach one breaker: [`breaker`](Self::breaker) returns the same
/// `CircuitBreaker` for all of them, always. Adapters rely on it (an adapter may admit a
/// call through one handle and record it through a clone; [`Permit::with_handle`] panics
/// when the two differ).
///
/// [`Permit::with_handle`]: crate::Permit::with_handle
/// ```
/// use breaker_core::{BreakerRef, CircuitBreaker, Outcome, Permit};
/// use std::sync::Arc;
///
/// fn guarded<B: BreakerRef>(breaker: &B) -> Result<u32, breaker_core::Rejected> {
///     let permit = Permit::acquire(breaker)?;
///     permit.record(Outcome::Success);
///     Ok(1)
/// }
///
/// let leaked: &'static CircuitBreaker = CircuitBreaker::builder().build()?.leak();
/// let shared: Arc<CircuitBreaker> = Arc::new(CircuitBreaker::builder().build()?);
/// assert_eq!(guarded(&leaked)? + guarded(&shared)?, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait BreakerRef: Clone {
    /// The breaker's clock.
    type Clock: Clock;
    /// The breaker's observer.
    type Observer: Observer;

    /// The breaker.
    fn breaker(&self) -> &CircuitBreaker<Self::Clock, Self::Observer>;
}

impl<C: Clock, O: Observer> BreakerRef for &CircuitBreaker<C, O> {
    type Clock = C;
    type Observer = O;

    #[inline]
    fn breaker(&self) -> &CircuitBreaker<C, O> {
        self
    }
}

#[cfg(feature = "alloc")]
impl<C: Clock, O: Observer> BreakerRef for alloc::sync::Arc<CircuitBreaker<C, O>> {
    type Clock = C;
    type Observer = O;

    #[inline]
    fn breaker(&self) -> &CircuitBreaker<C, O> {
        self
    }
}

/// What an adapter's constructor accepts as its breaker: any [`BreakerRef`] as it is, or a
/// [`CircuitBreaker`] by value, which goes into an `Arc`.
///
/// ```
/// use breaker_core::{BreakerRef, CircuitBreaker, IntoBreakerRef};
/// use std::sync::Arc;
///
/// fn adapter<B: IntoBreakerRef>(breaker: B) -> B::Ref {
///     breaker.into_breaker_ref()
/// }
///
/// let owned: Arc<CircuitBreaker> = adapter(CircuitBreaker::builder().build()?);
/// let shared = adapter(owned.clone());
/// let leaked: &'static CircuitBreaker = adapter(CircuitBreaker::builder().build()?.leak());
/// assert!(Arc::ptr_eq(&owned, &shared));
/// # let _ = leaked;
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
pub trait IntoBreakerRef {
    /// The handle the adapter keeps.
    type Ref: BreakerRef;

    /// The handle.
    fn into_breaker_ref(self) -> Self::Ref;
}

impl<B: BreakerRef> IntoBreakerRef for B {
    type Ref = B;

    #[inline]
    fn into_breaker_ref(self) -> B {
        self
    }
}

#[cfg(feature = "alloc")]
impl<C: Clock, O: Observer> IntoBreakerRef for CircuitBreaker<C, O> {
    type Ref = alloc::sync::Arc<CircuitBreaker<C, O>>;

    #[inline]
    fn into_breaker_ref(self) -> Self::Ref {
        alloc::sync::Arc::new(self)
    }
}
