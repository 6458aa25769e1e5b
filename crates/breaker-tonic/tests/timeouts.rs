//! Outages that reach a gRPC caller without a failing status: tonic's own timeouts (answered
//! as `CANCELLED "Timeout expired"`), deadlines that drop a hanging server handler, a middle
//! tier whose upstream timed out, and a proxy's HTML error page instead of a gRPC answer.
//! Real tonic servers and clients (and a real HTTP/2 server answering like a proxy) over
//! loopback; breakers on the real monotonic clock, since the deadlines are real. Every wait
//! is bounded by a gRPC deadline or a server timeout of 100 ms; no assertion depends on how
//! long anything took.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use breaker_core::{CircuitBreaker, State};
use breaker_tonic::GrpcBreakerLayer;
use bytes::Bytes;
use grpc_fixture::{Answer, Flaky, FlakyClient, FlakyServer, FlakyService, Script};
use http_body_util::Full;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status};

const TIMEOUT: Duration = Duration::from_millis(100);

fn breaker(threshold: u32) -> Arc<CircuitBreaker> {
    Arc::new(
        CircuitBreaker::builder()
            .consecutive_failures(threshold)
            .open_duration(Duration::from_secs(60))
            .build()
            .unwrap(),
    )
}

/// A handler that takes ten seconds: longer than any deadline here.
fn hang() -> Script {
    Script {
        delay_ms: 10_000,
        ..Script::default()
    }
}

async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn guarded_client(
    addr: SocketAddr,
    b: &Arc<CircuitBreaker>,
) -> FlakyClient<breaker_tonic::GrpcBreaker<Channel, Arc<CircuitBreaker>>> {
    FlakyClient::new(
        tower::ServiceBuilder::new()
            .layer(GrpcBreakerLayer::new(b.clone()))
            .service(channel(addr).await),
    )
}

/// Waits (up to 5 s) until `b` is open: the server drops a timed-out call on its own
/// schedule, around the time its answer reaches the client.
async fn until_open(b: &CircuitBreaker) -> State {
    for _ in 0..500 {
        if b.state() == State::Open {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.state()
}

#[tokio::test]
async fn a_tonic_server_timeout_trips_the_client_breaker() {
    let (listener, addr) = listener().await;
    tokio::spawn(
        Server::builder()
            .timeout(TIMEOUT)
            .add_service(FlakyServer::new(FlakyService::default()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let client_breaker = breaker(3);
    let mut client = guarded_client(addr, &client_breaker).await;
    for _ in 0..3 {
        let status = client.call(hang()).await.unwrap_err();
        // What tonic answers when its own timeout fires.
        assert_eq!(
            (status.code(), status.message()),
            (Code::Cancelled, "Timeout expired")
        );
    }
    let s = client_breaker.snapshot();
    assert_eq!(s.state, State::Open, "{s:?}");
    assert_eq!((s.totals.failures, s.totals.ignored), (3, 0));
}

#[tokio::test]
async fn a_hanging_handler_whose_clients_set_deadlines_trips_the_server_breaker() {
    let (listener, addr) = listener().await;
    let server_breaker = breaker(3);
    let service = FlakyService::default();
    tokio::spawn(
        Server::builder()
            .layer(
                GrpcBreakerLayer::new(server_breaker.clone())
                    .min_peer_deadline(Duration::from_millis(50)),
            )
            .add_service(FlakyServer::new(service.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    // Unguarded client: only the server's breaker is under test.
    let mut client = FlakyClient::new(channel(addr).await);
    for _ in 0..3 {
        let mut request = Request::new(hang());
        request.set_timeout(TIMEOUT); // the `grpc-timeout` header
        let status = client.call(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    }
    assert_eq!(until_open(&server_breaker).await, State::Open);
    let s = server_breaker.snapshot();
    assert_eq!((s.totals.failures, s.totals.cancelled), (3, 0));
    // Open: the next call never reaches the handler.
    let before = service.calls();
    let status = client.call(Script::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(service.calls(), before);
}

#[tokio::test]
async fn a_server_timeout_set_on_the_layer_trips_the_server_breaker() {
    let (listener, addr) = listener().await;
    let server_breaker = breaker(2);
    tokio::spawn(
        Server::builder()
            .timeout(TIMEOUT)
            .layer(
                GrpcBreakerLayer::new(server_breaker.clone())
                    .timeout(TIMEOUT)
                    .unwrap(),
            )
            .add_service(FlakyServer::new(FlakyService::default()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = FlakyClient::new(channel(addr).await);
    for _ in 0..2 {
        client.call(hang()).await.unwrap_err();
    }
    assert_eq!(until_open(&server_breaker).await, State::Open);
}

/// A middle tier that forwards each call to an upstream through a channel with its own
/// `Endpoint::timeout`, and returns the upstream's status as its own (the `?` idiom).
struct MiddleTier {
    upstream: FlakyClient<Channel>,
}

#[tonic::async_trait]
impl Flaky for MiddleTier {
    async fn call(&self, request: Request<Script>) -> Result<Response<Answer>, Status> {
        let answer = self.upstream.clone().call(request.into_inner()).await?;
        Ok(Response::new(answer.into_inner()))
    }

    type StreamStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Answer, Status>> + Send>>;

    async fn stream(&self, _: Request<Script>) -> Result<Response<Self::StreamStream>, Status> {
        Err(Status::unimplemented("not forwarded"))
    }
}

#[tokio::test]
async fn a_middle_tier_whose_upstream_timed_out_trips_its_callers_breaker() {
    let (upstream_listener, upstream_addr) = listener().await;
    tokio::spawn(
        Server::builder()
            .add_service(FlakyServer::new(FlakyService::default()))
            .serve_with_incoming(TcpListenerStream::new(upstream_listener)),
    );
    let upstream = FlakyClient::new(
        Endpoint::from_shared(format!("http://{upstream_addr}"))
            .unwrap()
            .timeout(TIMEOUT)
            .connect()
            .await
            .unwrap(),
    );
    let (middle_listener, middle_addr) = listener().await;
    tokio::spawn(
        Server::builder()
            .add_service(FlakyServer::new(MiddleTier { upstream }))
            .serve_with_incoming(TcpListenerStream::new(middle_listener)),
    );
    let caller_breaker = breaker(2);
    let mut caller = guarded_client(middle_addr, &caller_breaker).await;
    for _ in 0..2 {
        // The caller's own deadline is far: the timeout was the middle tier's upstream's.
        let mut request = Request::new(hang());
        request.set_timeout(Duration::from_secs(30));
        let status = caller.call(request).await.unwrap_err();
        assert_eq!(status.message(), "Timeout expired");
    }
    assert_eq!(caller_breaker.state(), State::Open);
}

#[tokio::test]
async fn a_call_the_caller_gives_up_on_before_its_deadline_stays_neutral() {
    let (listener, addr) = listener().await;
    tokio::spawn(
        Server::builder()
            .add_service(FlakyServer::new(FlakyService::default()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let client_breaker = breaker(1);
    let mut client = guarded_client(addr, &client_breaker).await;
    let mut request = Request::new(hang());
    request.set_timeout(Duration::from_secs(30));
    // The caller stops waiting long before the deadline.
    let gave_up = tokio::time::timeout(TIMEOUT, client.call(request)).await;
    assert!(gave_up.is_err());
    // A server that cancels on its own is not a timeout either.
    let status = client
        .call(Script {
            code: Code::Cancelled as u32,
            ..Script::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Cancelled);
    let s = client_breaker.snapshot();
    assert_eq!(s.state, State::Closed, "{s:?}");
    assert_eq!(
        (s.totals.cancelled, s.totals.ignored, s.totals.failures),
        (1, 1, 0)
    );
}

/// An HTTP/2 server that answers every request like a proxy with no healthy upstream:
/// `status`, an HTML body, no `grpc-status`.
async fn proxy_answering(status: u16) -> SocketAddr {
    proxy_answering_with(status, None).await
}

/// [`proxy_answering`], with a `Retry-After` header.
async fn proxy_answering_with(status: u16, retry_after: Option<&'static str>) -> SocketAddr {
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| async move {
                    let page =
                        format!("<html><body><h1>{status}</h1>no healthy upstream</body></html>");
                    let mut answer = http::Response::builder()
                        .status(status)
                        .header("content-type", "text/html");
                    if let Some(wait) = retry_after {
                        answer = answer.header("retry-after", wait);
                    }
                    Ok::<_, Infallible>(answer.body(Full::new(Bytes::from(page))).unwrap())
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_proxys_error_page_counts_as_its_grpc_status() {
    for status in [502, 503, 504, 429] {
        let addr = proxy_answering(status).await;
        let b = breaker(3);
        let mut client = guarded_client(addr, &b).await;
        for _ in 0..3 {
            let answer = client.call(Script::default()).await.unwrap_err();
            assert_ne!(answer.code(), Code::Ok);
        }
        let s = b.snapshot();
        assert_eq!(s.state, State::Open, "HTTP {status}: {s:?}");
        assert_eq!((s.totals.failures, s.totals.cancelled), (3, 0));
    }
    // A 404 page maps to UNIMPLEMENTED: the caller's mistake, not an outage.
    let addr = proxy_answering(404).await;
    let b = breaker(1);
    let mut client = guarded_client(addr, &b).await;
    client.call(Script::default()).await.unwrap_err();
    let s = b.snapshot();
    assert_eq!((s.state, s.totals.successes), (State::Closed, 1));
}

/// A proxy shedding load says when to come back: its `Retry-After` keeps the client's breaker
/// open that long (200 s here, against an open period of 60 s).
#[tokio::test]
async fn a_proxys_retry_after_keeps_the_breaker_open_that_long() {
    let addr = proxy_answering_with(503, Some("200")).await;
    let b = breaker(3);
    let mut client = guarded_client(addr, &b).await;
    for _ in 0..3 {
        client.call(Script::default()).await.unwrap_err();
    }
    assert_eq!(b.state(), State::Open);
    let open = b.retry_after().unwrap();
    assert!(open > Duration::from_secs(190), "{open:?}");
}

/// A server that answers like a load balancer's maintenance page: `200`, an HTML body, no
/// `grpc-status`. tonic fails to decode it and drops it; it is still an answer that counts.
#[tokio::test]
async fn a_maintenance_page_served_as_200_counts_as_a_failure() {
    let addr = proxy_answering(200).await;
    let b = breaker(3);
    let mut client = guarded_client(addr, &b).await;
    for _ in 0..3 {
        client.call(Script::default()).await.unwrap_err();
    }
    let s = b.snapshot();
    assert_eq!(s.state, State::Open, "{s:?}");
    assert_eq!((s.totals.failures, s.totals.cancelled), (3, 0));
}

/// A server cannot be opened by clients with absurd deadlines: a `grpc-timeout` under the
/// layer's floor (100 ms by default) is not held against the handler when it passes.
#[tokio::test]
async fn a_peers_tiny_deadlines_do_not_trip_the_server_breaker() {
    let (listener, addr) = listener().await;
    let server_breaker = breaker(3);
    tokio::spawn(
        Server::builder()
            .layer(GrpcBreakerLayer::new(server_breaker.clone()))
            .add_service(FlakyServer::new(FlakyService::default()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = FlakyClient::new(channel(addr).await);
    for timeout in [
        Duration::from_nanos(1),
        Duration::from_millis(1),
        Duration::from_millis(20),
    ] {
        for _ in 0..3 {
            let mut request = Request::new(Script {
                delay_ms: 50,
                ..Script::default()
            });
            request.set_timeout(timeout);
            client.call(request).await.unwrap_err();
        }
    }
    // Let the server drop the last calls; none may count.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = server_breaker.snapshot();
    assert_eq!(s.state, State::Closed, "{s:?}");
    assert_eq!(s.totals.failures, 0, "{s:?}");
}

/// A client that gives up at its own deadline (as grpc-go, grpc-java and grpcio do: they
/// cancel with a timer of their own, started before the request left) is counted by the
/// server, although the server's clock for the call started a little later: a deadline
/// from a peer counts from a little before it ends (2 %, at least 5 ms).
#[tokio::test]
async fn a_client_cancelling_at_its_deadline_trips_the_server_breaker() {
    let (listener, addr) = listener().await;
    let server_breaker = breaker(3);
    tokio::spawn(
        Server::builder()
            .layer(GrpcBreakerLayer::new(server_breaker.clone()))
            .add_service(FlakyServer::new(FlakyService::default()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = FlakyClient::new(channel(addr).await);
    let deadline = Duration::from_secs(1);
    for _ in 0..3 {
        let mut request = Request::new(hang());
        request.set_timeout(deadline);
        // The client's own timer, from before the request is sent, cancels the call (an
        // RST_STREAM) just before the deadline: before tonic's timer on the server, which
        // starts later, can answer.
        let gave_up = tokio::time::timeout(deadline * 99 / 100, client.call(request)).await;
        assert!(gave_up.is_err());
    }
    assert_eq!(until_open(&server_breaker).await, State::Open);
}

/// tonic's timeouts cover a call's answer (its headers), not a streamed body: a long
/// stream that its client stops reading after data came is not a failure of the server.
#[tokio::test]
async fn a_long_stream_its_client_closes_is_not_a_failure() {
    let (listener, addr) = listener().await;
    let server_breaker = breaker(1);
    tokio::spawn(
        Server::builder()
            .timeout(TIMEOUT)
            .layer(
                GrpcBreakerLayer::new(server_breaker.clone())
                    .timeout(TIMEOUT)
                    .unwrap(),
            )
            .add_service(FlakyServer::new(FlakyService::default()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let client_breaker = breaker(1);
    let mut client = guarded_client(addr, &client_breaker).await;
    let mut stream = client
        .stream(Script {
            items: 3,
            delay_ms: 0,
            ..Script::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
    // Read past both timeouts, then stop reading.
    tokio::time::sleep(TIMEOUT * 3).await;
    drop(stream);
    tokio::time::sleep(TIMEOUT).await;
    for (side, b) in [("server", &server_breaker), ("client", &client_breaker)] {
        let s = b.snapshot();
        assert_eq!(s.state, State::Closed, "{side}: {s:?}");
        assert_eq!(s.totals.failures, 0, "{side}: {s:?}");
    }
}

#[test]
fn a_zero_timeout_is_refused_naming_the_field() {
    let err = GrpcBreakerLayer::new(breaker(1))
        .timeout(Duration::ZERO)
        .unwrap_err();
    assert_eq!(err.field(), "timeout");
}
