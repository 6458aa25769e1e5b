//! Guarding a future: acquire a permit on first poll, classify the output, record it.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub use breaker_core::{BreakerRef, Classify, ErrorsAreFailures};
use breaker_core::{CircuitBreaker, Clock, Observer, Outcome, Permit};
use pin_project_lite::pin_project;
use std::sync::Arc;

use crate::error::Error;
use crate::stream::{GuardedStream, Stage};
use crate::timer::{NoTimer, Timeout, Timer};

/// Guards futures and streams with a [`CircuitBreaker`]. `guard` borrows the breaker (it
/// works on `CircuitBreaker`, `&CircuitBreaker` and `Arc<CircuitBreaker>` alike);
/// `guard_owned` takes an `Arc` so the future is `'static` (for `spawn`).
///
/// ```
/// use breaker_async::GuardExt;
/// use breaker_core::{CircuitBreaker, ManualClock};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new()).build()?;
/// # let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// # rt.block_on(async {
/// let price = breaker.guard(async { Ok::<_, std::io::Error>(42) }).await?;
/// assert_eq!(price, 42);
/// # Ok::<(), breaker_async::Error<std::io::Error>>(())
/// # })?;
/// # Ok(())
/// # }
/// ```
pub trait GuardExt<C: Clock, O: Observer> {
    /// Guards `fut`: on first poll a permit is acquired (or the call is rejected without
    /// polling `fut`), then `fut`'s result is classified (every `Err` is a failure unless
    /// [`classify`](GuardedCall::classify) says otherwise) and recorded with its duration.
    /// Dropping the future before it finishes abandons the call: nothing is recorded and the
    /// half-open slot is freed while the call is young; past its timeout or the breaker's
    /// slow-call duration, it counts as a failure.
    ///
    /// Returns a [`GuardedCall`] to configure (`classify`, `timeout`, fallbacks) and
    /// `.await`.
    fn guard<F, T, E>(
        &self,
        fut: F,
    ) -> GuardedCall<&CircuitBreaker<C, O>, F::IntoFuture, ErrorsAreFailures, NoTimer>
    where
        F: IntoFuture<Output = Result<T, E>>;

    /// Like [`guard`](Self::guard), owning an `Arc` of the breaker: the guarded future is
    /// `'static` (and `Send` when `fut` is), so it can be spawned.
    fn guard_owned<F, T, E>(
        self: Arc<Self>,
        fut: F,
    ) -> GuardedCall<Arc<CircuitBreaker<C, O>>, F::IntoFuture, ErrorsAreFailures, NoTimer>
    where
        F: IntoFuture<Output = Result<T, E>>;

    /// Guards a stream of results: one call whose outcome is decided by the stream's first
    /// failure (a failure) or its end (a success). See [`GuardedStream`].
    fn guard_stream<S>(
        &self,
        stream: S,
    ) -> GuardedStream<&CircuitBreaker<C, O>, S, ErrorsAreFailures>;

    /// Like [`guard_stream`](Self::guard_stream), with a classifier for the items.
    fn guard_stream_with<S, K>(
        &self,
        stream: S,
        classify: K,
    ) -> GuardedStream<&CircuitBreaker<C, O>, S, K>;
}

impl<C: Clock, O: Observer> GuardExt<C, O> for CircuitBreaker<C, O> {
    fn guard<F, T, E>(
        &self,
        fut: F,
    ) -> GuardedCall<&CircuitBreaker<C, O>, F::IntoFuture, ErrorsAreFailures, NoTimer>
    where
        F: IntoFuture<Output = Result<T, E>>,
    {
        GuardedCall::new(self, fut.into_future())
    }

    fn guard_owned<F, T, E>(
        self: Arc<Self>,
        fut: F,
    ) -> GuardedCall<Arc<CircuitBreaker<C, O>>, F::IntoFuture, ErrorsAreFailures, NoTimer>
    where
        F: IntoFuture<Output = Result<T, E>>,
    {
        GuardedCall::new(self, fut.into_future())
    }

    fn guard_stream<S>(
        &self,
        stream: S,
    ) -> GuardedStream<&CircuitBreaker<C, O>, S, ErrorsAreFailures> {
        GuardedStream::new(self, stream, ErrorsAreFailures)
    }

    fn guard_stream_with<S, K>(
        &self,
        stream: S,
        classify: K,
    ) -> GuardedStream<&CircuitBreaker<C, O>, S, K> {
        GuardedStream::new(self, stream, classify)
    }
}

pin_project! {
    /// A future guarded by a breaker, from [`GuardExt::guard`].
    ///
    /// Resolves to `Ok(value)`, or an [`Error`]: rejected (never polled the inner future),
    /// timed out (counted as a failure), or the inner error. Costs no allocation.
    ///
    /// Dropped while running (cancelled, or given up on by an outer timeout such as
    /// `tokio::time::timeout`), the call was abandoned: neutral if it was still young, a
    /// failure if it had already run past this call's timeout or the breaker's slow-call
    /// duration (see [`Permit`]).
    #[must_use = "futures do nothing unless polled"]
    pub struct Guarded<B, F, K, T>
    where
        B: BreakerRef,
        T: Timer,
    {
        breaker: B,
        #[pin]
        fut: F,
        classify: K,
        timeout: Option<Timeout<T>>,
        #[pin]
        sleep: Option<T::Sleep>,
        permit: Option<Permit<B>>,
        stage: Stage,
    }
}

impl<B: BreakerRef, F, K, T: Timer> std::fmt::Debug for Guarded<B, F, K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("stage", &self.stage)
            .field("permit", &self.permit)
            .field("timeout", &self.timeout.as_ref().map(|t| t.after))
            .finish_non_exhaustive()
    }
}

/// A call to guard, from [`GuardExt::guard`]: configure it, then `.await` it (it turns
/// into a [`Guarded`] future), or await it through a fallback.
#[must_use = "a guarded call does nothing until awaited"]
pub struct GuardedCall<B, F, K, T> {
    pub(crate) breaker: B,
    pub(crate) fut: F,
    pub(crate) classify: K,
    pub(crate) timeout: Option<Timeout<T>>,
}

impl<B, F, K, T> std::fmt::Debug for GuardedCall<B, F, K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedCall")
            .field("timeout", &self.timeout.as_ref().map(|t| t.after))
            .finish_non_exhaustive()
    }
}

impl<B: BreakerRef, F> GuardedCall<B, F, ErrorsAreFailures, NoTimer> {
    /// A call of `fut` guarded by `breaker`, counting every `Err` as a failure and with no
    /// timeout. Usually made by [`GuardExt::guard`]; this also works for any other
    /// [`BreakerRef`] (such as a `&'static CircuitBreaker`).
    pub fn new(breaker: B, fut: F) -> Self {
        GuardedCall {
            breaker,
            fut,
            classify: ErrorsAreFailures,
            timeout: None,
        }
    }
}

impl<B: BreakerRef, F, K, T: Timer> GuardedCall<B, F, K, T> {
    /// Classifies results with `classify` instead of counting every `Err` as a failure.
    ///
    /// ```
    /// use breaker_async::GuardExt;
    /// use breaker_core::{CircuitBreaker, ManualClock, Outcome, State};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
    ///     .consecutive_failures(1)
    ///     .build()?;
    /// # let rt = tokio::runtime::Builder::new_current_thread().build()?;
    /// # rt.block_on(async {
    /// let not_found = breaker
    ///     .guard(async { Err::<(), u16>(404) })
    ///     .classify(|r: &Result<(), u16>| match r {
    ///         Err(status) if *status >= 500 => Outcome::Failure,
    ///         _ => Outcome::Success, // a 404 is the caller's problem, not an outage
    ///     })
    ///     .await;
    /// assert!(not_found.is_err());
    /// # });
    /// assert_eq!(breaker.state(), State::Closed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn classify<K2>(self, classify: K2) -> GuardedCall<B, F, K2, T> {
        GuardedCall {
            breaker: self.breaker,
            fut: self.fut,
            classify,
            timeout: self.timeout,
        }
    }

    /// Abandons the call, and counts a failure, if it has not finished within `timeout`.
    pub fn timeout<T2: Timer>(self, timeout: Timeout<T2>) -> GuardedCall<B, F, K, T2> {
        GuardedCall {
            breaker: self.breaker,
            fut: self.fut,
            classify: self.classify,
            timeout: Some(timeout),
        }
    }

    /// The handle to the breaker.
    pub fn breaker(&self) -> &B {
        &self.breaker
    }
}

impl<B, F, K, T, V, E> IntoFuture for GuardedCall<B, F, K, T>
where
    B: BreakerRef,
    F: Future<Output = Result<V, E>>,
    K: Classify<V, E>,
    T: Timer,
{
    type Output = Result<V, Error<E>>;
    type IntoFuture = Guarded<B, F, K, T>;

    fn into_future(self) -> Self::IntoFuture {
        Guarded {
            breaker: self.breaker,
            fut: self.fut,
            classify: self.classify,
            timeout: self.timeout,
            sleep: None,
            permit: None,
            stage: Stage::NotStarted,
        }
    }
}

impl<B, F, K, T, V, E> Future for Guarded<B, F, K, T>
where
    B: BreakerRef,
    F: Future<Output = Result<V, E>>,
    K: Classify<V, E>,
    T: Timer,
{
    type Output = Result<V, Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match *this.stage {
            Stage::Running => {}
            Stage::NotStarted => {
                let mut permit = match Permit::acquire(this.breaker) {
                    Ok(permit) => permit,
                    Err(rejected) => {
                        *this.stage = Stage::Done;
                        return Poll::Ready(Err(Error::Rejected(rejected)));
                    }
                };
                if let Some(t) = this.timeout.as_ref() {
                    // The timeout travels with the permit: an outer timeout that drops this
                    // future after it counts the call as timed out too.
                    permit.set_deadline(t.after);
                    this.sleep.set(Some(t.timer.sleep(t.after)));
                }
                *this.permit = Some(permit);
                *this.stage = Stage::Running;
            }
            Stage::Done => panic!("`Guarded` future polled after it completed"),
        }
        if let Poll::Ready(result) = this.fut.poll(cx) {
            *this.stage = Stage::Done;
            if let Some(permit) = this.permit.take() {
                permit.record_result(&*this.classify, &result);
            }
            return Poll::Ready(result.map_err(Error::Inner));
        }
        if let Some(sleep) = this.sleep.as_mut().as_pin_mut()
            && sleep.poll(cx).is_ready()
        {
            *this.stage = Stage::Done;
            let after = this.timeout.as_ref().map_or(Duration::ZERO, |t| t.after);
            if let Some(permit) = this.permit.take() {
                permit.record(Outcome::Failure);
            }
            return Poll::Ready(Err(Error::Timeout { after }));
        }
        Poll::Pending
    }
}
