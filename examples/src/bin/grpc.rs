//! From the Go tutorial "Implementing Circuit Breaker Pattern in Go" (its gRPC unary and
//! stream interceptors), in Rust with tonic: the server's handlers behind a breaker layer
//! (unary and streaming calls recorded by their status), a client whose channel has its own
//! breaker, and an admission-only interceptor.
//!
//! A real server and client on loopback; breaker time is simulated, so the run is instant and
//! prints the same story every time.
//!
//! Run: `cargo run -p breaker-examples --bin grpc`

use std::sync::Arc;
use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, State};
use breaker_tonic::{BreakerInterceptor, GrpcBreakerLayer, retry_pushback};
use grpc_fixture::{FlakyClient, FlakyServer, FlakyService, Script};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::{Endpoint, Server};

fn breaker(clock: &ManualClock, name: &'static str) -> Arc<CircuitBreaker<ManualClock>> {
    Arc::new(
        CircuitBreaker::builder_with_clock(clock.clone())
            .name(name)
            .consecutive_failures(3)
            .open_duration(Duration::from_secs(5))
            .build()
            .expect("valid settings"),
    )
}

fn failing(code: Code) -> Script {
    Script {
        code: code as u32,
        ..Script::default()
    }
}

fn show(what: &str, result: Result<String, tonic::Status>) {
    match result {
        Ok(answer) => println!("{what:<40} ok: {answer}"),
        Err(status) => match retry_pushback(&status) {
            Some(after) => println!(
                "{what:<40} {:?} from the breaker (retry after {after:?}): not sent",
                status.code()
            ),
            None => println!("{what:<40} {:?}: {}", status.code(), status.message()),
        },
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::new();

    // Server: every handler behind one breaker (the tutorial's unary and stream interceptors).
    let service = FlakyService::default();
    let server_breaker = breaker(&clock, "server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        Server::builder()
            .layer(GrpcBreakerLayer::new(server_breaker.clone()))
            .add_service(FlakyServer::new(service.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    // Client: its own breaker on the channel.
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let client_breaker = breaker(&clock, "client");
    let mut client = FlakyClient::new(
        tower::ServiceBuilder::new()
            .layer(GrpcBreakerLayer::new(client_breaker.clone()))
            .service(channel.clone()),
    );

    println!("-- unary calls --");
    let answer = |r: Result<tonic::Response<grpc_fixture::Answer>, tonic::Status>| {
        r.map(|a| format!("n = {}", a.into_inner().n))
    };
    show("call", answer(client.call(Script::default()).await));
    show(
        "call (NOT_FOUND: the caller's fault)",
        answer(client.call(failing(Code::NotFound)).await),
    );
    for i in 1..=3 {
        show(
            &format!("call {i} (the service is UNAVAILABLE)"),
            answer(client.call(failing(Code::Unavailable)).await),
        );
    }
    println!(
        "client breaker: {}, server breaker: {}",
        client_breaker.state(),
        server_breaker.state()
    );
    show(
        "call while open",
        answer(client.call(Script::default()).await),
    );
    println!(
        "calls that reached the handlers so far: {}",
        service.calls()
    );

    println!("\n-- 5 s later: a probe --");
    clock.advance(Duration::from_secs(5) + Duration::from_nanos(1));
    show("call (probe)", answer(client.call(Script::default()).await));
    println!(
        "client breaker: {}, server breaker: {}",
        client_breaker.state(),
        server_breaker.state()
    );

    println!("\n-- streaming: the status in the trailers decides --");
    let mut stream = client
        .stream(Script {
            items: 3,
            ..Script::default()
        })
        .await?
        .into_inner();
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item?.n);
    }
    println!("stream of 3                              items {items:?}, then OK in the trailers");
    let mut stream = client
        .stream(Script {
            items: 3,
            code: Code::Internal as u32,
            fail_after: 1,
            ..Script::default()
        })
        .await?
        .into_inner();
    while let Some(item) = stream.next().await {
        match item {
            Ok(a) => println!("stream failing midway                    item {}", a.n),
            Err(s) => println!(
                "stream failing midway                    {:?} in the trailers",
                s.code()
            ),
        }
    }
    let s = client_breaker.snapshot();
    println!(
        "client breaker: {} ({} successes, {} failures)",
        s.state, s.totals.successes, s.totals.failures
    );

    println!("\n-- the server side: its breaker refuses without calling the handler --");
    server_breaker.trip();
    let mut direct = FlakyClient::new(channel.clone());
    let before = service.calls();
    show(
        "call to a server whose breaker is open",
        answer(direct.call(Script::default()).await),
    );
    println!("handler calls: {before} before, {} after", service.calls());
    server_breaker.reset();

    println!("\n-- an admission-only interceptor on the client --");
    let gate = breaker(&clock, "gate");
    let mut gated = FlakyClient::with_interceptor(channel, BreakerInterceptor::new(gate.clone()));
    show(
        "call through the interceptor",
        answer(gated.call(Script::default()).await),
    );
    gate.force_open();
    show(
        "call while it is forced open",
        answer(gated.call(Script::default()).await),
    );
    assert_eq!(client_breaker.state(), State::Closed);
    Ok(())
}
