//! Breakers the cache let go of while they were in trouble, held aside (pinned) until they
//! recover, their key is asked for again, or a breaker in deeper trouble needs the room.
//!
//! The cache's eviction hook only parks what it evicts here, under the cache's shard lock,
//! without looking at the breaker: a request for that key, which must take the same lock to
//! miss, then finds it here. The breakers are judged afterwards, outside every lock (reading a
//! breaker can make a due transition, whose observer must not run under a lock of ours).

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use breaker_core::{CircuitBreaker, Clock, Observer, State};

pub(super) type Handle<C, O> = Arc<CircuitBreaker<C, O>>;

/// Why a breaker is worth keeping, from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Trouble {
    /// Healthy so far, but a call holds it: its outcome is still to come.
    InUse,
    /// Closed or metrics-only, with failures or slow calls in its window or failures in a
    /// row.
    Failing,
    /// Open, half-open or forced open.
    Tripped,
}

impl Trouble {
    /// What an operator reads beside a breaker held aside.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Trouble::InUse => "in use",
            Trouble::Failing => "failing",
            Trouble::Tripped => "tripped",
        }
    }
}

/// What a look at a breaker found.
#[derive(Clone, Copy, Debug)]
pub(super) struct Verdict {
    /// `None`: nothing would be lost with it.
    pub(super) trouble: Option<Trouble>,
    /// Calls finished or refused so far: unchanged while the breaker is idle.
    pub(super) activity: u64,
    /// The breaker's own clock (each breaker's clock has an origin of its own: readings are
    /// compared only with readings of the same breaker).
    pub(super) now: u64,
}

/// How a registry looks at its breakers: [`judge`] for its clock and observer types, chosen
/// when it is built (where they are known to be a clock and an observer), so that lookups
/// need no more bounds than a hash map's.
pub(super) type Judge<C, O> = fn(&Handle<C, O>, usize) -> Verdict;

/// Looks at `breaker`, of which `holders` references are ours (more: a call holds it).
pub(super) fn judge<C: Clock, O: Observer>(breaker: &Handle<C, O>, holders: usize) -> Verdict {
    let s = breaker.snapshot();
    let counts = s.window;
    let trouble = match s.state {
        State::Open | State::HalfOpen | State::ForcedOpen => Some(Trouble::Tripped),
        State::Closed | State::MetricsOnly
            if counts.failures > 0 || counts.slow_calls > 0 || counts.consecutive_failures > 0 =>
        {
            Some(Trouble::Failing)
        }
        _ if Arc::strong_count(breaker) > holders => Some(Trouble::InUse),
        _ => None,
    };
    Verdict {
        trouble,
        activity: s.totals.requests() + s.totals.rejected,
        now: breaker.clock().now_nanos(),
    }
}

/// Counters of what the registry let go and gave back.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) pins_lost: AtomicU64,
    pub(super) returned: AtomicU64,
    pub(super) expired: AtomicU64,
}

/// A breaker held aside.
struct Held<C, O> {
    breaker: Handle<C, O>,
    /// `None` until judged.
    pin: Option<Pin>,
}

/// Why and since when a breaker is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pin {
    trouble: Trouble,
    /// Order of arrival: among breakers in the same trouble, the oldest gives way first.
    seq: u64,
    /// Its activity when last seen, and since when (its own clock) it has not changed.
    activity: u64,
    since: u64,
}

struct Table<Key, C, O> {
    held: HashMap<Key, Held<C, O>>,
    /// Keys parked since the last judgement.
    unjudged: Vec<Key>,
    /// The pinned breakers in the order they give way: least trouble first, then oldest.
    order: BTreeMap<(Trouble, u64), Key>,
    next_seq: u64,
}

/// The breakers held aside, at most `max_pinned` of them once judged.
pub(super) struct Aside<Key, C, O> {
    table: Mutex<Table<Key, C, O>>,
    max_pinned: usize,
    pub(super) judge: Judge<C, O>,
    pub(super) counters: Counters,
}

impl<Key, C, O> Aside<Key, C, O> {
    pub(super) fn new(max_pinned: usize, judge: Judge<C, O>) -> Self {
        Aside {
            table: Mutex::new(Table {
                held: HashMap::new(),
                unjudged: Vec::new(),
                order: BTreeMap::new(),
                next_seq: 0,
            }),
            max_pinned,
            judge,
            counters: Counters::default(),
        }
    }

    pub(super) fn max_pinned(&self) -> usize {
        self.max_pinned
    }

    /// A panic elsewhere while the table was locked leaves it consistent (every change is
    /// made whole before anything that can panic): carry on with it.
    fn lock(&self) -> MutexGuard<'_, Table<Key, C, O>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Breakers held, judged or not.
    pub(super) fn len(&self) -> usize {
        self.lock().held.len()
    }

    /// Breakers kept after judgement.
    pub(super) fn pinned(&self) -> usize {
        self.lock().order.len()
    }
}

impl<Key, C, O> Aside<Key, C, O>
where
    Key: Hash + Eq + Clone,
{
    /// Holds what the cache evicted, to be judged by the next [`settle`](Self::settle).
    /// Called by the cache's eviction hook, under the cache's shard lock: looks at nothing.
    pub(super) fn park(&self, key: Key, breaker: Handle<C, O>) {
        let mut table = self.lock();
        let table = &mut *table;
        match table.held.entry(key) {
            Entry::Vacant(vacant) => {
                table.unjudged.push(vacant.key().clone());
                vacant.insert(Held { breaker, pin: None });
            }
            Entry::Occupied(mut occupied) => {
                if Arc::ptr_eq(&occupied.get().breaker, &breaker) {
                    return;
                }
                // A key's breaker leaves this table before it goes back into the cache, so
                // the cache never evicts another breaker for a key held here. Were it to, the
                // one the cache held is the one calls used last: it takes the place.
                debug_assert!(false, "two breakers for one key");
                let old = occupied.insert(Held { breaker, pin: None });
                if let Some(pin) = old.pin {
                    table.order.remove(&(pin.trouble, pin.seq));
                }
                table.unjudged.push(occupied.key().clone());
            }
        }
    }

    /// The breaker held for `key`, handed back (no longer held here).
    pub(super) fn take<Q>(&self, key: &Q) -> Option<Handle<C, O>>
    where
        Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut table = self.lock();
        let held = table.held.remove(key)?;
        if let Some(pin) = held.pin {
            table.order.remove(&(pin.trouble, pin.seq));
            self.counters.returned.fetch_add(1, Ordering::Relaxed);
        }
        Some(held.breaker)
    }

    /// The breaker held for `key`, left where it is.
    pub(super) fn peek<Q>(&self, key: &Q) -> Option<Handle<C, O>>
    where
        Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().held.get(key).map(|held| held.breaker.clone())
    }

    /// Every breaker held, with the trouble it was kept for (`None`: not judged yet).
    pub(super) fn members(&self) -> Vec<(Key, Handle<C, O>, Option<Trouble>)> {
        self.lock()
            .held
            .iter()
            .map(|(key, held)| {
                let trouble = held.pin.map(|pin| pin.trouble);
                (key.clone(), held.breaker.clone(), trouble)
            })
            .collect()
    }

    /// Judges the breakers parked since the last call: those in trouble are kept (within the
    /// pinned share), the others let go.
    pub(super) fn settle(&self) {
        let parked: Vec<(Key, Handle<C, O>)> = {
            let mut table = self.lock();
            if table.unjudged.is_empty() {
                return;
            }
            let table = &mut *table;
            mem::take(&mut table.unjudged)
                .into_iter()
                .filter_map(|key| {
                    let held = table.held.get(&key).filter(|held| held.pin.is_none())?;
                    let breaker = held.breaker.clone();
                    Some((key, breaker))
                })
                .collect()
        };
        let judged: Vec<_> = parked
            .into_iter()
            .map(|(key, breaker)| {
                let verdict = (self.judge)(&breaker, 2);
                (key, breaker, verdict)
            })
            .collect();
        let mut let_go = Vec::new();
        {
            let mut table = self.lock();
            for (key, breaker, verdict) in judged {
                let unchanged = table
                    .held
                    .get(&key)
                    .is_some_and(|held| held.pin.is_none() && Arc::ptr_eq(&held.breaker, &breaker));
                if unchanged {
                    self.admit(&mut table, key, verdict, &mut let_go);
                }
            }
        }
        // Dropped here, outside the lock: a breaker's observer goes with it.
        drop(let_go);
    }

    /// Keeps `key`'s breaker if it is in trouble and there is room, or room can be made by
    /// letting go of one in less trouble (or as much, and parked earlier).
    fn admit(
        &self,
        table: &mut Table<Key, C, O>,
        key: Key,
        verdict: Verdict,
        let_go: &mut Vec<Handle<C, O>>,
    ) {
        let Some(trouble) = verdict.trouble else {
            let_go.extend(table.held.remove(&key).map(|held| held.breaker));
            return;
        };
        if table.order.len() >= self.max_pinned {
            match table.order.first_key_value().map(|(&(least, _), _)| least) {
                Some(least) if least <= trouble => {
                    // The breaker held longest among those in the least trouble gives way.
                    if let Some((_, victim)) = table.order.pop_first() {
                        let_go.extend(table.held.remove(&victim).map(|held| held.breaker));
                    }
                    if least >= Trouble::Failing {
                        self.counters.pins_lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {
                    // Everything held is in deeper trouble (or nothing may be held).
                    let_go.extend(table.held.remove(&key).map(|held| held.breaker));
                    if trouble >= Trouble::Failing {
                        self.counters.pins_lost.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
            }
        }
        let seq = table.next_seq;
        table.next_seq += 1;
        if let Some(held) = table.held.get_mut(&key) {
            held.pin = Some(Pin {
                trouble,
                seq,
                activity: verdict.activity,
                since: verdict.now,
            });
            table.order.insert((trouble, seq), key);
        }
    }

    /// Looks at every pinned breaker again: lets go of those that recovered (or whose call
    /// ended well), of those failing but idle for `idle_ttl` (nanoseconds, their own clock),
    /// and files the others under their trouble of now.
    pub(super) fn review(&self, idle_ttl: Option<u64>) {
        let pinned: Vec<(Key, Handle<C, O>, Pin)> = self
            .lock()
            .held
            .iter()
            .filter_map(|(key, held)| Some((key.clone(), held.breaker.clone(), held.pin?)))
            .collect();
        let judged: Vec<_> = pinned
            .into_iter()
            .map(|(key, breaker, pin)| {
                let verdict = (self.judge)(&breaker, 2);
                (key, breaker, pin, verdict)
            })
            .collect();
        let mut let_go = Vec::new();
        {
            let mut table = self.lock();
            let table = &mut *table;
            for (key, breaker, pin, verdict) in judged {
                let Some(held) = table
                    .held
                    .get_mut(&key)
                    .filter(|held| held.pin == Some(pin) && Arc::ptr_eq(&held.breaker, &breaker))
                else {
                    continue;
                };
                let (activity, since) = if verdict.activity == pin.activity {
                    (pin.activity, pin.since)
                } else {
                    (verdict.activity, verdict.now)
                };
                let expired = verdict.trouble == Some(Trouble::Failing)
                    && idle_ttl.is_some_and(|ttl| verdict.now.saturating_sub(since) >= ttl);
                match verdict.trouble {
                    Some(trouble) if !expired => {
                        held.pin = Some(Pin {
                            trouble,
                            activity,
                            since,
                            ..pin
                        });
                        if trouble != pin.trouble {
                            table.order.remove(&(pin.trouble, pin.seq));
                            table.order.insert((trouble, pin.seq), key);
                        }
                    }
                    _ => {
                        if expired {
                            self.counters.expired.fetch_add(1, Ordering::Relaxed);
                        }
                        table.order.remove(&(pin.trouble, pin.seq));
                        let_go.extend(table.held.remove(&key).map(|held| held.breaker));
                    }
                }
            }
        }
        drop(let_go);
    }
}

/// The cache's eviction hook: parks every evicted breaker aside, to be judged.
pub(super) struct Park<Key, C, O>(pub(super) Arc<Aside<Key, C, O>>);

impl<Key, C, O> Clone for Park<Key, C, O> {
    fn clone(&self) -> Self {
        Park(Arc::clone(&self.0))
    }
}

impl<Key, C, O> quick_cache::Lifecycle<Key, Handle<C, O>> for Park<Key, C, O>
where
    Key: Hash + Eq + Clone,
{
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _: &mut Self::RequestState, key: Key, breaker: Handle<C, O>) {
        self.0.park(key, breaker);
    }
}
