//! [`FleetObserver`]: the observer of a shared breaker, which wakes its sync task.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use breaker_core::{Event, Observer};
use tokio::sync::Notify;

/// The observer of a shared breaker: forwards every event to yours, and wakes the sync task
/// when the local breaker changes state, so a local trip reaches Redis at once rather than
/// at the next interval. It also tells the sync task how the breaker decided: a trip after a
/// threshold event is a rule's (a vote toward the fleet's trip quorum), one without is an
/// operator's; a reset is an operator's.
pub struct FleetObserver<O> {
    inner: O,
    wake: Arc<Notify>,
    thresholds: AtomicU64,
    resets: AtomicU64,
}

impl<O> FleetObserver<O> {
    pub(crate) fn new(inner: O) -> (Self, Arc<Notify>) {
        let wake = Arc::new(Notify::new());
        (
            FleetObserver {
                inner,
                wake: wake.clone(),
                thresholds: AtomicU64::new(0),
                resets: AtomicU64::new(0),
            },
            wake,
        )
    }

    /// The observer given to [`RedisSharing::start_with`](crate::RedisSharing::start_with).
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// Threshold events and resets so far.
    pub(crate) fn decisions(&self) -> (u64, u64) {
        (
            self.thresholds.load(Ordering::Acquire),
            self.resets.load(Ordering::Acquire),
        )
    }
}

impl<O> fmt::Debug for FleetObserver<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetObserver").finish_non_exhaustive()
    }
}

impl<O: Observer> Observer for FleetObserver<O> {
    #[inline]
    fn on_breaker_event(&self, breaker: &str, event: &Event) {
        match event {
            Event::ThresholdExceeded(_) => {
                self.thresholds.fetch_add(1, Ordering::AcqRel);
            }
            Event::Reset => {
                self.resets.fetch_add(1, Ordering::AcqRel);
            }
            Event::StateTransition { .. } => self.wake.notify_one(),
            _ => {}
        }
        self.inner.on_breaker_event(breaker, event)
    }
}
