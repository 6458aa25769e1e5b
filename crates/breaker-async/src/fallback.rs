//! Fallbacks: what to answer when the dependency cannot.
//!
//! Every fallback method awaits the guarded call and, if it ends in an [`Error`] (rejected,
//! timed out or failed), answers from the fallback instead, marks the answer with its
//! [`Source`], and reports [`Event::FallbackUsed`] to the breaker's observer.

use std::future::{Future, IntoFuture};
use std::hash::Hash;
use std::time::Duration;

use breaker_core::{Clock, ConfigError, ConfigValue, Event, MonotonicClock};

use breaker_core::{BreakerRef, Classify};

use crate::error::{Cause, Error};
use crate::guard::GuardedCall;
use crate::timer::Timer;

/// A value and where it came from, so callers can tell a fallback from the real answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub source: Source,
}

impl<T> Served<T> {
    /// Whether the value came from a fallback (including the cache).
    pub fn is_fallback(&self) -> bool {
        self.source != Source::Primary
    }

    /// The value.
    pub fn into_inner(self) -> T {
        self.value
    }
}

/// Where a [`Served`] value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The guarded call itself.
    Primary,
    /// A fallback (`kind`: `"value"`, `"function"` or `"alternative"`), used because of
    /// `cause`.
    Fallback {
        /// Which fallback.
        kind: &'static str,
        /// Why the guarded call did not answer.
        cause: Cause,
    },
    /// The last good response for the key, `age` old, used because of `cause`.
    Cache {
        /// Time since the cached response was stored.
        age: Duration,
        /// Why the guarded call did not answer.
        cause: Cause,
    },
}

impl<B, F, K, Tm, V, E> GuardedCall<B, F, K, Tm>
where
    B: BreakerRef,
    F: Future<Output = Result<V, E>>,
    K: Classify<V, E>,
    Tm: Timer,
{
    /// Answers `value` when the call does not.
    pub async fn or_value(self, value: V) -> Served<V> {
        self.or_else_kind("value", |_| value).await
    }

    /// Answers `f(&error)` when the call does not.
    pub async fn or_else(self, f: impl FnOnce(&Error<E>) -> V) -> Served<V> {
        self.or_else_kind("function", f).await
    }

    async fn or_else_kind(self, kind: &'static str, f: impl FnOnce(&Error<E>) -> V) -> Served<V> {
        let breaker = self.breaker.clone();
        match self.await {
            Ok(value) => primary(value),
            Err(e) => {
                breaker.breaker().notify(&Event::FallbackUsed { kind });
                Served {
                    value: f(&e),
                    source: Source::Fallback {
                        kind,
                        cause: e.cause(),
                    },
                }
            }
        }
    }

    /// Calls an alternative (another service, a replica) when the call does not answer.
    /// The alternative's own error is returned if it fails too.
    pub async fn or_else_async<A, E2>(
        self,
        alternative: impl FnOnce(Error<E>) -> A,
    ) -> Result<Served<V>, E2>
    where
        A: IntoFuture<Output = Result<V, E2>>,
    {
        let breaker = self.breaker.clone();
        match self.await {
            Ok(value) => Ok(primary(value)),
            Err(e) => {
                let cause = e.cause();
                breaker.breaker().notify(&Event::FallbackUsed {
                    kind: "alternative",
                });
                let value = alternative(e).await?;
                Ok(Served {
                    value,
                    source: Source::Fallback {
                        kind: "alternative",
                        cause,
                    },
                })
            }
        }
    }

    /// Stores each good response in `cache` under `key`, and answers the last good one
    /// (if younger than the cache's TTL) when the call does not. With no cached response
    /// the call's error is returned.
    pub async fn or_cached<Key, C>(
        self,
        cache: &ResponseCache<Key, V, C>,
        key: Key,
    ) -> Result<Served<V>, Error<E>>
    where
        Key: Eq + Hash + Clone,
        V: Clone,
        C: Clock,
    {
        let breaker = self.breaker.clone();
        match self.await {
            Ok(value) => {
                cache.insert(key, value.clone());
                Ok(primary(value))
            }
            Err(e) => match cache.get(&key) {
                Some((value, age)) => {
                    breaker
                        .breaker()
                        .notify(&Event::FallbackUsed { kind: "cache" });
                    Ok(Served {
                        value,
                        source: Source::Cache {
                            age,
                            cause: e.cause(),
                        },
                    })
                }
                None => Err(e),
            },
        }
    }

    /// [`or_cached`](Self::or_cached), then `f(&error)` when nothing is cached: the Go tutorials'
    /// "cache, then default" chain.
    pub async fn or_cached_else<Key, C>(
        self,
        cache: &ResponseCache<Key, V, C>,
        key: Key,
        f: impl FnOnce(&Error<E>) -> V,
    ) -> Served<V>
    where
        Key: Eq + Hash + Clone,
        V: Clone,
        C: Clock,
    {
        let breaker = self.breaker.clone();
        match self.or_cached(cache, key).await {
            Ok(served) => served,
            Err(e) => {
                breaker
                    .breaker()
                    .notify(&Event::FallbackUsed { kind: "function" });
                Served {
                    value: f(&e),
                    source: Source::Fallback {
                        kind: "function",
                        cause: e.cause(),
                    },
                }
            }
        }
    }
}

fn primary<V>(value: V) -> Served<V> {
    Served {
        value,
        source: Source::Primary,
    }
}

/// The last good response per key: bounded in size (S3-FIFO eviction, from `quick_cache`)
/// and with a time to live measured on a [`Clock`] (so tests can use a manual clock).
///
/// ```
/// use breaker_async::ResponseCache;
/// use breaker_core::ManualClock;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let cache = ResponseCache::with_clock(1000, Duration::from_secs(60), clock.clone())?;
/// cache.insert("ACME", 42);
/// clock.advance(Duration::from_secs(10));
/// assert_eq!(cache.get(&"ACME"), Some((42, Duration::from_secs(10))));
/// clock.advance(Duration::from_secs(51));
/// assert_eq!(cache.get(&"ACME"), None); // older than the TTL
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
pub struct ResponseCache<K, V, C = MonotonicClock> {
    entries: quick_cache::sync::Cache<K, (V, u64)>,
    ttl: u64,
    capacity: usize,
    clock: C,
}

impl<K, V, C> std::fmt::Debug for ResponseCache<K, V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("capacity", &self.capacity)
            .field("ttl", &Duration::from_nanos(self.ttl))
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> ResponseCache<K, V, MonotonicClock> {
    /// Up to `capacity` entries, each served for at most `ttl` after it was stored.
    pub fn new(capacity: usize, ttl: Duration) -> Result<Self, ConfigError> {
        Self::with_clock(capacity, ttl, MonotonicClock::new())
    }
}

impl<K: Eq + Hash + Clone, V: Clone, C: Clock> ResponseCache<K, V, C> {
    /// Like [`new`](ResponseCache::new), measuring age on `clock`.
    /// Allowed: `capacity >= 1`, `ttl > 0`.
    pub fn with_clock(capacity: usize, ttl: Duration, clock: C) -> Result<Self, ConfigError> {
        if capacity == 0 {
            return Err(ConfigError::new(
                "cache.capacity",
                ConfigValue::Count(0),
                "at least 1 entry",
            ));
        }
        if ttl.is_zero() {
            return Err(ConfigError::new(
                "cache.ttl",
                ConfigValue::Duration(ttl),
                "a duration > 0",
            ));
        }
        Ok(ResponseCache {
            entries: quick_cache::sync::Cache::new(capacity),
            ttl: u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX),
            capacity,
            clock,
        })
    }

    /// Stores `value` as the last good response for `key`.
    pub fn insert(&self, key: K, value: V) {
        self.entries.insert(key, (value, self.clock.now_nanos()));
    }

    /// The last good response for `key` and its age, unless it is older than the TTL.
    pub fn get(&self, key: &K) -> Option<(V, Duration)> {
        let (value, stored) = self.entries.get(key)?;
        let age = self.clock.now_nanos().saturating_sub(stored);
        if age > self.ttl {
            self.entries.remove(key);
            return None;
        }
        Some((value, Duration::from_nanos(age)))
    }

    /// Entries held (expired ones are dropped when read).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}
