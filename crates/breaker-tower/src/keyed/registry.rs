//! The registry of per-key breakers: a bounded cache, the breakers held aside while in
//! trouble, and the idle sweep.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use breaker_core::{
    CircuitBreaker, Clock, ConfigError, ConfigInForce, ConfigValue, Inspect, InspectGroup,
    MonotonicClock, NoopObserver, Observer, OperatorAction, Snapshot, UnsupportedAction,
};
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use quick_cache::{DefaultHashBuilder, UnitWeighter};

use super::aside::{Aside, Handle, Park, Trouble, judge};

type Make<Key, C, O> = dyn Fn(&Key) -> CircuitBreaker<C, O> + Send + Sync;

/// What a [`KeyedRegistryBuilder`] builds (its types, without owning any of them).
type Builds<Key, C, O> = fn() -> KeyedRegistry<Key, C, O>;

/// The cache of breakers, whose evictions are parked aside.
type Breakers<Key, C, O> =
    Cache<Key, Handle<C, O>, UnitWeighter, DefaultHashBuilder, Park<Key, C, O>>;

/// The share of the capacity kept for breakers in trouble unless
/// [`pinned_share`](KeyedRegistryBuilder::pinned_share) says otherwise, in percent.
const DEFAULT_PINNED_SHARE: f64 = 10.0;
const MAX_PINNED_SHARE: f64 = 90.0;
const MIN_IDLE_TTL: Duration = Duration::from_secs(1);

/// Breakers by key, made on first use by a factory, at most `capacity` of them; a breaker in
/// trouble is never lost to make room for a new key.
///
/// When full, the least useful breakers are evicted (quick_cache's S3-FIFO: keys seen once
/// go first, frequently used keys stay), so a client that invents keys cannot grow memory
/// without limit. An evicted key starts again with a fresh, closed breaker, but only if its
/// breaker had nothing to lose: a breaker that is **open, half-open or forced open**, one
/// **holding failures or slow calls in its window** (or failures in a row), and one a call is
/// still using are held aside (*pinned*) instead, and its key gets it back on its next
/// request. A crawler or an attacker sending requests for a million unique hosts cannot
/// close the breaker of the host that is down.
///
/// Pinned breakers take at most a share of the capacity
/// ([`pinned_share`](KeyedRegistryBuilder::pinned_share), 10 % by default); the cache holds
/// the rest, so the registry never holds more than `capacity` breakers (quick_cache's
/// capacity is a target: it may evict a little before it is reached). When the pinned share
/// is full, the breaker in the least trouble gives way (one merely in use first, then a
/// failing one, then a tripped one; among equals, the one held aside longest) to one in as
/// much trouble or more, and a breaker in less trouble than all those held is let go: its
/// key starts again with a fresh breaker. Each such loss of a tripped or failing breaker is
/// counted in [`KeyedStats::pins_lost`]: alert on it, and raise the capacity or the share. A
/// new key always gets a breaker.
///
/// Pinned breakers are looked at again every so often (each time a quarter of the cache's
/// capacity in new keys has come, and on [`sweep`](Self::sweep)): those that recovered are
/// let go. With an
/// [`idle_ttl`](KeyedRegistryBuilder::idle_ttl), so are closed breakers (failing ones
/// included) that saw no call for that long; open, half-open and forced-open breakers are
/// kept. Idleness is read from each breaker's own totals and clock when the registry looks,
/// so a lookup of an existing key does no more than before: a hash, a read lock and an `Arc`
/// clone, no allocation.
///
/// Per-key breakers are many and each sees a share of the traffic: build them with
/// [`thread_counters(0)`](breaker_core::Builder::thread_counters), which leaves out the
/// per-thread counter lines a breaker shared by every thread wants (128 bytes per CPU). A
/// per-key breaker with a count window of 20 then takes about 820 bytes, and a registry of
/// 100,000 hosts about 94 MB with keys and map (measured by `tests/memory.rs`). A breaker
/// held aside costs about 350 bytes more (its key again, the index that orders them).
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
    breakers: Breakers<Key, C, O>,
    aside: Arc<Aside<Key, C, O>>,
    make: Box<Make<Key, C, O>>,
    capacity: usize,
    idle: Option<Idle>,
    /// New keys so far, to sweep every `sweep_every` of them.
    misses: AtomicU64,
    sweep_every: u64,
    sweeping: Mutex<()>,
}

/// What the idle sweep remembers of each breaker in the cache.
struct Idle {
    ttl: Duration,
    /// By breaker address: its activity when last seen, and since when (its own clock) it
    /// has not changed. A breaker made since the last sweep is marked [`Mark::MADE`], so
    /// that it never inherits the mark of a freed breaker at the same address.
    marks: Mutex<HashMap<usize, Mark>>,
}

#[derive(Clone, Copy, Debug)]
struct Mark {
    activity: u64,
    since: u64,
}

impl Mark {
    const MADE: Mark = Mark {
        activity: u64::MAX,
        since: 0,
    };
}

impl Idle {
    fn marks(&self) -> MutexGuard<'_, HashMap<usize, Mark>> {
        self.marks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn address<T>(breaker: &Arc<T>) -> usize {
    Arc::as_ptr(breaker) as usize
}

impl<Key, C, O> std::fmt::Debug for KeyedRegistry<Key, C, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedRegistry")
            .field("capacity", &self.capacity)
            .field("max_pinned", &self.aside.max_pinned())
            .field("idle_ttl", &self.idle.as_ref().map(|idle| idle.ttl))
            .finish_non_exhaustive()
    }
}

/// Settings of a [`KeyedRegistry`], from [`KeyedRegistry::builder`]; checked by
/// [`build`](Self::build).
///
/// ```
/// use breaker_core::CircuitBreaker;
/// use breaker_tower::KeyedRegistry;
/// use std::time::Duration;
///
/// let hosts = KeyedRegistry::builder(10_000)
///     .pinned_share(20.0) // up to 2,000 breakers in trouble kept through any key flood
///     .idle_ttl(Duration::from_secs(600)) // closed breakers unused for 10 minutes go
///     .build(|_host: &String| {
///         CircuitBreaker::builder().consecutive_failures(5).thread_counters(0).build().unwrap()
///     })?;
/// assert_eq!(hosts.stats().max_pinned, 2_000);
///
/// let err = KeyedRegistry::builder(10_000).pinned_share(95.0).build(|_: &String| {
///     CircuitBreaker::builder().build().unwrap()
/// });
/// assert_eq!(err.unwrap_err().field(), "keyed.pinned_share");
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
pub struct KeyedRegistryBuilder<Key, C = MonotonicClock, O = NoopObserver> {
    capacity: usize,
    pinned_share: f64,
    idle_ttl: Option<Duration>,
    _registry: PhantomData<Builds<Key, C, O>>,
}

impl<Key, C, O> Clone for KeyedRegistryBuilder<Key, C, O> {
    fn clone(&self) -> Self {
        KeyedRegistryBuilder {
            capacity: self.capacity,
            pinned_share: self.pinned_share,
            idle_ttl: self.idle_ttl,
            _registry: PhantomData,
        }
    }
}

impl<Key, C, O> std::fmt::Debug for KeyedRegistryBuilder<Key, C, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedRegistryBuilder")
            .field("capacity", &self.capacity)
            .field("pinned_share", &self.pinned_share)
            .field("idle_ttl", &self.idle_ttl)
            .finish()
    }
}

impl<Key, C, O> KeyedRegistryBuilder<Key, C, O> {
    /// The share of the capacity, in percent, kept for breakers in trouble that the cache
    /// let go (allowed: 0 to 90; default 10). 0 keeps none: an evicted key always starts
    /// again with a fresh breaker.
    pub fn pinned_share(mut self, percent: f64) -> Self {
        self.pinned_share = percent;
        self
    }

    /// Closed breakers (failing ones included) that saw no call for `ttl` are let go when
    /// the registry next looks (allowed: at least 1 s; default: never). Make it longer than
    /// the gaps between calls to a key whose failures should count together.
    pub fn idle_ttl(mut self, ttl: Duration) -> Self {
        self.idle_ttl = Some(ttl);
        self
    }
}

impl<Key, C, O> KeyedRegistryBuilder<Key, C, O>
where
    Key: Hash + Eq + Clone,
    C: Clock,
    O: Observer,
{
    /// Checks the settings and builds the registry, whose breakers `make` builds on the
    /// first request for their key.
    pub fn build(
        self,
        make: impl Fn(&Key) -> CircuitBreaker<C, O> + Send + Sync + 'static,
    ) -> Result<KeyedRegistry<Key, C, O>, ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::new(
                "keyed.capacity",
                ConfigValue::Count(0),
                "at least 1 breaker",
            ));
        }
        if !(0.0..=MAX_PINNED_SHARE).contains(&self.pinned_share) {
            return Err(ConfigError::new(
                "keyed.pinned_share",
                ConfigValue::Number(self.pinned_share),
                "a percentage of the capacity in [0, 90]",
            ));
        }
        if let Some(ttl) = self.idle_ttl.filter(|ttl| *ttl < MIN_IDLE_TTL) {
            return Err(ConfigError::new(
                "keyed.idle_ttl",
                ConfigValue::Duration(ttl),
                "at least 1 s",
            ));
        }
        let max_pinned = (self.capacity as f64 * self.pinned_share / 100.0) as usize;
        let cached = self.capacity - max_pinned;
        let aside = Arc::new(Aside::new(max_pinned, judge::<C, O>));
        Ok(KeyedRegistry {
            breakers: Cache::with(
                cached,
                cached as u64,
                UnitWeighter,
                DefaultHashBuilder::default(),
                Park(Arc::clone(&aside)),
            ),
            aside,
            make: Box::new(make),
            capacity: self.capacity,
            idle: self.idle_ttl.map(|ttl| Idle {
                ttl,
                marks: Mutex::new(HashMap::new()),
            }),
            misses: AtomicU64::new(0),
            sweep_every: (cached as u64 / 4).max(64),
            sweeping: Mutex::new(()),
        })
    }
}

/// What a [`KeyedRegistry`] holds and what it let go, from [`KeyedRegistry::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedStats {
    /// Breakers held, pinned ones included.
    pub held: usize,
    /// Breakers in trouble held aside (pinned) after the cache let them go.
    pub pinned: usize,
    /// The most breakers held aside: the pinned share of the capacity.
    pub max_pinned: usize,
    /// Breakers in trouble (tripped or failing) let go because the pinned share was full:
    /// their keys start again with a fresh breaker. Zero unless more breakers are in trouble
    /// at once than the share holds.
    pub pins_lost: u64,
    /// Pinned breakers handed back to their key's next request.
    pub returned: u64,
    /// Closed breakers let go after [`idle_ttl`](KeyedRegistryBuilder::idle_ttl) without a
    /// call.
    pub expired: u64,
}

impl<Key, C, O> KeyedRegistry<Key, C, O>
where
    Key: Hash + Eq + Clone,
    C: Clock,
    O: Observer,
{
    /// A registry of at most `capacity` breakers (allowed: `>= 1`), each made by `make`
    /// on the first request for its key; 10 % of the capacity is kept for breakers in
    /// trouble, and idle breakers do not expire (see [`builder`](Self::builder)).
    pub fn new(
        capacity: usize,
        make: impl Fn(&Key) -> CircuitBreaker<C, O> + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        Self::builder(capacity).build(make)
    }

    /// Settings for a registry of at most `capacity` breakers (allowed: `>= 1`): the share
    /// kept for breakers in trouble, the idle TTL.
    pub fn builder(capacity: usize) -> KeyedRegistryBuilder<Key, C, O> {
        KeyedRegistryBuilder {
            capacity,
            pinned_share: DEFAULT_PINNED_SHARE,
            idle_ttl: None,
            _registry: PhantomData,
        }
    }
}

impl<Key, C, O> KeyedRegistry<Key, C, O>
where
    Key: Hash + Eq + Clone,
{
    /// The breaker for `key`, made now if there is none (or given back if it was pinned).
    /// `key` may be any borrowed form of the key (a `&str` for `String` keys): looking up an
    /// existing breaker allocates nothing.
    pub fn get<Q>(&self, key: &Q) -> Arc<CircuitBreaker<C, O>>
    where
        Key: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = Key> + ?Sized,
    {
        let mut missed = false;
        let found = self.breakers.get_or_insert_with(key, || {
            missed = true;
            let breaker = self
                .aside
                .take(key)
                .unwrap_or_else(|| Arc::new((self.make)(&key.to_owned())));
            Ok::<_, Infallible>(breaker)
        });
        let breaker = match found {
            Ok(breaker) => breaker,
            Err(never) => match never {},
        };
        if missed {
            self.after_miss(&breaker);
        }
        breaker
    }

    /// The work a new key brings: judging what its insertion evicted, and now and then a
    /// sweep. Never on the path of an existing key.
    #[cold]
    fn after_miss(&self, breaker: &Arc<CircuitBreaker<C, O>>) {
        if let Some(idle) = &self.idle {
            idle.marks().insert(address(breaker), Mark::MADE);
        }
        self.aside.settle();
        if self.misses.fetch_add(1, Ordering::Relaxed) % self.sweep_every == self.sweep_every - 1 {
            match self.sweeping.try_lock() {
                Ok(_sweeping) => self.sweep_now(),
                Err(TryLockError::Poisoned(sweeping)) => {
                    let _sweeping = sweeping.into_inner();
                    self.sweep_now()
                }
                Err(TryLockError::WouldBlock) => {} // another thread is sweeping
            }
        }
    }

    /// Looks at every breaker now: lets go of pinned breakers that recovered and, with an
    /// [`idle_ttl`](KeyedRegistryBuilder::idle_ttl), of closed breakers idle that long. The
    /// registry does this by itself each time a quarter of its cache's capacity in new keys
    /// has come; call it from a timer where new keys are rare. An idle breaker is one whose totals did not change
    /// between two looks `idle_ttl` apart (on its own clock), so it goes one to two sweeps
    /// after its TTL.
    pub fn sweep(&self) {
        let _sweeping = self.sweeping.lock().unwrap_or_else(PoisonError::into_inner);
        self.sweep_now();
    }

    fn sweep_now(&self) {
        let ttl = self.idle.as_ref().map(|idle| nanos(idle.ttl));
        self.aside.review(ttl);
        if let Some(idle) = &self.idle {
            self.expire_idle(idle);
            // A breaker found in use while expiring went back into the cache, which may have
            // evicted another.
            self.aside.settle();
        }
    }

    /// Lets go of the cache's closed breakers that have been idle for the TTL.
    fn expire_idle(&self, idle: &Idle) {
        let ttl = nanos(idle.ttl);
        let last = std::mem::take(&mut *idle.marks());
        let mut seen = HashMap::with_capacity(last.len());
        let mut expiring = Vec::new();
        for (key, breaker) in self.breakers.iter() {
            let verdict = (self.aside.judge)(&breaker, 2);
            let mark = match last.get(&address(&breaker)) {
                Some(mark) if mark.activity == verdict.activity => *mark,
                _ => Mark {
                    activity: verdict.activity,
                    since: verdict.now,
                },
            };
            seen.insert(address(&breaker), mark);
            let closed = matches!(verdict.trouble, None | Some(Trouble::Failing));
            if closed && verdict.now.saturating_sub(mark.since) >= ttl {
                expiring.push((key, breaker, verdict.activity));
            }
        }
        drop(last);
        {
            // Marks of breakers made meanwhile are newer than what this sweep saw.
            let mut marks = idle.marks();
            for (breaker, mark) in seen {
                marks.entry(breaker).or_insert(mark);
            }
        }
        for (key, breaker, activity) in expiring {
            // Out of the cache only if no call holds it; meanwhile a request for the key
            // waits for this decision instead of making a second breaker.
            let entry = self.breakers.entry(&key, Some(Duration::ZERO), |_, held| {
                if Arc::ptr_eq(held, &breaker) && Arc::strong_count(held) == 2 {
                    EntryAction::ReplaceWithGuard
                } else {
                    EntryAction::Retain(())
                }
            });
            if let EntryResult::Replaced(guard, held) = entry {
                // Nobody else can reach it now: a look tells whether it was used since.
                let verdict = (self.aside.judge)(&held, 2);
                let closed = matches!(verdict.trouble, None | Some(Trouble::Failing));
                if closed && verdict.activity == activity {
                    drop(guard);
                    self.aside.counters.expired.fetch_add(1, Ordering::Relaxed);
                } else {
                    let _ = guard.insert(held);
                }
            }
        }
    }

    /// The breaker for `key`, if one is held (in the cache or pinned); never made or moved by
    /// this call.
    pub fn peek<Q>(&self, key: &Q) -> Option<Arc<CircuitBreaker<C, O>>>
    where
        Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.breakers.peek(key).or_else(|| self.aside.peek(key))
    }

    /// Breakers held, pinned ones included.
    pub fn len(&self) -> usize {
        self.breakers.len() + self.aside.len()
    }

    /// Whether no breaker is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound on breakers held, pinned ones included.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// What the registry holds and what it let go. See [`KeyedStats`].
    pub fn stats(&self) -> KeyedStats {
        let counters = &self.aside.counters;
        KeyedStats {
            held: self.len(),
            pinned: self.aside.pinned(),
            max_pinned: self.aside.max_pinned(),
            pins_lost: counters.pins_lost.load(Ordering::Relaxed),
            returned: counters.returned.load(Ordering::Relaxed),
            expired: counters.expired.load(Ordering::Relaxed),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A pinned breaker as an admin interface sees it: the breaker itself, with a `pinned` detail
/// saying why it is held aside (`tripped`, `failing`, `in use`; `parked` until judged).
struct Pinned<C, O> {
    breaker: Handle<C, O>,
    trouble: Option<Trouble>,
}

impl<C, O> Inspect for Pinned<C, O>
where
    C: Clock + Send + Sync,
    O: Observer + Send + Sync,
{
    fn snapshot(&self) -> Snapshot {
        self.breaker.snapshot()
    }

    fn name(&self) -> &str {
        self.breaker.name()
    }

    fn config(&self) -> Option<ConfigInForce> {
        Some(self.breaker.config_in_force())
    }

    fn details(&self) -> Vec<(String, String)> {
        let why = self.trouble.map_or("parked", Trouble::as_str);
        vec![("pinned".to_string(), why.to_string())]
    }

    fn apply(&self, action: OperatorAction) -> Result<(), UnsupportedAction> {
        self.breaker.apply(action);
        Ok(())
    }
}

/// A keyed registry is reported by health routes one line per key: register it with
/// `Registry::register_group("upstreams", registry)`, and `/health` lists
/// `upstreams/<key>` for every breaker it holds, pinned ones included (those carry a
/// `pinned` detail).
impl<Key, C, O> InspectGroup for KeyedRegistry<Key, C, O>
where
    Key: Hash + Eq + Clone + std::fmt::Display + Send + Sync,
    C: Clock + Send + Sync + 'static,
    O: Observer + Send + Sync + 'static,
{
    fn snapshots(&self) -> Vec<(String, Snapshot)> {
        self.members()
            .into_iter()
            .map(|(key, member)| (key, member.snapshot()))
            .collect()
    }

    /// Every breaker held, to inspect in full and steer (an admin interface's `group/key`).
    fn members(&self) -> Vec<(String, Arc<dyn Inspect>)> {
        let mut members: Vec<(String, Arc<dyn Inspect>)> = self
            .breakers
            .iter()
            .map(|(key, breaker)| (key.to_string(), breaker as Arc<dyn Inspect>))
            .collect();
        let pinned = self.aside.members();
        if !pinned.is_empty() {
            // A key moving between the cache and the pinned breakers while they are listed
            // is listed once.
            let listed: HashSet<String> = members.iter().map(|(key, _)| key.clone()).collect();
            for (key, breaker, trouble) in pinned {
                let key = key.to_string();
                if !listed.contains(&key) {
                    members.push((key, Arc::new(Pinned { breaker, trouble })));
                }
            }
        }
        members
    }

    /// The breaker whose key displays as `key`, if one is held (never made by this call).
    fn member(&self, key: &str) -> Option<Arc<dyn Inspect>> {
        use std::fmt::Write as _;
        let mut shown = String::new();
        let mut shows = |k: &Key| {
            shown.clear();
            let _ = write!(shown, "{k}");
            shown == key
        };
        if let Some(breaker) = self
            .breakers
            .iter()
            .find_map(|(k, breaker)| shows(&k).then_some(breaker))
        {
            return Some(breaker as Arc<dyn Inspect>);
        }
        self.aside
            .members()
            .into_iter()
            .find(|(k, _, _)| shows(k))
            .map(|(_, breaker, trouble)| Arc::new(Pinned { breaker, trouble }) as Arc<dyn Inspect>)
    }
}
