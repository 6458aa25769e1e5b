//! A guarded result stream: one call, decided at its end or at its first error.

use std::pin::Pin;
use std::task::{Context, Poll};

use breaker_core::{Clock, Observer};
use futures_core::Stream;
use futures_core::stream::BoxStream;

use crate::pool::Call;

/// Passes the items of a query's stream through; the first error (classified) or the end
/// (a success) is recorded; dropped before either, the call counts as nothing (unless it
/// was already slow).
pub(crate) struct GuardedStream<'e, T, C: Clock, O: Observer> {
    inner: BoxStream<'e, Result<T, sqlx::Error>>,
    call: Call<C, O>,
}

impl<'e, T, C: Clock, O: Observer> GuardedStream<'e, T, C, O> {
    pub(crate) fn new(inner: BoxStream<'e, Result<T, sqlx::Error>>, call: Call<C, O>) -> Self {
        GuardedStream { inner, call }
    }
}

impl<T, C: Clock, O: Observer> Unpin for GuardedStream<'_, T, C, O> {}

impl<T, C: Clock, O: Observer> Stream for GuardedStream<'_, T, C, O> {
    type Item = Result<T, sqlx::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(self.inner.as_mut().poll_next(cx));
        match &item {
            Some(Err(e)) => self.call.record(&Err::<(), _>(e)),
            None => self.call.record(&Ok::<(), &sqlx::Error>(())),
            Some(Ok(_)) => {}
        }
        Poll::Ready(item)
    }
}
