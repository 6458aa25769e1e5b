//! Lock-free sliding windows for the closed state.
//!
//! Both windows tag what they store with the breaker generation that wrote it, so a window
//! is cleared lazily when the generation changes (no reset step to race with) and a result
//! that arrives late, from an older generation, is refused instead of polluting the new
//! window. Every update is a single compare-and-swap on one word, so counts are exact once
//! concurrent calls have finished.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::snapshot::Counts;
use crate::sync::{AtomicU64, AtomicUsize, Ordering, spin_hint};

/// `a` is newer than `b` in wrapping 16-bit generation arithmetic.
#[inline]
fn newer16(a: u16, b: u16) -> bool {
    (a.wrapping_sub(b) as i16) > 0
}

/// `a` is newer than `b` in wrapping 32-bit generation arithmetic.
#[inline]
fn newer32(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

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
                crate::clock::nanos(duration) / u64::from(buckets),
                buckets,
            )),
            crate::PolicyKind::Cumulative => Window::Time(TimeWindow::new(u64::MAX, 1)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Count window: the last `size` calls.
//
// slot word:  [epoch:32 | 0..:29 | slow:1 | failure:1 | valid:1]
// aggregate:  [epoch:16 | calls:16 | failures:16 | slow:16], each field wrapping on its own,
//             so an eviction that overtakes the matching insertion nets out exactly.
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
}

/// `n % d` for 32-bit `n` and `d >= 1`, with `magic = (u64::MAX / d).wrapping_add(1)`
/// (D. Lemire, "Faster Remainder by Direct Computation", 2019).
#[inline]
fn fastmod(n: u32, magic: u64, d: u32) -> u32 {
    let low = magic.wrapping_mul(u64::from(n));
    ((u128::from(low) * u128::from(d)) >> 64) as u32
}

#[inline]
fn agg_pack(tag: u16, calls: u16, failures: u16, slow: u16) -> u64 {
    (u64::from(tag) << 48)
        | (u64::from(calls) << 32)
        | (u64::from(failures) << 16)
        | u64::from(slow)
}

#[inline]
fn agg_fields(a: u64) -> (u16, u16, u16, u16) {
    (
        (a >> 48) as u16,
        (a >> 32) as u16,
        (a >> 16) as u16,
        a as u16,
    )
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
        }
    }

    /// Records one call of generation `epoch`. `None` when the window already belongs to a
    /// newer generation (the result is late); `Some(None)` when recorded but the aggregate is
    /// in flux; `Some(Some(counts))` otherwise.
    pub(crate) fn record(&self, epoch: u32, failed: bool, slow: bool) -> Option<Option<Counts>> {
        // The cursor counts calls (wrapping at 2^32: the ring then jumps once, which the slot
        // protocol tolerates like any other index); the slot is the count modulo the size,
        // computed without a division (Lemire's fastmod).
        let n = self.cursor.fetch_add(1, Ordering::Relaxed) as u32;
        let index = fastmod(n, self.magic, self.size as u32) as usize;
        let slot = &self.slots[index.min(self.size - 1)];
        let new = (u64::from(epoch) << 32)
            | VALID
            | if failed { FAILED } else { 0 }
            | if slow { SLOW } else { 0 };
        let mut old = slot.load(Ordering::Acquire);
        loop {
            if old & VALID != 0 && newer32((old >> 32) as u32, epoch) {
                return None;
            }
            match slot.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(actual) => {
                    old = actual;
                    spin_hint();
                }
            }
        }
        let evicted = old & VALID != 0 && (old >> 32) as u32 == epoch;
        let (d_calls, d_fail, d_slow) = (
            1u16.wrapping_sub(u16::from(evicted)),
            u16::from(failed).wrapping_sub(u16::from(evicted && old & FAILED != 0)),
            u16::from(slow).wrapping_sub(u16::from(evicted && old & SLOW != 0)),
        );
        let tag = epoch as u16;
        let mut cur = self.aggregate.load(Ordering::Acquire);
        loop {
            let (t, c, f, s) = agg_fields(cur);
            let next = if t == tag {
                agg_pack(
                    tag,
                    c.wrapping_add(d_calls),
                    f.wrapping_add(d_fail),
                    s.wrapping_add(d_slow),
                )
            } else if newer16(t, tag) {
                return None;
            } else {
                agg_pack(tag, d_calls, d_fail, d_slow)
            };
            match self.aggregate.compare_exchange_weak(
                cur,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(self.settled(next)),
                Err(actual) => {
                    cur = actual;
                    spin_hint();
                }
            }
        }
    }

    /// The counts to evaluate the rules on, or `None` while the aggregate is in flux: when an
    /// eviction has overtaken the insertion it undoes, a field is briefly "negative" (wrapped
    /// past the window size). Skipping such a reading never trips on garbage; the next
    /// record evaluates again. Outside that case, a reading differs from a settled one only
    /// by the records still in flight.
    fn settled(&self, a: u64) -> Option<Counts> {
        let (_, c, f, s) = agg_fields(a);
        let size = self.size as u16;
        (c <= size && f <= c && s <= c).then(|| self.counts_of(a))
    }

    /// Counts of an aggregate, clamped into range (see [`settled`](Self::settled)).
    fn counts_of(&self, a: u64) -> Counts {
        let (_, c, f, s) = agg_fields(a);
        let calls = u64::from(c).min(self.size as u64);
        Counts {
            calls,
            failures: u64::from(f).min(calls),
            slow_calls: u64::from(s).min(calls),
            consecutive_failures: 0,
        }
    }

    pub(crate) fn counts(&self, epoch: u32) -> Counts {
        let a = self.aggregate.load(Ordering::Acquire);
        if agg_fields(a).0 == epoch as u16 {
            self.counts_of(a)
        } else {
            Counts::default()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Time window: `buckets` buckets of `width` ns each; tick = time since the closed period
// began / width. A bucket holds one tick's counts:
//
// stamp:  [epoch:16 | tick + 1:48]            which (generation, tick) the bucket is at
// main:   [tag:16 | calls:24 | failures:24]  tag = (epoch:8, rotation:8), rotation = tick / buckets
// slow:   [tag:16 | slow:48]
//
// The stamp only moves forward; a count word whose tag is not the stamp's is stale and
// reads as zero. Counts saturate at 2^24 - 1 calls per bucket.
// ---------------------------------------------------------------------------------------

const TICK_MASK: u64 = (1 << 48) - 1;
const FIELD24: u64 = (1 << 24) - 1;

pub(crate) struct Bucket {
    stamp: AtomicU64,
    main: AtomicU64,
    slow: AtomicU64,
}

pub(crate) struct TimeWindow {
    width: u64,
    buckets: Box<[Bucket]>,
    /// `[epoch:16 | tick:47 | 1]` of the last evaluation that found every rate below its
    /// threshold in that tick; 0: none.
    below: AtomicU64,
}

#[inline]
fn verdict_key(epoch: u32, tick: u64) -> u64 {
    (u64::from(epoch as u16) << 48) | (tick.min((1 << 47) - 1) << 1) | 1
}

#[inline]
fn stamp_of(epoch: u32, tick: u64) -> u64 {
    (u64::from(epoch as u16) << 48) | (tick.min(TICK_MASK - 1) + 1)
}

/// Stamp `a` is past stamp `b`: a newer generation, or the same generation and a later tick.
#[inline]
fn stamp_newer(a: u64, b: u64) -> bool {
    let (ga, gb) = ((a >> 48) as u16, (b >> 48) as u16);
    if ga != gb {
        newer16(ga, gb)
    } else {
        (a & TICK_MASK) > (b & TICK_MASK)
    }
}

impl TimeWindow {
    fn new(width: u64, buckets: u32) -> Self {
        let buckets: Vec<Bucket> = (0..buckets)
            .map(|_| Bucket {
                stamp: AtomicU64::new(0),
                main: AtomicU64::new(0),
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
    pub(crate) fn known_below(&self, epoch: u32, tick: u64) -> bool {
        self.below.load(Ordering::Relaxed) == verdict_key(epoch, tick)
    }

    /// Records the verdict of an evaluation in this tick.
    #[inline]
    pub(crate) fn remember_below(&self, epoch: u32, tick: u64, below: bool) {
        let key = if below { verdict_key(epoch, tick) } else { 0 };
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

    #[inline]
    fn tag(&self, epoch: u32, tick: u64) -> u64 {
        let rotation = (tick.min(TICK_MASK - 1) / self.buckets.len() as u64) as u8;
        u64::from(u16::from_be_bytes([epoch as u8, rotation]))
    }

    /// Records one call of generation `epoch` at `tick`. `false` if the bucket has moved past
    /// it (a late result, or one so delayed that its tick left the window).
    pub(crate) fn record(&self, epoch: u32, tick: u64, failed: bool, slow: bool) -> bool {
        let bucket = &self.buckets[(tick % self.buckets.len() as u64) as usize];
        let mine = stamp_of(epoch, tick);
        let mut s = bucket.stamp.load(Ordering::Acquire);
        while s != mine {
            if s != 0 && stamp_newer(s, mine) {
                return false;
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
        let tag = self.tag(epoch, tick);
        if !add_tagged(&bucket.main, &bucket.stamp, mine, tag, |v| {
            let calls = (v >> 24 & FIELD24) + 1;
            let fails = (v & FIELD24) + u64::from(failed);
            (calls.min(FIELD24) << 24) | fails.min(FIELD24)
        }) {
            return false;
        }
        if slow {
            // Cannot fail for a reason the main count did not: the stamp was still ours.
            add_tagged(&bucket.slow, &bucket.stamp, mine, tag, |v| {
                (v + 1).min(TICK_MASK)
            });
        }
        true
    }

    /// Sums the buckets of generation `epoch` inside the window ending at `tick`.
    pub(crate) fn counts(&self, epoch: u32, tick: u64) -> Counts {
        let n = self.buckets.len() as u64;
        let mut counts = Counts::default();
        for bucket in self.buckets.iter() {
            let s = bucket.stamp.load(Ordering::Acquire);
            if s == 0 || (s >> 48) as u16 != epoch as u16 {
                continue;
            }
            let t = (s & TICK_MASK) - 1;
            if t > tick || t + n <= tick {
                continue;
            }
            let tag = self.tag(epoch, t);
            let main = bucket.main.load(Ordering::Acquire);
            if main >> 48 == tag {
                counts.calls += main >> 24 & FIELD24;
                counts.failures += main & FIELD24;
            }
            let slow = bucket.slow.load(Ordering::Acquire);
            if slow >> 48 == tag {
                counts.slow_calls += slow & TICK_MASK;
            }
        }
        counts.failures = counts.failures.min(counts.calls);
        counts.slow_calls = counts.slow_calls.min(counts.calls);
        counts
    }
}

/// Adds to a tagged count word: same tag, update the value; another tag, start from zero,
/// provided the bucket's stamp is still `mine` (otherwise the bucket moved on: `false`).
#[inline]
fn add_tagged(
    word: &AtomicU64,
    stamp: &AtomicU64,
    mine: u64,
    tag: u64,
    add: impl Fn(u64) -> u64,
) -> bool {
    let mut cur = word.load(Ordering::Acquire);
    loop {
        let next = if cur >> 48 == tag {
            (tag << 48) | add(cur & TICK_MASK)
        } else if stamp.load(Ordering::Acquire) == mine {
            (tag << 48) | add(0)
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
