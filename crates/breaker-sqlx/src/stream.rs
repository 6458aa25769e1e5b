//! A guarded result stream: one query, settled at its end, at its first error, or when the
//! database keeps it waiting longer than the statement timeout.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;
use futures_core::stream::BoxStream;

type Sleep<'e> = Pin<Box<dyn Future<Output = ()> + Send + 'e>>;

/// How a guarded query ended.
#[derive(Debug)]
pub(crate) enum Ending<'a> {
    /// Its first error.
    Error(&'a sqlx::Error),
    /// It ran to its end.
    Finished,
    /// The caller dropped it first; `answered`: rows (or results) had come.
    Dropped { answered: bool },
}

/// Passes the items of a query's stream through; calls `settle` once: with the first error,
/// at the end, or when dropped before either.
///
/// The statement timeout counts the time spent **waiting on the database**, from the
/// moment the stream finds nothing ready until the next row, result or end arrives; the
/// caller's own time between rows is not the database's. Past it, the query is abandoned:
/// the stream yields a statement-timeout error (settled as such) and ends.
pub(crate) struct GuardedStream<'e, T, F: FnMut(Ending<'_>)> {
    inner: BoxStream<'e, Result<T, sqlx::Error>>,
    settle: Option<F>,
    timeout: Option<Duration>,
    /// The timer of the current wait (or of an earlier one, which fires early and is armed
    /// again for what is left).
    sleep: Option<Sleep<'e>>,
    /// When the current wait for the database began.
    waiting_since: Option<Instant>,
    answered: bool,
    done: bool,
}

impl<'e, T, F: FnMut(Ending<'_>)> GuardedStream<'e, T, F> {
    pub(crate) fn new(
        inner: BoxStream<'e, Result<T, sqlx::Error>>,
        settle: F,
        timeout: Option<Duration>,
    ) -> Self {
        GuardedStream {
            inner,
            settle: Some(settle),
            timeout,
            sleep: None,
            waiting_since: None,
            answered: false,
            done: false,
        }
    }

    fn settle(&mut self, ending: Ending<'_>) {
        if let Some(mut settle) = self.settle.take() {
            settle(ending);
        }
    }

    /// Whether the current wait has run past the statement timeout (arming its timer).
    fn waited_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(timeout) = self.timeout.filter(|_| self.settle.is_some()) else {
            return false;
        };
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        loop {
            let sleep = self.sleep.get_or_insert_with(|| {
                Box::pin(sqlx_core::rt::sleep(
                    timeout.saturating_sub(since.elapsed()),
                ))
            });
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            self.sleep = None;
            if since.elapsed() >= timeout {
                return true;
            }
        }
    }
}

impl<T, F: FnMut(Ending<'_>)> Unpin for GuardedStream<'_, T, F> {}

impl<T, F: FnMut(Ending<'_>)> Stream for GuardedStream<'_, T, F> {
    type Item = Result<T, sqlx::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => {
                self.waiting_since = None;
                match &item {
                    Ok(_) => self.answered = true,
                    Err(e) => self.settle(Ending::Error(e)),
                }
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                self.settle(Ending::Finished);
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending if self.waited_too_long(cx) => {
                let after = self.timeout.unwrap_or_default();
                let error = crate::error::statement_timed_out(after);
                self.settle(Ending::Error(&error));
                self.done = true;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T, F: FnMut(Ending<'_>)> Drop for GuardedStream<'_, T, F> {
    fn drop(&mut self) {
        let answered = self.answered;
        self.settle(Ending::Dropped { answered });
    }
}
