//! Guarding a stream: one call, decided by its first failure or its end.

use std::pin::Pin;
use std::task::{Context, Poll};

use breaker_core::{BreakerRef, Classify, Outcome, Permit};
use futures_core::Stream;
use pin_project_lite::pin_project;

use crate::error::Error;

/// Where a guarded future or stream is in its one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    NotStarted,
    Running,
    Done,
}

pin_project! {
    /// A stream guarded by a breaker, from [`GuardExt::guard_stream`](crate::GuardExt::guard_stream).
    ///
    /// The whole stream is one call. On first poll a permit is acquired; if the breaker
    /// refuses, the stream yields one `Err(Error::Rejected)` and ends without polling the
    /// inner stream. Otherwise items pass through; the first item classified as a failure
    /// records a failure (later items still pass), and the end of the stream records a
    /// success if nothing failed. Dropped early, the call is neutral once the stream had
    /// yielded an item (the dependency was answering; the caller stopped reading); dropped
    /// before its first item, it was abandoned: neutral, unless it had already run longer
    /// than the breaker's slow-call duration (see [`Permit`]).
    #[must_use = "streams do nothing unless polled"]
    pub struct GuardedStream<B, S, K>
    where
        B: BreakerRef,
    {
        breaker: B,
        #[pin]
        stream: S,
        classify: K,
        permit: Option<Permit<B>>,
        answered: bool,
        stage: Stage,
    }

    impl<B, S, K> PinnedDrop for GuardedStream<B, S, K>
    where
        B: BreakerRef,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(permit) = this.permit.take()
                && *this.answered
            {
                permit.cancel();
            }
        }
    }
}

impl<B: BreakerRef, S, K> GuardedStream<B, S, K> {
    pub(crate) fn new(breaker: B, stream: S, classify: K) -> Self {
        GuardedStream {
            breaker,
            stream,
            classify,
            permit: None,
            answered: false,
            stage: Stage::NotStarted,
        }
    }
}

impl<B: BreakerRef, S, K> std::fmt::Debug for GuardedStream<B, S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("stage", &self.stage)
            .field("permit", &self.permit)
            .finish_non_exhaustive()
    }
}

impl<B, S, K, T, E> Stream for GuardedStream<B, S, K>
where
    B: BreakerRef,
    S: Stream<Item = Result<T, E>>,
    K: Classify<T, E>,
{
    type Item = Result<T, Error<E>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        match *this.stage {
            Stage::Done => return Poll::Ready(None),
            Stage::Running => {}
            Stage::NotStarted => match Permit::acquire(this.breaker) {
                Ok(permit) => {
                    *this.permit = Some(permit);
                    *this.stage = Stage::Running;
                }
                Err(rejected) => {
                    *this.stage = Stage::Done;
                    return Poll::Ready(Some(Err(Error::Rejected(rejected))));
                }
            },
        }
        match this.stream.poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(item)) => {
                *this.answered = true;
                if this.permit.is_some()
                    && this.classify.classify(&item) == Outcome::Failure
                    && let Some(permit) = this.permit.take()
                {
                    permit.record_with_pushback(Outcome::Failure, this.classify.pushback(&item));
                }
                Poll::Ready(Some(item.map_err(Error::Inner)))
            }
            Poll::Ready(None) => {
                *this.stage = Stage::Done;
                if let Some(permit) = this.permit.take() {
                    permit.record(Outcome::Success);
                }
                Poll::Ready(None)
            }
        }
    }
}
