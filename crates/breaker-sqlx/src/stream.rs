//! A guarded result stream: one query, settled at its end, at its first error, or when its
//! statement timeout expires.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_core::stream::BoxStream;

type Sleep<'e> = Pin<Box<dyn Future<Output = ()> + Send + 'e>>;

/// Passes the items of a query's stream through; calls `settle` once, with the first error
/// or `Ok` at the end. After `timeout` (from its first poll) without an end, the query is
/// abandoned: the stream yields a statement-timeout error (settled as such) and ends.
/// Dropped before either, `settle` is dropped unused (the query was abandoned).
pub(crate) struct GuardedStream<'e, T, F> {
    inner: BoxStream<'e, Result<T, sqlx::Error>>,
    settle: Option<F>,
    timeout: Option<Duration>,
    sleep: Option<Sleep<'e>>,
    done: bool,
}

impl<'e, T, F> GuardedStream<'e, T, F>
where
    F: FnMut(Result<(), &sqlx::Error>),
{
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
            done: false,
        }
    }

    fn settle(&mut self, result: Result<(), &sqlx::Error>) {
        if let Some(mut settle) = self.settle.take() {
            settle(result);
        }
    }
}

impl<T, F> Unpin for GuardedStream<'_, T, F> {}

impl<T, F> Stream for GuardedStream<'_, T, F>
where
    F: FnMut(Result<(), &sqlx::Error>),
{
    type Item = Result<T, sqlx::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.sleep.is_none()
            && self.settle.is_some()
            && let Some(after) = self.timeout
        {
            self.sleep = Some(Box::pin(sqlx_core::rt::sleep(after)));
        }
        let expired = self.settle.is_some()
            && self
                .sleep
                .as_mut()
                .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
        if expired {
            let error = crate::error::statement_timed_out(self.timeout.unwrap_or_default());
            self.settle(Err(&error));
            self.done = true;
            return Poll::Ready(Some(Err(error)));
        }
        match std::task::ready!(self.inner.as_mut().poll_next(cx)) {
            Some(Err(e)) => {
                self.settle(Err(&e));
                Poll::Ready(Some(Err(e)))
            }
            None => {
                self.settle(Ok(()));
                self.done = true;
                Poll::Ready(None)
            }
            Some(Ok(item)) => Poll::Ready(Some(Ok(item))),
        }
    }
}
