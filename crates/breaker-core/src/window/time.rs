//! The time window: buckets of one tick each over the last `duration` of the closed
//! period (one bucket: tumbling; unbounded width: cumulative).
//!
//! Invariant (besides the window's, see the parent module): a bucket's counts are only ever
//! read or added to under the stamp they were counted for; a bucket that moves on to a new
//! tick or generation starts from zero.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::fastdiv::FastDiv;
use super::generation_of;
use crate::snapshot::Counts;
use crate::sync::{AtomicU64, Ordering, spin_hint};

// `buckets` buckets of `width` ns each; tick = time since the closed period began / width,
// bucket = tick % buckets. A bucket holds one tick's counts:
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

struct Bucket {
    stamp: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

pub(crate) struct TimeWindow {
    width: u64,
    /// Division by `width`.
    per_width: FastDiv,
    /// Remainder by the number of buckets.
    per_bucket: FastDiv,
    buckets: Box<[Bucket]>,
    /// The verdict: [`verdict_key`] of the last evaluation that found every rate below its
    /// threshold in that tick, or a value without the key bit (a "clear") when the last word
    /// on the matter is that something may have pushed the rates up.
    below: AtomicU64,
    /// Numbers the clears: each is a value the verdict word never held before.
    clears: AtomicU64,
}

/// Marks a verdict key (clears never have this bit).
const KEY: u64 = 1 << 63;

/// `[1 | generation:32 | tick:31]`.
#[inline]
fn verdict_key(generation: u32, tick: u64) -> u64 {
    KEY | (u64::from(generation) << 31) | (tick & 0x7FFF_FFFF)
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
    pub(super) fn new(width: u64, buckets: u32) -> Self {
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
            per_width: FastDiv::new(width),
            per_bucket: FastDiv::new(buckets.len() as u64),
            buckets: buckets.into_boxed_slice(),
            below: AtomicU64::new(0),
            clears: AtomicU64::new(1),
        }
    }

    // The verdict protocol. A success only lowers the rates, so a success recorded in a tick
    // whose counts were already found below every threshold need not sum the buckets again
    // (`is_below`). The verdict must then never claim "below" for counts that miss a
    // failure or slow call counted before it:
    //
    // - whoever counts a failure or slow call (or changes the thresholds) clears the verdict
    //   afterwards, with a swap to a value the word never held before (`forget_verdict`);
    // - an evaluation reads the verdict word first (`verdict`; another tick's key is
    //   swapped for a fresh clear, `unkeyed`), then sums the buckets, and installs its
    //   "below" with a compare-and-swap from that clear (`remember_below`), never from a
    //   key: keys repeat (a laggard of an older tick may put its key back), clears do not.
    //
    // An evaluation that read the word before a clear fails its compare-and-swap: it may
    // have missed that failure. One that read a clear (or anything after it) synchronises
    // with the clearing swap, and through the chain of swaps with every earlier clear, so its
    // sums include each of those failures. A key therefore only ever stands for counts that
    // include every failure whose clear came before it.

    /// The verdict word, read before an evaluation sums the buckets.
    #[inline]
    pub(crate) fn verdict(&self) -> u64 {
        self.below.load(Ordering::Acquire)
    }

    /// Whether `verdict` says the counts of this tick were found below every threshold.
    #[inline]
    pub(crate) fn is_below(verdict: u64, generation: u32, tick: u64) -> bool {
        verdict == verdict_key(generation, tick)
    }

    /// Installs "below every threshold" for this tick, unless the verdict word changed since
    /// it read `seen` (a failure counted meanwhile, which this evaluation may have missed).
    #[inline]
    pub(crate) fn remember_below(&self, generation: u32, tick: u64, seen: u64) {
        if seen & KEY == 0 {
            let key = verdict_key(generation, tick);
            let _ = self
                .below
                .compare_exchange(seen, key, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// The word an evaluation that read `seen` installs its verdict from: `seen` itself if
    /// it is a clear; another tick's key is first swapped for a fresh clear. Keys are not
    /// unique (a laggard of an older tick can put that tick's key back), clears are: so a
    /// verdict is only ever installed from a clear, and the compare-and-swap fails if
    /// anything at all happened to the word meanwhile.
    #[inline]
    pub(crate) fn unkeyed(&self, seen: u64) -> u64 {
        if seen & KEY == 0 {
            return seen;
        }
        let clear = self.clears.fetch_add(1, Ordering::Relaxed) & !KEY;
        match self
            .below
            .compare_exchange(seen, clear, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => clear,
            Err(actual) => actual,
        }
    }

    /// Forgets the verdict: a failure or slow call was counted (after it was counted), or
    /// the thresholds changed. Returns the verdict word it left, for this caller's own
    /// evaluation.
    #[inline]
    pub(crate) fn forget_verdict(&self) -> u64 {
        let clear = self.clears.fetch_add(1, Ordering::Relaxed) & !KEY;
        self.below.swap(clear, Ordering::AcqRel);
        clear
    }

    /// Heap bytes of the buckets.
    pub(crate) fn heap_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.buckets)
    }

    /// A bucket's width, in nanoseconds.
    #[inline]
    pub(crate) fn width(&self) -> u64 {
        self.width
    }

    /// One bucket of unbounded width: every call since the period began.
    #[inline]
    pub(crate) fn is_cumulative(&self) -> bool {
        self.width == u64::MAX
    }

    #[inline]
    pub(crate) fn tick(&self, since_period_start: u64) -> u64 {
        self.per_width.div(since_period_start)
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
        let bucket =
            &self.buckets[(self.per_bucket.rem(tick) as usize).min(self.buckets.len() - 1)];
        let mine = stamp_of(generation, tick);
        let mut s = bucket.stamp.load(Ordering::Acquire);
        while s != mine {
            if generation_of(s) == generation {
                let ahead = (s as u32).wrapping_sub(mine as u32) as i32 > 0;
                if ahead {
                    return false;
                }
            } else if !is_current(generation) {
                // Asked again after every failed compare-and-swap.
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
    use super::TimeWindow;

    #[test]
    fn idle_gaps_leave_no_stale_counts() {
        let window = TimeWindow::new(1_000, 4);
        assert!(window.record(1, 0, true, true, |_| true));
        for gap in [4u64, 256 * 4, 65_536 * 4, (1 << 32) * 4 + 4] {
            let counts = window.counts(1, gap);
            assert_eq!(counts.calls, 0, "after {gap} ticks");
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::TimeWindow;
    use loom::sync::Arc;
    use loom::thread;

    /// An evaluation of "no failures" (a success's) that installs its verdict, as the
    /// breaker does.
    fn evaluate(window: &TimeWindow) {
        let seen = window.verdict();
        if window.counts(1, 0).failures == 0 {
            window.remember_below(1, 0, seen);
        }
    }

    /// Counts a failure and clears the verdict, as the breaker does.
    fn fail(window: &TimeWindow) {
        assert!(window.record(1, 0, true, false, |_| true));
        window.forget_verdict();
    }

    /// A success's evaluation races a failure: afterwards the verdict never says "below"
    /// while a failure is counted.
    #[test]
    fn a_verdict_never_outlives_a_failure_counted_before_it_was_installed() {
        loom::model(|| {
            let window = Arc::new(TimeWindow::new(1_000, 2));
            assert!(window.record(1, 0, false, false, |_| true));
            let w = window.clone();
            let failure = thread::spawn(move || fail(&w));
            evaluate(&window);
            failure.join().unwrap();
            assert!(!TimeWindow::is_below(window.verdict(), 1, 0));
        });
    }

    /// Two failures clear the verdict while a success evaluates: the evaluation cannot
    /// install "below" having seen the later clear but not the earlier failure.
    #[test]
    fn the_clears_of_racing_failures_all_reach_an_evaluation() {
        loom::model(|| {
            let window = Arc::new(TimeWindow::new(1_000, 2));
            let failures: Vec<_> = (0..2)
                .map(|_| {
                    let w = window.clone();
                    thread::spawn(move || fail(&w))
                })
                .collect();
            evaluate(&window);
            for f in failures {
                f.join().unwrap();
            }
            assert!(!TimeWindow::is_below(window.verdict(), 1, 0));
        });
    }

    /// A record at tick 0 races one at tick 2 for the same bucket of a two-bucket window:
    /// the bucket ends at tick 2 with exactly that record, and the tick-0 one is either
    /// refused or was counted and then left the window with its bucket.
    #[test]
    fn a_bucket_moving_on_takes_none_of_the_old_ticks_counts() {
        loom::model(|| {
            let window = Arc::new(TimeWindow::new(1_000, 2));
            let w = window.clone();
            let old = thread::spawn(move || w.record(1, 0, true, false, |_| true));
            assert!(window.record(1, 2, false, false, |_| true));
            old.join().unwrap();
            let counts = window.counts(1, 2);
            assert_eq!((counts.calls, counts.failures), (1, 0));
        });
    }
}
