//! Real tonic over loopback: a generated client and a real server, the flaky service's call
//! counter as witness. Breaker time on the manual clock; the only real waits are bounded by
//! gRPC deadlines.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, State};
use breaker_tonic::{
    BreakerInterceptor, GrpcBreakerLayer, KeyBy, KeyedGrpcBreakerLayer, retry_pushback,
};
use breaker_tower::KeyedRegistry;
use grpc_fixture::{FlakyClient, FlakyServer, FlakyService, Script};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Server};

const OPEN: Duration = Duration::from_secs(10);

type Breaker = Arc<CircuitBreaker<ManualClock>>;

fn breaker(clock: &ManualClock, threshold: u32) -> Breaker {
    Arc::new(
        CircuitBreaker::builder_with_clock(clock.clone())
            .consecutive_failures(threshold)
            .open_duration(OPEN)
            .build()
            .unwrap(),
    )
}

/// A real server on a loopback port.
async fn serve(service: FlakyService) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(FlakyServer::new(service))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A generated client whose channel to `addr` is guarded by `b`.
async fn guarded_client(
    addr: SocketAddr,
    b: &Breaker,
) -> FlakyClient<breaker_tonic::GrpcBreaker<Channel, Breaker>> {
    FlakyClient::new(
        tower::ServiceBuilder::new()
            .layer(GrpcBreakerLayer::new(b.clone()))
            .service(channel(addr).await),
    )
}

fn script(code: Code) -> Script {
    Script {
        code: code as u32,
        ..Script::default()
    }
}

#[tokio::test]
async fn failures_trip_the_breaker_and_refused_calls_never_reach_the_server() {
    let service = FlakyService::default();
    let addr = serve(service.clone()).await;
    let clock = ManualClock::new();
    let b = breaker(&clock, 3);
    let mut client = guarded_client(addr, &b).await;
    client.call(script(Code::Ok)).await.unwrap();
    for _ in 0..3 {
        let status = client.call(script(Code::Unavailable)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
    }
    assert_eq!(b.state(), State::Open);
    assert_eq!(service.calls(), 4);

    for _ in 0..5 {
        let status = client.call(script(Code::Ok)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("circuit breaker open"),
            "{status:?}"
        );
        assert_eq!(retry_pushback(&status), Some(OPEN));
    }
    assert_eq!(service.calls(), 4, "refused calls never reached the server");

    clock.advance(OPEN + Duration::from_nanos(1));
    client.call(script(Code::Ok)).await.unwrap(); // the probe
    assert_eq!(b.state(), State::Closed);
    assert_eq!(service.calls(), 5);
}

#[tokio::test]
async fn callers_faults_are_successes_and_cancelled_is_ignored() {
    let addr = serve(FlakyService::default()).await;
    let clock = ManualClock::new();
    let b = breaker(&clock, 1);
    let mut client = guarded_client(addr, &b).await;
    for code in [
        Code::InvalidArgument,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::Unauthenticated,
        Code::FailedPrecondition,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Aborted,
        Code::Cancelled,
    ] {
        assert_eq!(client.call(script(code)).await.unwrap_err().code(), code);
    }
    let s = b.snapshot();
    assert_eq!(s.state, State::Closed);
    assert_eq!(
        (s.totals.successes, s.totals.ignored, s.totals.failures),
        (9, 1, 0)
    );
    for code in [
        Code::Internal,
        Code::Unknown,
        Code::DataLoss,
        Code::ResourceExhausted,
        Code::DeadlineExceeded,
    ] {
        b.reset();
        client.call(script(code)).await.unwrap_err();
        assert_eq!(b.state(), State::Open, "{code:?} is a failure");
    }
}

#[tokio::test]
async fn a_slow_answer_past_the_deadline_is_a_failure() {
    let addr = serve(FlakyService::default()).await;
    let b = breaker(&ManualClock::new(), 1);
    let mut client = guarded_client(addr, &b).await;
    let mut request = tonic::Request::new(Script {
        delay_ms: 2_000,
        ..Script::default()
    });
    request.set_timeout(Duration::from_millis(50));
    // tonic's client enforces the deadline itself: the channel's call ends with a transport
    // timeout (reported to the caller as CANCELLED, "Timeout expired"), which the layer sees
    // as a transport error: a failure.
    let status = client.call(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert!(status.message().contains("Timeout expired"), "{status:?}");
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.snapshot().totals.failures, 1);
}

#[tokio::test]
async fn a_stream_is_decided_by_the_status_in_its_trailers() {
    let addr = serve(FlakyService::default()).await;
    let b = breaker(&ManualClock::new(), 1);
    let mut client = guarded_client(addr, &b).await;
    // Five items, then OK in the trailers: a success, recorded at the end.
    let mut stream = client
        .stream(Script {
            items: 5,
            ..Script::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(item) = stream.next().await {
        item.unwrap();
        n += 1;
        assert_eq!(b.snapshot().totals.successes, 0, "not before the trailers");
    }
    assert_eq!(n, 5);
    assert_eq!(b.snapshot().totals.successes, 1);

    // Two items, then INTERNAL in the trailers: a failure, which trips a threshold of one.
    let mut stream = client
        .stream(Script {
            items: 5,
            code: Code::Internal as u32,
            fail_after: 2,
            ..Script::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(item) = stream.next().await {
        got.push(item.map(|a| a.n).map_err(|s| s.code()));
    }
    assert_eq!(got, [Ok(0), Ok(1), Err(Code::Internal)]);
    assert_eq!(b.state(), State::Open);
}

#[tokio::test]
async fn an_abandoned_stream_counts_nothing() {
    let addr = serve(FlakyService::default()).await;
    let b = breaker(&ManualClock::new(), 1);
    let mut client = guarded_client(addr, &b).await;
    let mut stream = client
        .stream(Script {
            items: 1_000,
            ..Script::default()
        })
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    let s = b.snapshot().totals;
    assert_eq!((s.successes, s.failures, s.cancelled), (0, 0, 1));
}

#[tokio::test]
async fn per_method_breakers_trip_independently() {
    let service = FlakyService::default();
    let addr = serve(service.clone()).await;
    let clock = ManualClock::new();
    let c = clock.clone();
    let registry = Arc::new(
        KeyedRegistry::new(64, move |_: &String| {
            CircuitBreaker::builder_with_clock(c.clone())
                .consecutive_failures(2)
                .build()
                .unwrap()
        })
        .unwrap(),
    );
    let mut client = FlakyClient::new(
        tower::ServiceBuilder::new()
            .layer(KeyedGrpcBreakerLayer::new(registry.clone(), KeyBy::Method))
            .service(channel(addr).await),
    );
    for _ in 0..2 {
        client.call(script(Code::Unavailable)).await.unwrap_err();
    }
    let refused = client.call(script(Code::Ok)).await.unwrap_err();
    assert!(
        retry_pushback(&refused).is_some(),
        "/Call is open: {refused:?}"
    );
    // /Stream has its own breaker, still closed.
    let mut stream = client
        .stream(Script {
            items: 2,
            ..Script::default()
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(item) = stream.next().await {
        item.unwrap();
    }
    let call = registry.peek(&"/flaky.Flaky/Call".to_string()).unwrap();
    let stream = registry.peek(&"/flaky.Flaky/Stream".to_string()).unwrap();
    assert_eq!((call.state(), stream.state()), (State::Open, State::Closed));
    assert_eq!(service.calls(), 3);
}

#[tokio::test]
async fn the_server_layer_answers_unavailable_without_calling_the_handler() {
    let service = FlakyService::default();
    let clock = ManualClock::new();
    let b = breaker(&clock, 2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .layer(GrpcBreakerLayer::new(b.clone()))
            .add_service(FlakyServer::new(service.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = FlakyClient::new(channel(addr).await);
    for _ in 0..2 {
        client.call(script(Code::Internal)).await.unwrap_err();
    }
    assert_eq!(b.state(), State::Open);
    for _ in 0..3 {
        let status = client.call(script(Code::Ok)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(retry_pushback(&status), Some(OPEN));
    }
    assert_eq!(service.calls(), 2, "the handler was not called while open");
    clock.advance(OPEN + Duration::from_nanos(1));
    client.call(script(Code::Ok)).await.unwrap();
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test]
async fn the_interceptor_refuses_while_open() {
    let service = FlakyService::default();
    let addr = serve(service.clone()).await;
    let b = breaker(&ManualClock::new(), 1);
    let mut client =
        FlakyClient::with_interceptor(channel(addr).await, BreakerInterceptor::new(b.clone()));
    client.call(script(Code::Ok)).await.unwrap();
    b.trip();
    let status = client.call(script(Code::Ok)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(retry_pushback(&status), Some(OPEN));
    assert_eq!(service.calls(), 1);
}

/// One service guarded on its own, added to the server beside the others.
#[tokio::test]
async fn a_single_service_can_be_guarded_on_the_server() {
    use tower::Layer;
    let service = FlakyService::default();
    let b = breaker(&ManualClock::new(), 1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(GrpcBreakerLayer::new(b.clone()).layer(FlakyServer::new(service.clone())))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = FlakyClient::new(channel(addr).await);
    client.call(script(Code::Unavailable)).await.unwrap_err();
    assert_eq!(b.state(), State::Open);
    let status = client.call(script(Code::Ok)).await.unwrap_err();
    assert!(retry_pushback(&status).is_some(), "{status:?}");
    assert_eq!(service.calls(), 1);
}
