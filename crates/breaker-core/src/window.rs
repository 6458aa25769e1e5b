//! Lock-free sliding windows for the closed state.
//!
//! # Invariant
//!
//! A window counts exactly the calls recorded in the current closed period (and, for a time
//! window, inside the window's span), once concurrent records have finished: nothing from an
//! earlier period, and nothing from a permit of an earlier generation that arrives late.
//!
//! # Protocol
//!
//! Everything a window stores is tagged with the breaker generation that wrote it, so a
//! window is cleared lazily when the generation changes (no reset step to race with). Tags
//! are compared only for equality, never ordered: when a record finds a tag that is not its
//! own generation, it asks the live control word whether its own generation is still the
//! current one (`is_current`). If it is, the stored value is stale and is replaced; if not,
//! the record is late and is refused. So a window cannot be fooled by how many transitions
//! happened in between (a long outage cycles open and half-open for hours without a single
//! record): only a tag equal to the current generation modulo 2^32 is taken as current, and
//! the generation would have to wrap around exactly 2^32 transitions for that to happen by
//! accident. Every update is one compare-and-swap on one word.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::snapshot::Counts;
use crate::sync::{AtomicU64, AtomicUsize, Ordering, spin_hint};

pub(crate) enum Window {
    None,
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn new(policy: crate::PolicyKind) -> Self {
        match policy {
            crate::PolicyKind::ConsecutiveFailures { .. } => Window::None,
            crate::PolicyKind::CountWindow { size } => Window::Count(CountWindow::new(size)),
            crate::PolicyKind::TimeWindow { duration, buckets } => Window::Time(TimeWindow::new(
                crate::config::bucket_width(duration, buckets),
                buckets,
            )),
            crate::PolicyKind::Cumulative => Window::Time(TimeWindow::new(u64::MAX, 1)),
        }
    }
}

#[inline]
fn generation_of(word: u64) -> u32 {
    (word >> 32) as u32
}

// ---------------------------------------------------------------------------------------
// Count window: the last `size` calls.
//
// slot word:  [generation:32 | 0..:29 | slow:1 | failure:1 | valid:1]
// aggregate:  [generation:32 | calls:16 | failures:16]
// slow:       [generation:32 | 0:16 | slow calls:16]
// Each 16-bit field wraps on its own, so an eviction that overtakes the matching insertion
// nets out exactly.
// ---------------------------------------------------------------------------------------

const VALID: u64 = 1;
const FAILED: u64 = 2;
const SLOW: u64 = 4;

pub(crate) struct CountWindow {
    size: usize,
    /// `fastmod` constant for `size`.
    magic: u64,
    cursor: AtomicUsize,
    slots: Box<[AtomicU64]>,
    aggregate: AtomicU64,
    slow: AtomicU64,
}

/// `n % d` for 32-bit `n` and `d >= 1`, with `magic = (u64::MAX / d).wrapping_add(1)`
/// (D. Lemire, "Faster Remainder by Direct Computation", 2019).
#[inline]
fn fastmod(n: u32, magic: u64, d: u32) -> u32 {
    let low = magic.wrapping_mul(u64::from(n));
    ((u128::from(low) * u128::from(d)) >> 64) as u32
}

#[inline]
fn agg_pack(generation: u32, calls: u16, failures: u16) -> u64 {
    (u64::from(generation) << 32) | (u64::from(calls) << 16) | u64::from(failures)
}

#[inline]
fn agg_fields(a: u64) -> (u16, u16) {
    ((a >> 16) as u16, a as u16)
}

/// Adds `delta` (wrapping) to a `[generation:32 | value:32]` word of generation
/// `generation`: a word of another generation is stale and restarts from zero if
/// `generation` is current, else the record is late (`None`). Returns the new word.
#[inline]
fn add_in_generation(
    word: &AtomicU64,
    generation: u32,
    is_current: &impl Fn(u32) -> bool,
    add: impl Fn(u32) -> u32,
) -> Option<u64> {
    let mut cur = word.load(Ordering::Acquire);
    let mut checked = false;
    loop {
        let next = if generation_of(cur) == generation {
            (cur & !0xFFFF_FFFF) | u64::from(add(cur as u32))
        } else if checked || is_current(generation) {
            checked = true;
            (u64::from(generation) << 32) | u64::from(add(0))
        } else {
            return None;
        };
        match word.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(next),
            Err(actual) => {
                cur = actual;
                spin_hint();
            }
        }
    }
}

impl CountWindow {
    fn new(size: u32) -> Self {
        let slots: Vec<AtomicU64> = (0..size).map(|_| AtomicU64::new(0)).collect();
        CountWindow {
            size: size as usize,
            magic: (u64::MAX / u64::from(size)).wrapping_add(1),
            cursor: AtomicUsize::new(0),
            slots: slots.into_boxed_slice(),
            aggregate: AtomicU64::new(0),
            slow: AtomicU64::new(0),
        }
    }

    /// Records one call of generation `generation`. `None` when the result is late (its
    /// generation is no longer the current one); `Some(None)` when recorded but the
    /// aggregate is in flux; `Some(Some(counts))` otherwise.
    pub(crate) fn record(
        &self,
        generation: u32,
        failed: bool,
        slow: bool,
        is_current: impl Fn(u32) -> bool,
    ) -> Option<Option<Counts>> {
        // The cursor counts calls (wrapping at 2^32: the ring then jumps once, which the slot
        // protocol tolerates like any other index); the slot is the count modulo the size,
        // computed without a division (Lemire's fastmod).
        let n = self.cursor.fetch_add(1, Ordering::Relaxed) as u32;
        let index = fastmod(n, self.magic, self.size as u32) as usize;
        let slot = &self.slots[index.min(self.size - 1)];
        let new = (u64::from(generation) << 32)
            | VALID
            | if failed { FAILED } else { 0 }
            | if slow { SLOW } else { 0 };
        let mut old = slot.load(Ordering::Acquire);
        let mut checked = false;
        loop {
            if old & VALID != 0 && generation_of(old) != generation && !checked {
                if !is_current(generation) {
                    return None;
                }
                checked = true;
            }
            match slot.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(actual) => {
                    old = actual;
                    spin_hint();
                }
            }
        }
        let evicted = old & VALID != 0 && generation_of(old) == generation;
        let (d_calls, d_fail, d_slow) = (
            1u16.wrapping_sub(u16::from(evicted)),
            u16::from(failed).wrapping_sub(u16::from(evicted && old & FAILED != 0)),
            u16::from(slow).wrapping_sub(u16::from(evicted && old & SLOW != 0)),
        );
        let aggregate = add_in_generation(&self.aggregate, generation, &is_current, |v| {
            let (c, f) = agg_fields(u64::from(v));
            agg_pack(0, c.wrapping_add(d_calls), f.wrapping_add(d_fail)) as u32
        })?;
        if d_slow != 0 {
            add_in_generation(&self.slow, generation, &is_current, |v| {
                u32::from((v as u16).wrapping_add(d_slow))
            })?;
        }
        Some(self.settled(aggregate, self.slow_of(generation)))
    }

    #[inline]
    fn slow_of(&self, generation: u32) -> u16 {
        let s = self.slow.load(Ordering::Acquire);
        if generation_of(s) == generation {
            s as u16
        } else {
            0
        }
    }

    /// The counts to evaluate the rules on, or `None` while the aggregate is in flux: when an
    /// eviction has overtaken the insertion it undoes, a field is briefly "negative" (wrapped
    /// past the window size). Skipping such a reading never trips on garbage; the next
    /// record evaluates again. Outside that case, a reading differs from a settled one only
    /// by the records still in flight.
    fn settled(&self, aggregate: u64, slow: u16) -> Option<Counts> {
        let (c, f) = agg_fields(aggregate);
        let size = self.size as u16;
        (c <= size && f <= c && slow <= c).then(|| self.counts_of(aggregate, slow))
    }

    /// Counts of an aggregate, clamped into range (see [`settled`](Self::settled)).
    fn counts_of(&self, aggregate: u64, slow: u16) -> Counts {
        let (c, f) = agg_fields(aggregate);
        let calls = u64::from(c).min(self.size as u64);
        Counts {
            calls,
            failures: u64::from(f).min(calls),
            slow_calls: u64::from(slow).min(calls),
            consecutive_failures: 0,
        }
    }

    pub(crate) fn counts(&self, generation: u32) -> Counts {
        let a = self.aggregate.load(Ordering::Acquire);
        if generation_of(a) == generation {
            self.counts_of(a, self.slow_of(generation))
        } else {
            Counts::default()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Time window: `buckets` buckets of `width` ns each; tick = time since the closed period
// began / width, bucket = tick % buckets. A bucket holds one tick's counts:
//
// stamp:     [generation:32 | tick:32]   which (generation, tick) the bucket is at
// calls:     [tag:32 | calls:32]         tag = a 32-bit hash of the stamp the count is for
// failures:  [tag:32 | failures:32]
// slow:      [tag:32 | slow calls:32]
//
// Within a generation the stamp only moves to later ticks (wrapping 32-bit comparison:
// concurrent records are a few ticks apart). A count word whose tag is not the stamp's is
// stale and reads as zero; the first record of the new stamp restarts it. A stale count
// could only be taken for a current one if two different stamps of one bucket hashed to the
// same 32-bit tag; for consecutive stamps in one generation that takes a gap of exactly 2^32
// ticks. Counts saturate at 2^32 - 1 per bucket.
// ---------------------------------------------------------------------------------------

pub(crate) struct Bucket {
    stamp: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

pub(crate) struct TimeWindow {
    width: u64,
    buckets: Box<[Bucket]>,
    /// [`verdict_key`] of the last evaluation that found every rate below its threshold in
    /// that tick; 0: none.
    below: AtomicU64,
}

#[inline]
fn verdict_key(generation: u32, tick: u64) -> u64 {
    ((u64::from(generation) << 32) | (tick & 0xFFFF_FFFF)).wrapping_add(1)
}

#[inline]
fn stamp_of(generation: u32, tick: u64) -> u64 {
    (u64::from(generation) << 32) | (tick & 0xFFFF_FFFF)
}

/// The tag of the counts that belong to `stamp`.
#[inline]
fn tag_of(stamp: u64) -> u32 {
    (stamp as u32).wrapping_add(generation_of(stamp).wrapping_mul(0x9E37_79B9))
}

/// Adds `inc` to a `[tag:32 | count:32]` word: same tag, add; another tag, start from zero,
/// provided the bucket's stamp is still `mine` (otherwise the bucket moved on: `false`).
#[inline]
fn add_tagged(word: &AtomicU64, stamp: &AtomicU64, mine: u64, inc: u32) -> bool {
    let tag = u64::from(tag_of(mine)) << 32;
    let mut cur = word.load(Ordering::Acquire);
    loop {
        let next = if cur & !0xFFFF_FFFF == tag {
            tag | u64::from((cur as u32).saturating_add(inc))
        } else if stamp.load(Ordering::Acquire) == mine {
            tag | u64::from(inc)
        } else {
            return false;
        };
        match word.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(actual) => {
                cur = actual;
                spin_hint();
            }
        }
    }
}

/// The count a `[tag:32 | count:32]` word holds for `stamp` (zero if it is stale).
#[inline]
fn count_for(word: &AtomicU64, stamp: u64) -> u64 {
    let w = word.load(Ordering::Acquire);
    if generation_of(w) == tag_of(stamp) {
        w & 0xFFFF_FFFF
    } else {
        0
    }
}

impl TimeWindow {
    fn new(width: u64, buckets: u32) -> Self {
        let buckets: Vec<Bucket> = (0..buckets)
            .map(|_| Bucket {
                stamp: AtomicU64::new(0),
                calls: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                slow: AtomicU64::new(0),
            })
            .collect();
        TimeWindow {
            width,
            buckets: buckets.into_boxed_slice(),
            below: AtomicU64::new(0),
        }
    }

    /// Whether the last evaluation in this tick found every rate below its threshold.
    #[inline]
    pub(crate) fn known_below(&self, generation: u32, tick: u64) -> bool {
        self.below.load(Ordering::Relaxed) == verdict_key(generation, tick)
    }

    /// Records the verdict of an evaluation in this tick.
    #[inline]
    pub(crate) fn remember_below(&self, generation: u32, tick: u64, below: bool) {
        let key = if below {
            verdict_key(generation, tick)
        } else {
            0
        };
        if self.below.load(Ordering::Relaxed) != key {
            self.below.store(key, Ordering::Relaxed);
        }
    }

    /// Forgets the last verdict (the thresholds changed).
    pub(crate) fn forget_verdict(&self) {
        self.below.store(0, Ordering::Relaxed);
    }

    /// One bucket of unbounded width: every call since the period began.
    #[inline]
    pub(crate) fn is_cumulative(&self) -> bool {
        self.width == u64::MAX
    }

    #[inline]
    pub(crate) fn tick(&self, since_period_start: u64) -> u64 {
        since_period_start / self.width
    }

    /// Records one call of generation `generation` at `tick`. `false` if the result is late
    /// (its generation is no longer current) or so delayed that the bucket has moved on to
    /// a later tick.
    pub(crate) fn record(
        &self,
        generation: u32,
        tick: u64,
        failed: bool,
        slow: bool,
        is_current: impl Fn(u32) -> bool,
    ) -> bool {
        let bucket = &self.buckets[(tick % self.buckets.len() as u64) as usize];
        let mine = stamp_of(generation, tick);
        let mut s = bucket.stamp.load(Ordering::Acquire);
        let mut checked = false;
        while s != mine {
            if generation_of(s) == generation {
                let ahead = (s as u32).wrapping_sub(mine as u32) as i32 > 0;
                if ahead {
                    return false;
                }
            } else if !checked {
                if !is_current(generation) {
                    return false;
                }
                checked = true;
            }
            match bucket
                .stamp
                .compare_exchange_weak(s, mine, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => {
                    s = actual;
                    spin_hint();
                }
            }
        }
        if !add_tagged(&bucket.calls, &bucket.stamp, mine, 1) {
            return false;
        }
        // The failure and slow counts cannot fail for a reason the call count did not: the
        // stamp was still ours. If it moved on meanwhile, these counts go with the old tick.
        if failed {
            add_tagged(&bucket.failures, &bucket.stamp, mine, 1);
        }
        if slow {
            add_tagged(&bucket.slow, &bucket.stamp, mine, 1);
        }
        true
    }

    /// Sums the buckets of generation `generation` inside the window ending at `tick`.
    pub(crate) fn counts(&self, generation: u32, tick: u64) -> Counts {
        let n = self.buckets.len() as u32;
        let now = tick as u32;
        let mut counts = Counts::default();
        for bucket in self.buckets.iter() {
            let s = bucket.stamp.load(Ordering::Acquire);
            // A bucket of another generation, of a later tick, or of a tick that has left
            // the window does not count.
            if generation_of(s) != generation || now.wrapping_sub(s as u32) >= n {
                continue;
            }
            counts.calls += count_for(&bucket.calls, s);
            counts.failures += count_for(&bucket.failures, s);
            counts.slow_calls += count_for(&bucket.slow, s);
        }
        counts.failures = counts.failures.min(counts.calls);
        counts.slow_calls = counts.slow_calls.min(counts.calls);
        counts
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::fastmod;

    #[test]
    fn fastmod_is_the_remainder() {
        for d in [1u32, 2, 3, 7, 10, 100, 1000, 32_767] {
            let magic = (u64::MAX / u64::from(d)).wrapping_add(1);
            for n in (0..10_000u32).chain([u32::MAX - 5, u32::MAX - 1, u32::MAX]) {
                assert_eq!(fastmod(n, magic, d), n % d, "{n} % {d}");
            }
        }
    }
}
