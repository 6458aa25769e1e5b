//! One admitted call of a guarded pool: its permit and classifier, and the statement
//! timeout it runs under.

use std::future::Future;
use std::time::Duration;

use breaker_core::{BreakerRef, Outcome, Permit};

use crate::classify::Classifier;
use crate::error::{statement_timed_out, timed_out};

/// `fut`, abandoned with a [`StatementTimedOut`](crate::StatementTimedOut) error after
/// `timeout` (if any).
pub(crate) async fn within<T>(
    timeout: Option<Duration>,
    fut: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    match timeout {
        None => fut.await,
        Some(after) => match sqlx_core::rt::timeout(after, fut).await {
            Ok(result) => result,
            Err(_) => Err(statement_timed_out(after)),
        },
    }
}

/// One admitted call: its permit (which times it and holds its deadline), how to classify
/// its result.
pub(crate) struct Call<B: BreakerRef> {
    permit: Option<Permit<B>>,
    classify: Classifier,
}

impl<B: BreakerRef> Call<B> {
    pub(crate) fn new(permit: Permit<B>, classify: Classifier) -> Self {
        Call {
            permit: Some(permit),
            classify,
        }
    }

    /// How `error` counts: the classifier's verdict, except that a query abandoned at its
    /// statement timeout is always a failure.
    pub(crate) fn classify(&self, error: &sqlx::Error) -> Outcome {
        if timed_out(error).is_some() {
            Outcome::Failure
        } else {
            (self.classify)(error)
        }
    }

    /// Records the result (once; later calls do nothing).
    pub(crate) fn record<T>(&mut self, result: &Result<T, &sqlx::Error>) {
        let outcome = match result {
            Ok(_) => Outcome::Success,
            Err(e) => self.classify(e),
        };
        self.record_outcome(outcome);
    }

    /// Records `outcome` (once; later calls do nothing).
    pub(crate) fn record_outcome(&mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            permit.record(outcome);
        }
    }

    /// Ends the call neutrally (once; later calls do nothing).
    pub(crate) fn cancel(&mut self) {
        if let Some(permit) = self.permit.take() {
            permit.cancel();
        }
    }

    pub(crate) fn finish<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        self.record(&result.as_ref().map(|_| ()));
        result
    }
}
