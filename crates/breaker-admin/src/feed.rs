//! [`AdminObserver`]: a breaker's transitions, from the thread that made them into a bounded
//! lock-free queue the admin's event hub drains on its own schedule.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use breaker_core::{Event, Observer, State};
use crossbeam_queue::ArrayQueue;

/// Transitions held between two drains of the hub (every 100 ms at most): a thousand
/// transitions in that time is far beyond any service's breakers; past it the oldest are
/// overwritten and counted, and the next snapshot still shows every state.
const CAPACITY: usize = 1024;

/// One transition as the call path records it: plain data, no name (a hash of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    /// [`name_hash`] of the breaker's own name.
    pub(crate) name_hash: u64,
    pub(crate) from: State,
    pub(crate) to: State,
    /// Wall-clock time of the transition, in milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
}

struct Feed {
    queue: ArrayQueue<Transition>,
    overwritten: AtomicU64,
}

/// The observer that feeds the admin's event stream with a breaker's state transitions, at
/// the moment they happen (without it, the stream still shows every state, from the
/// periodic snapshots, but a transition only when the next snapshot finds it).
///
/// Give one to every breaker the admin should report exactly; clones share one queue. On a
/// transition it stores a few words (a hash of the breaker's name, the two states, the
/// time) in a bounded lock-free queue, with no lock and no allocation; every other event
/// (calls, rejections) costs one comparison. The admin's hub drains the queue every 100 ms
/// (or every snapshot interval, if shorter) and names the breaker by its registry entry:
/// register each breaker under the name it was built with
/// ([`Builder::name`](breaker_core::Builder::name)), or give breakers unique names, so that
/// the hub can tell them apart.
///
/// ```
/// use breaker_admin::AdminObserver;
/// use breaker_core::{CircuitBreaker, TracingObserver};
///
/// let transitions = AdminObserver::new(); // give it to Admin::builder(..).observer(..)
/// let payments = CircuitBreaker::builder()
///     .name("payments")
///     // Next to other observers: a pair calls both.
///     .observer((TracingObserver::new(), transitions.clone()))
///     .build()?;
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct AdminObserver {
    feed: Arc<Feed>,
}

impl AdminObserver {
    /// A new queue of transitions, and the observer that fills it.
    pub fn new() -> Self {
        AdminObserver {
            feed: Arc::new(Feed {
                queue: ArrayQueue::new(CAPACITY),
                overwritten: AtomicU64::new(0),
            }),
        }
    }

    /// Moves every queued transition, oldest first, to `into`.
    pub(crate) fn drain(&self, into: &mut Vec<Transition>) {
        while let Some(t) = self.feed.queue.pop() {
            into.push(t);
        }
    }

    /// Transitions overwritten before they were drained, since the queue was made.
    pub(crate) fn overwritten(&self) -> u64 {
        self.feed.overwritten.load(Ordering::Relaxed)
    }

    /// Out of line: the inlined part of the observer is one comparison per event.
    #[inline(never)]
    fn record(&self, breaker: &str, from: State, to: State) {
        let transition = Transition {
            name_hash: name_hash(breaker),
            from,
            to,
            at_ms: unix_ms(SystemTime::now()),
        };
        if self.feed.queue.force_push(transition).is_some() {
            self.feed.overwritten.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Default for AdminObserver {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for AdminObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminObserver")
            .field("queued", &self.feed.queue.len())
            .field("overwritten", &self.overwritten())
            .finish()
    }
}

impl Observer for AdminObserver {
    #[inline]
    fn on_breaker_event(&self, breaker: &str, event: &Event) {
        if let Event::StateTransition { from, to } = *event {
            self.record(breaker, from, to);
        }
    }
}

/// FNV-1a over the name's bytes: cheap, allocation-free, and stable within the process.
pub(crate) fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Milliseconds since the Unix epoch (0 for a clock set before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use breaker_core::{CircuitBreaker, ManualClock};

    #[test]
    fn records_transitions_only_and_overwrites_the_oldest_when_full() {
        let observer = AdminObserver::new();
        let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
            .name("payments")
            .observer(observer.clone())
            .build()
            .unwrap();
        breaker.call(|| Ok::<_, ()>(())).unwrap();
        breaker.trip();
        breaker.reset();
        let mut drained = Vec::new();
        observer.drain(&mut drained);
        let states: Vec<_> = drained.iter().map(|t| (t.from, t.to)).collect();
        assert_eq!(
            states,
            [(State::Closed, State::Open), (State::Open, State::Closed)]
        );
        assert!(drained.iter().all(|t| t.name_hash == name_hash("payments")));

        for _ in 0..CAPACITY / 2 + 3 {
            breaker.trip();
            breaker.reset();
        }
        drained.clear();
        observer.drain(&mut drained);
        assert_eq!(drained.len(), CAPACITY);
        assert_eq!(observer.overwritten(), 6);
        assert_eq!(
            drained.last().map(|t| t.to),
            Some(State::Closed),
            "newest kept"
        );
    }
}
