//! A flaky gRPC service for breaker-tonic's tests and example: the caller scripts each answer
//! (a status code, streamed items, a failure midway, a delay), and the service counts the
//! calls that reached its handlers.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

pub mod proto {
    tonic::include_proto!("flaky");
}

pub use proto::flaky_client::FlakyClient;
pub use proto::flaky_server::{Flaky, FlakyServer};
pub use proto::{Answer, Script};

/// The service; clones share the call counter.
#[derive(Clone, Default)]
pub struct FlakyService {
    calls: Arc<AtomicU64>,
}

impl FlakyService {
    /// Calls that reached a handler so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

fn status(code: u32) -> Status {
    Status::new(Code::from_i32(code as i32), "scripted failure")
}

#[tonic::async_trait]
impl Flaky for FlakyService {
    async fn call(&self, request: Request<Script>) -> Result<Response<Answer>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let script = request.into_inner();
        if script.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(script.delay_ms)).await;
        }
        match script.code {
            0 => Ok(Response::new(Answer { n: 1 })),
            code => Err(status(code)),
        }
    }

    type StreamStream = Pin<Box<dyn Stream<Item = Result<Answer, Status>> + Send>>;

    async fn stream(
        &self,
        request: Request<Script>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let script = request.into_inner();
        let items = (0..script.items).map(move |n| {
            if script.code != 0 && n >= script.fail_after {
                Err(status(script.code))
            } else {
                Ok(Answer { n })
            }
        });
        // Stop after the first error, as a server handler's stream would.
        let mut failed = false;
        let items: Vec<_> = items
            .take_while(|item| {
                let keep = !failed;
                failed |= item.is_err();
                keep
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }
}
