//! A gRPC server that sheds load says when to come back (`grpc-retry-pushback-ms`, gRPC's
//! retry pushback; negative: do not retry). The client breaker that a failing answer opens
//! stays open at least that long, up to its `max_pushback`. A real tonic server and client
//! over loopback; breaker time on the manual clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, State};
use breaker_tonic::{GrpcBreakerLayer, RETRY_PUSHBACK};
use grpc_fixture::{Answer, Flaky, FlakyClient, FlakyServer, Script};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};

/// Answers every call `UNAVAILABLE` with this pushback.
struct Shedding(&'static str);

#[tonic::async_trait]
impl Flaky for Shedding {
    async fn call(&self, _: Request<Script>) -> Result<Response<Answer>, Status> {
        let mut status = Status::unavailable("overloaded: come back later");
        status
            .metadata_mut()
            .insert(RETRY_PUSHBACK, self.0.parse().unwrap());
        Err(status)
    }

    type StreamStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Answer, Status>> + Send>>;

    async fn stream(&self, _: Request<Script>) -> Result<Response<Self::StreamStream>, Status> {
        Err(Status::unimplemented("no streams here"))
    }
}

async fn serve(pushback: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(FlakyServer::new(Shedding(pushback)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

#[tokio::test]
async fn a_servers_pushback_sets_the_client_breakers_open_period() {
    for (pushback, expected) in [
        ("90000", Duration::from_secs(90)),
        ("-1", Duration::from_secs(300)), // do not retry: as long as the breaker allows
        ("100", Duration::from_secs(10)), // shorter than its own period: its own stands
    ] {
        let addr = serve(pushback).await;
        let breaker = Arc::new(
            CircuitBreaker::builder_with_clock(ManualClock::new())
                .consecutive_failures(1)
                .open_duration(Duration::from_secs(10))
                .max_pushback(Duration::from_secs(300))
                .build()
                .unwrap(),
        );
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = FlakyClient::new(
            tower::ServiceBuilder::new()
                .layer(GrpcBreakerLayer::new(breaker.clone()))
                .service(channel),
        );
        let status = client.call(Script::default()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(breaker.retry_after(), Some(expected), "pushback {pushback}");
    }
}
