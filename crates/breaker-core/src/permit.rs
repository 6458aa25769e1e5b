//! Permission to make one call, and the call's lifecycle: it starts when the permit is
//! issued, and ends when the permit is recorded, cancelled or dropped.

use core::fmt;
use core::time::Duration;

use crate::breaker::CircuitBreaker;
use crate::clock::{Clock, nanos};
use crate::error::Rejected;
use crate::handle::BreakerRef;
use crate::observer::Observer;
use crate::outcome::{Outcome, Pushback};
use crate::ticket::{Kind, Ticket};

/// `Permit::started` when the breaker's clock was not read for the call.
const NOT_TIMED: u64 = u64::MAX;

/// Permission to make one call, from [`CircuitBreaker::try_acquire`] (a permit borrowing
/// its breaker), [`try_acquire_owned`](CircuitBreaker::try_acquire_owned) (an
/// [`OwnedPermit`] holding an `Arc`) or [`Permit::acquire`] (any [`BreakerRef`] handle, for
/// adapters).
///
/// A permit *is* the call, from start to end; every adapter of this workspace (futures,
/// streams, tower services, gRPC, sqlx) is a thin use of it:
///
/// - **Start.** The call starts when the permit is issued. The permit reads the breaker's
///   clock then only if it will need the time: when the breaker measures durations
///   (slow-call detection is on, see [`CircuitBreaker::measures_duration`]) or when the call
///   is given a [deadline](Self::set_deadline).
/// - **Success or failure.** [`record`](Self::record) the outcome; the permit measures how
///   long the call took itself, on the breaker's clock.
/// - **Neutral end.** [`cancel`](Self::cancel): counted nowhere, the half-open probe slot is
///   given back.
/// - **Abandoned.** A permit dropped without a result (a cancelled future, an early `?`, an
///   outer timeout) was *abandoned*: if the call had already run past its deadline, or longer
///   than the breaker's slow-call duration, it counts as a (slow) failure, since a dependency
///   that hangs must trip the breaker even when every caller gives up on it first; before
///   that, it is neutral, like `cancel`.
///
/// A result recorded after the breaker's state changed is dropped as late. (A runtime that
/// shuts down drops its tasks' futures: their calls are abandoned like any other, so one
/// already past its deadline then counts as a failure.)
///
/// ```
/// use breaker_core::{CircuitBreaker, ManualClock, Outcome, Permit, State};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let breaker = Arc::new(
///     CircuitBreaker::builder_with_clock(clock.clone()).consecutive_failures(1).build()?,
/// );
/// // Any handle works: `&CircuitBreaker`, `Arc<CircuitBreaker>`, `&'static CircuitBreaker`.
/// let permit: Permit<Arc<_>> = Permit::acquire(&breaker).expect("closed");
/// std::thread::spawn(move || permit.record(Outcome::Success)).join().unwrap();
/// assert_eq!(breaker.snapshot().totals.successes, 1);
///
/// // A call that is given up on before its deadline is neutral...
/// let permit = Permit::acquire(&breaker)?.with_deadline(Duration::from_secs(2));
/// clock.advance(Duration::from_secs(1));
/// drop(permit);
/// assert_eq!(breaker.state(), State::Closed);
/// // ...and one dropped at or past its deadline timed out: a failure.
/// let permit = Permit::acquire(&breaker)?.with_deadline(Duration::from_secs(2));
/// clock.advance(Duration::from_secs(2));
/// drop(permit);
/// assert_eq!(breaker.state(), State::Open);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "record the call's outcome, or cancel the permit"]
pub struct Permit<B: BreakerRef> {
    breaker: B,
    ticket: Option<Ticket>,
    /// When the call started, on the breaker's clock; [`NOT_TIMED`] if it was not read.
    started: u64,
}

/// A [`Permit`] that owns an `Arc` of its breaker, so it can move into a `'static` task.
#[cfg(feature = "alloc")]
pub type OwnedPermit<C, O = crate::observer::NoopObserver> =
    Permit<alloc::sync::Arc<CircuitBreaker<C, O>>>;

impl<C: Clock, O: Observer> CircuitBreaker<C, O> {
    /// Asks to make one call. `Ok` carries a [`Permit`]: make the call, then record its
    /// outcome. `Err` says why the call must not be made and, when open, how long until a
    /// probe is allowed.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<&Self>, Rejected> {
        let ticket = self.acquire_ticket()?;
        let started = if self.measures_duration() && ticket.kind() != Kind::Passthrough {
            self.now()
        } else {
            NOT_TIMED
        };
        Ok(Permit {
            breaker: self,
            ticket: Some(ticket),
            started,
        })
    }

    /// Like [`try_acquire`](Self::try_acquire), for a breaker in an `Arc`: the permit owns a
    /// clone of the `Arc`, so it can move into a `'static` future or another thread.
    #[cfg(feature = "alloc")]
    #[inline]
    pub fn try_acquire_owned(self: &alloc::sync::Arc<Self>) -> Result<OwnedPermit<C, O>, Rejected> {
        Permit::acquire(self)
    }
}

impl<B: BreakerRef> Permit<B> {
    /// Asks `breaker` to make one call, keeping a clone of the handle in the permit (the
    /// handle is cloned only when the call is admitted). The call starts now.
    #[inline]
    pub fn acquire(breaker: &B) -> Result<Self, Rejected> {
        // Admitted on a borrow first: if cloning the handle panics, the borrowed permit
        // unwinds and abandons the call instead of losing its ticket (and a probe's slot).
        let permit = breaker.breaker().try_acquire()?;
        Ok(permit.onto(breaker.clone()))
    }

    /// Records the outcome of the call; the permit measures its duration (on the breaker's
    /// clock, if it needs it).
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        if let Some(ticket) = self.ticket.take() {
            let elapsed = self.elapsed_nanos();
            self.breaker.breaker().complete(ticket, outcome, elapsed, 0);
        }
    }

    /// [`record`](Self::record), with what the dependency said about when to come back
    /// (see [`Pushback`]): when this outcome opens the breaker, the open period lasts at
    /// least that long, up to [`max_pushback`](crate::Builder::max_pushback). Only a failure
    /// that opens the breaker (a trip, a failed probe) uses it.
    #[inline]
    pub fn record_with_pushback(mut self, outcome: Outcome, pushback: Option<Pushback>) {
        // The body of `finish`, not a call to it: by value, the permit's fields stay in
        // registers (measured ~2 ns a call faster than going through `&mut self`).
        if let Some(ticket) = self.ticket.take() {
            let elapsed = self.elapsed_nanos();
            let asked = asked_nanos(outcome, pushback);
            self.breaker
                .breaker()
                .complete(ticket, outcome, elapsed, asked);
        }
    }

    /// Records `result` as `classify` judges it: its outcome, and for a failure what
    /// [`Classify::pushback`](crate::Classify::pushback) finds in it. Returns the outcome.
    /// What every adapter does with a call's result.
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, ErrorsAreFailures, Outcome};
    ///
    /// let breaker = CircuitBreaker::builder().build()?;
    /// let result: Result<u32, &str> = Err("timed out");
    /// let permit = breaker.try_acquire().unwrap();
    /// assert_eq!(permit.record_result(&ErrorsAreFailures, &result), Outcome::Failure);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    #[inline]
    pub fn record_result<T, E>(
        self,
        classify: &impl crate::Classify<T, E>,
        result: &Result<T, E>,
    ) -> Outcome {
        let (outcome, pushback) = judge(classify, result);
        self.record_with_pushback(outcome, pushback);
        outcome
    }

    /// [`record_result`](Self::record_result) for a permit kept in place, such as a field of
    /// the future that made the call: afterwards the permit is spent, and recording again,
    /// cancelling or dropping it does nothing. Moving a permit out of a future to record it
    /// copies it, and a copy made right after the permit was written costs a
    /// store-forwarding stall (the tower layer measured ~5 ns a call slower).
    ///
    /// If the classifier panics, nothing is recorded and the permit is left unspent: dropped,
    /// it abandons the call (the tower layer's future drops it as the panic unwinds).
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, ErrorsAreFailures, Outcome, State};
    ///
    /// let breaker = CircuitBreaker::builder().consecutive_failures(1).build()?;
    /// let mut permit = breaker.try_acquire().unwrap();
    /// let result: Result<(), &str> = Err("refused");
    /// let outcome = permit.record_result_in_place(&ErrorsAreFailures, &result);
    /// assert_eq!(outcome, Outcome::Failure);
    /// assert_eq!(breaker.state(), State::Open);
    /// drop(permit); // spent: changes nothing
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    #[inline]
    pub fn record_result_in_place<T, E>(
        &mut self,
        classify: &impl crate::Classify<T, E>,
        result: &Result<T, E>,
    ) -> Outcome {
        let (outcome, pushback) = judge(classify, result);
        self.finish(outcome, pushback);
        outcome
    }

    /// Records `outcome` once: the permit is spent afterwards. `record_with_pushback` repeats
    /// this body by value.
    #[inline]
    fn finish(&mut self, outcome: Outcome, pushback: Option<Pushback>) {
        if let Some(ticket) = self.ticket.take() {
            let elapsed = self.elapsed_nanos();
            let asked = asked_nanos(outcome, pushback);
            self.breaker
                .breaker()
                .complete(ticket, outcome, elapsed, asked);
        }
    }

    /// Ends the call neutrally, on purpose: counted nowhere, whatever its duration, and a
    /// half-open probe slot is given back. For calls that say nothing about the dependency
    /// (the caller changed its mind). Dropping the permit instead marks the call abandoned
    /// (see the type's docs).
    #[inline]
    pub fn cancel(mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.breaker().cancel(ticket);
        }
    }

    /// Gives the call a deadline, `after` from its start: abandoned at or after it (the
    /// permit dropped without a result), the call counts as a timed-out failure. For a
    /// timeout enforced outside the adapter (a `grpc-timeout`, a statement timeout, an outer
    /// `tokio::time::timeout`). The deadline is kept within four parts per million (2^-18),
    /// never later (up to about 13 days; longer ones are cut to that).
    ///
    /// "From its start": from when the permit was issued if it read the clock then (the
    /// breaker measures durations, or a deadline was set before), else from now (the call's
    /// clock starts here). Set it right after acquiring, as the adapters do.
    pub fn set_deadline(&mut self, after: Duration) {
        if let Some(ticket) = self.ticket {
            if self.started == NOT_TIMED {
                self.started = self.breaker.breaker().now();
            }
            self.ticket = Some(ticket.with_deadline(nanos(after)));
        }
    }

    /// Gives the call a deadline enforced by a timer that started *before* this permit was
    /// issued: an outer timeout layer, or a peer's own deadline (`grpc-timeout`). Its timer
    /// fires a little before `after` has passed on the permit's clock, so the call counts as
    /// timed out from a little before `after`: 2 % of it, at least 5 ms (never before its
    /// start).
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, ManualClock, State};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let breaker = CircuitBreaker::builder_with_clock(clock.clone())
    ///     .consecutive_failures(1)
    ///     .build()?;
    /// let mut permit = breaker.try_acquire()?;
    /// permit.set_outer_deadline(Duration::from_secs(1));
    /// clock.advance(Duration::from_millis(985)); // the outer timer fired and dropped the call
    /// drop(permit);
    /// assert_eq!(breaker.state(), State::Open);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_outer_deadline(&mut self, after: Duration) {
        let slack = (after / 50).max(Duration::from_millis(5)).min(after);
        self.set_deadline(after - slack);
    }

    /// Takes the deadline away: the part of the call it covered is over (a server's timeout
    /// that covers a response's headers, not its streamed body).
    pub fn clear_deadline(&mut self) {
        if let Some(ticket) = self.ticket {
            self.ticket = Some(ticket.without_deadline());
        }
    }

    /// [`set_deadline`](Self::set_deadline), by value.
    pub fn with_deadline(mut self, after: Duration) -> Self {
        self.set_deadline(after);
        self
    }

    /// The call's deadline, from its start, if it has one (as kept: see
    /// [`set_deadline`](Self::set_deadline)).
    pub fn deadline(&self) -> Option<Duration> {
        self.ticket
            .and_then(Ticket::deadline)
            .map(Duration::from_nanos)
    }

    /// How long the call has run so far, on the breaker's clock; zero if the permit did not
    /// read the clock (the breaker measures no durations and the call has no deadline).
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed_nanos())
    }

    #[inline]
    fn elapsed_nanos(&self) -> u64 {
        if self.started == NOT_TIMED {
            0
        } else {
            elapsed_since(self.breaker.breaker(), self.started)
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

impl<C: Clock, O: Observer> Permit<&CircuitBreaker<C, O>> {
    /// The same permit, holding `handle` (an `Arc` of this breaker, a fleet-shared breaker)
    /// instead of a borrow, so that it can move into a `'static` future. For an adapter that
    /// acquires from a borrow, makes the call, and clones its handle only then: the clone
    /// of an `Arc` is an atomic read-modify-write, and done before the call the permit waits
    /// in memory across it (the tower layer measured ~5 ns a call slower).
    ///
    /// # Panics
    ///
    /// If `handle` is not a handle of this permit's breaker. The permit is then dropped,
    /// which abandons its call.
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, Outcome, Permit};
    /// use std::sync::Arc;
    ///
    /// let breaker = Arc::new(CircuitBreaker::builder().build()?);
    /// let permit = breaker.try_acquire().unwrap(); // no clone of the `Arc` yet
    /// // ... make the call ...
    /// let owned: Permit<Arc<CircuitBreaker>> = permit.with_handle(Arc::clone(&breaker));
    /// std::thread::spawn(move || owned.record(Outcome::Success)).join().unwrap();
    /// assert_eq!(breaker.snapshot().totals.successes, 1);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    #[inline]
    #[track_caller]
    pub fn with_handle<B: BreakerRef<Clock = C, Observer = O>>(self, handle: B) -> Permit<B> {
        assert!(
            core::ptr::eq(self.breaker, handle.breaker()),
            "Permit::with_handle: the handle is of another breaker than the permit's"
        );
        self.onto(handle)
    }

    /// [`with_handle`](Self::with_handle) for a handle known to be of this permit's breaker.
    #[inline]
    fn onto<B: BreakerRef<Clock = C, Observer = O>>(self, handle: B) -> Permit<B> {
        // Not dropped: the ticket moves to the new permit (a borrow needs no release).
        let this = core::mem::ManuallyDrop::new(self);
        Permit {
            breaker: handle,
            ticket: this.ticket,
            started: this.started,
        }
    }
}

/// A call's result as `classify` judges it: its outcome, and for a failure the dependency's
/// pushback.
#[inline]
fn judge<T, E>(
    classify: &impl crate::Classify<T, E>,
    result: &Result<T, E>,
) -> (Outcome, Option<Pushback>) {
    let outcome = classify.classify(result);
    let pushback = match outcome {
        Outcome::Failure => classify.pushback(result),
        _ => None,
    };
    (outcome, pushback)
}

/// The open period a recorded outcome asks for, in nanoseconds: the pushback of a failure,
/// `0` (none) otherwise.
#[inline]
fn asked_nanos(outcome: Outcome, pushback: Option<Pushback>) -> u64 {
    match (outcome, pushback) {
        (Outcome::Failure, Some(p)) => p.nanos(),
        _ => 0,
    }
}

/// The time since `started`, on the breaker's clock. Out of line: reading a clock costs far
/// more than a call, and inlined, its code (a vDSO call and its checks) made every adapter's
/// `poll` too big for the compiler to inline into its caller even when no clock is read
/// (seen in `cargo xtask bench`, the tower group: +2 ns a call over an `Arc` breaker). The
/// start stays inline: out of line there, the tower layer measured slower.
#[inline(never)]
fn elapsed_since<C: Clock, O: Observer>(breaker: &CircuitBreaker<C, O>, started: u64) -> u64 {
    breaker.now().saturating_sub(started)
}

/// A permit dropped without a result. Takes what it needs by value, not the permit: a
/// permit whose address reached a function that is not inlined would live in memory, and
/// every `record` would copy it there first (a store-forwarding stall, ~10 ns a call, seen
/// in `cargo xtask bench`).
#[cold]
#[inline(never)]
fn abandoned<C: Clock, O: Observer>(breaker: &CircuitBreaker<C, O>, ticket: Ticket, started: u64) {
    let elapsed = (started != NOT_TIMED).then(|| breaker.now().saturating_sub(started));
    breaker.abandon(ticket, elapsed);
}

impl<B: BreakerRef> Drop for Permit<B> {
    #[inline]
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            abandoned(self.breaker.breaker(), ticket, self.started);
        }
    }
}

impl<B: BreakerRef> fmt::Debug for Permit<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("ticket", &self.ticket)
            .field(
                "started",
                &(self.started != NOT_TIMED).then_some(self.started),
            )
            .finish()
    }
}
