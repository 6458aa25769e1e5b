//! Permission to make one call: the first half of the two-step protocol.

use core::fmt;
use core::time::Duration;

use crate::breaker::Outcome;
use crate::breaker::{Kind, Ticket};
use crate::classify::BreakerRef;
use crate::error::Rejected;

/// Permission to make one call, from [`CircuitBreaker::try_acquire`](crate::CircuitBreaker::try_acquire)
/// (a permit borrowing its breaker), [`try_acquire_owned`](crate::CircuitBreaker::try_acquire_owned)
/// (an [`OwnedPermit`] holding an `Arc`) or [`Permit::acquire`] (any [`BreakerRef`] handle, for
/// adapters).
///
/// Record the call's outcome with [`record`](Self::record). A permit that is dropped without
/// a result (a cancelled future, an early return, a panic unwinding through it) is neutral:
/// nothing is counted and a half-open probe slot is given back. A call given up on after it
/// had already run long is reported with [`abandon`](Self::abandon). A result recorded after
/// the breaker's state changed is dropped as late.
///
/// ```
/// use breaker_core::{CircuitBreaker, ManualClock, Outcome, Permit};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let breaker = Arc::new(CircuitBreaker::builder_with_clock(ManualClock::new()).build()?);
/// // Any handle works: `&CircuitBreaker`, `Arc<CircuitBreaker>`.
/// let permit: Permit<Arc<_>> = Permit::acquire(&breaker).expect("closed");
/// std::thread::spawn(move || permit.record(Outcome::Success, Duration::from_millis(2)))
///     .join()
///     .unwrap();
/// assert_eq!(breaker.snapshot().totals.successes, 1);
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
#[must_use = "record the call's outcome, or drop the permit to cancel"]
pub struct Permit<B: BreakerRef> {
    breaker: B,
    ticket: Option<Ticket>,
}

/// A [`Permit`] that owns an `Arc` of its breaker, so it can move into a `'static` task.
#[cfg(feature = "alloc")]
pub type OwnedPermit<C, O = crate::observer::NoopObserver> =
    Permit<alloc::sync::Arc<crate::breaker::CircuitBreaker<C, O>>>;

impl<B: BreakerRef> Permit<B> {
    /// Asks `breaker` to make one call, keeping a clone of the handle in the permit (the
    /// handle is cloned only when the call is admitted).
    #[inline]
    pub fn acquire(breaker: &B) -> Result<Self, Rejected> {
        let ticket = breaker.breaker().acquire_ticket()?;
        Ok(Permit {
            breaker: breaker.clone(),
            ticket: Some(ticket),
        })
    }

    /// Records the outcome of the call and how long it took (`Duration::ZERO` is fine when
    /// [`measures_duration`](crate::CircuitBreaker::measures_duration) is false).
    #[inline]
    pub fn record(mut self, outcome: Outcome, elapsed: Duration) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.breaker().complete(ticket, outcome, elapsed);
        }
    }

    /// The call was given up on (cancelled, dropped by an outer timeout) after running for
    /// `elapsed`. A call abandoned before it became slow is neutral, like a dropped permit. A
    /// call abandoned after it had already run longer than the slow-call duration
    /// ([`Builder::slow_call_duration`](crate::Builder::slow_call_duration)) counts as a slow
    /// failure: a dependency that hangs must trip the breaker even when every caller gives up
    /// on it with its own timeout.
    #[inline]
    pub fn abandon(mut self, elapsed: Duration) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.breaker().abandon_after(ticket, elapsed);
        }
    }

    /// Whether this permit is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.is_some_and(|t| t.kind() == Kind::Probe)
    }

    /// The generation the permit was issued in.
    pub fn generation(&self) -> u32 {
        self.ticket.map_or(0, |t| t.epoch())
    }

    /// The breaker handle this permit belongs to.
    pub fn breaker(&self) -> &B {
        &self.breaker
    }
}

impl<B: BreakerRef> Drop for Permit<B> {
    #[inline]
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.breaker().abandon(ticket);
        }
    }
}

impl<B: BreakerRef> fmt::Debug for Permit<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("ticket", &self.ticket)
            .finish()
    }
}
