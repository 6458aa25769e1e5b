//! From the Go tutorial "Implementing Circuit Breaker Pattern in Go" (its gRPC unary and
//! stream interceptors), in Rust with tonic: the server's handlers behind a breaker layer
//! (unary and streaming calls recorded by their status), a client whose channel has its own
//! breaker, and an admission-only interceptor.
//!
//! Three modes:
//!
//! - no argument: a real server and client on loopback tell the story on simulated breaker
//!   time, so the run is instant and prints the same story every time;
//! - `serve`: the `flaky.Flaky` service (`crates/grpc-fixture/proto/flaky.proto`) on a real
//!   clock, on 127.0.0.1:50051 (`--listen`), until stopped; type `fail`, `hang` or `recover`
//!   to make its handler fail, hang or answer, and watch the server's breaker trip, refuse
//!   with `UNAVAILABLE` and `grpc-retry-pushback-ms`, and recover, from any gRPC client
//!   (grpcurl, Python's grpcio, this example's `client` mode);
//! - `client`: calls `flaky.Flaky/Call` at any address (`--connect`) twice a second through
//!   a client breaker, and says for each call what happened.
//!
//! Run: `cargo run -p breaker-examples --bin grpc` (or `-- serve`, `-- client`, `-- --help`)

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, State};
use breaker_examples::{Args, PrintTransitions, StartupError, exit_code, stdin_lines};
use breaker_tonic::{BreakerInterceptor, GrpcBreakerLayer, retry_pushback};
use grpc_fixture::{Answer, Flaky, FlakyClient, FlakyServer, FlakyService, Script};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Request, Response, Status};
use tower::Layer;

const USAGE: &str = "
grpc: tonic's server and client behind circuit breakers (breaker-tonic).

Usage: grpc                              the story, on simulated time (instant)
       grpc serve [--listen ADDR]        serve flaky.Flaky until stopped
       grpc client [--connect ADDR] [--every MILLISECONDS] [--calls N]
                                         call flaky.Flaky/Call through a client breaker

serve: listens on ADDR (default 127.0.0.1:50051; 127.0.0.1:0 for any free port) with a real
  clock. Its breaker opens after 3 failures in a row (a failing status, or a call that outlives
  its deadline: the client's grpc-timeout, at most 2 s) and refuses calls for 5 s with
  UNAVAILABLE and grpc-retry-pushback-ms, without calling the handler; then one call probes.
  Commands on standard input:
    fail      the handler answers UNAVAILABLE (its own dependency is down)
    hang      the handler never answers (calls end at their deadline, at most 2 s)
    recover   the handler answers again (as each call's Script asks: a code, a delay)
    state     the breaker's state and the calls that reached the handler
    quit
  From another terminal, with grpcurl (the proto is in crates/grpc-fixture/proto):
    grpcurl -plaintext -import-path crates/grpc-fixture/proto -proto flaky.proto \\
        -d '{}' 127.0.0.1:50051 flaky.Flaky/Call
  or any gRPC client generated from flaky.proto (Python's grpcio, ...), or `grpc client`.

client: calls ADDR (default 127.0.0.1:50051; a URL, http://HOST:PORT, works too) every
  MILLISECONDS (default 500), N times (default: until Ctrl-C), each call with a 2 s deadline,
  through a breaker on the channel (3 failures in a row open it for 5 s). Prints, per call,
  what came back: an answer, the server's error, the server breaker's refusal (with its
  pushback), or that the client's own breaker did not send it.
";

const DEFAULT_ADDR: &str = "127.0.0.1:50051";
/// The longest a call may take on the server: tonic's timeout, and the breaker's.
const SERVER_TIMEOUT: Duration = Duration::from_secs(2);

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

fn main() -> std::process::ExitCode {
    exit_code(run())
}

#[tokio::main(flavor = "current_thread")]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(USAGE, &["--listen", "--connect", "--every", "--calls"])?;
    match args.positional(0) {
        None => story().await,
        Some("serve") => serve(&args).await,
        Some("client") => client(&args).await,
        Some(other) => Err(StartupError::new(format!(
            "unknown mode {other:?}: serve, client, or none for the story (see --help)"
        ))
        .into()),
    }
}

/// What the handler of `serve` does when called.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Mode {
    Answer = 0,
    Fail = 1,
    Hang = 2,
}

/// The served handler: the scripted service, or a failure, or nothing at all, as told.
#[derive(Clone)]
struct Handler {
    scripted: FlakyService,
    mode: Arc<AtomicU8>,
    /// Calls that reached the handler (failing and hanging ones too).
    calls: Arc<AtomicU64>,
}

impl Handler {
    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            1 => Mode::Fail,
            2 => Mode::Hang,
            _ => Mode::Answer,
        }
    }

    /// Fails or hangs when told to; `Ok` when the scripted service should answer.
    async fn as_told(&self) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.mode() {
            Mode::Answer => Ok(()),
            Mode::Fail => Err(Status::unavailable(
                "the handler's own dependency is down (the server was told `fail`)",
            )),
            Mode::Hang => std::future::pending().await,
        }
    }
}

#[tonic::async_trait]
impl Flaky for Handler {
    async fn call(&self, request: Request<Script>) -> Result<Response<Answer>, Status> {
        self.as_told().await?;
        self.scripted.call(request).await
    }

    type StreamStream = Pin<Box<dyn Stream<Item = Result<Answer, Status>> + Send>>;

    async fn stream(
        &self,
        request: Request<Script>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        self.as_told().await?;
        self.scripted.stream(request).await
    }
}

/// A breaker on the system's clock for the live modes: 3 failures in a row open it for 5 s.
fn live_breaker(
    name: &'static str,
) -> Result<Arc<CircuitBreaker<breaker_core::MonotonicClock, PrintTransitions>>, StartupError> {
    CircuitBreaker::builder()
        .name(name)
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(5))
        .observer(PrintTransitions::new())
        .build()
        .map(Arc::new)
        .map_err(|e| StartupError::new("invalid breaker settings").because(e))
}

async fn serve(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let listen = args.value("--listen").unwrap_or(DEFAULT_ADDR);
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            "another program (another `grpc serve`?) listens there: stop it, or pass --listen \
             127.0.0.1:0 for any free port"
        } else {
            "pass --listen HOST:PORT with an address of this machine"
        };
        StartupError::new(format!("cannot listen on {listen}: {hint}")).because(e)
    })?;
    let addr = listener.local_addr()?;
    let breaker = live_breaker("server")?;
    let handler = Handler {
        scripted: FlakyService::default(),
        mode: Arc::new(AtomicU8::new(Mode::Answer as u8)),
        calls: Arc::default(),
    };
    // Only flaky.Flaky is guarded; tonic's timeout ends hanging calls, and the breaker knows
    // it, so they count as timed out.
    let guarded = GrpcBreakerLayer::new(breaker.clone())
        .timeout(SERVER_TIMEOUT)?
        .layer(FlakyServer::new(handler.clone()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::builder()
            .timeout(SERVER_TIMEOUT)
            .add_service(guarded)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    println!("serving flaky.Flaky on {addr} (crates/grpc-fixture/proto/flaky.proto)");
    println!("server breaker: 3 failures in a row open it for 5 s; calls time out after 2 s");
    println!("commands: fail, hang, recover, state, quit");
    let mut commands = stdin_lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            line = commands.recv(), if stdin_open => {
                let Some(line) = line else {
                    stdin_open = false; // serve until Ctrl-C
                    continue;
                };
                let told = |mode: Mode, says: &str| {
                    handler.mode.store(mode as u8, Ordering::SeqCst);
                    println!("handler: {says}");
                };
                match line.trim() {
                    "fail" => told(Mode::Fail, "fails (UNAVAILABLE)"),
                    "hang" => told(Mode::Hang, "hangs (calls end at their deadline, at most 2 s)"),
                    "recover" => told(Mode::Answer, "answers"),
                    "state" => println!(
                        "server breaker: {}; calls that reached the handler: {}",
                        breaker.state(),
                        handler.calls.load(Ordering::SeqCst)
                    ),
                    "quit" => break,
                    "" => {}
                    other => println!("unknown command {other:?}: fail, hang, recover, state, quit"),
                }
            }
        }
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}

async fn client(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let connect = args.value("--connect").unwrap_or(DEFAULT_ADDR);
    let url = if connect.contains("://") {
        connect.to_string()
    } else {
        format!("http://{connect}")
    };
    let every = args
        .parsed::<u64>("--every", "milliseconds between calls, more than 0")?
        .unwrap_or(500);
    if every == 0 {
        return Err(
            StartupError::new("--every 0: give milliseconds between calls, more than 0").into(),
        );
    }
    let calls = args.parsed::<u64>("--calls", "a number of calls")?;
    let endpoint = Endpoint::from_shared(url.clone()).map_err(|e| {
        StartupError::new(format!(
            "--connect {connect:?} is not an address: give HOST:PORT or http://HOST:PORT"
        ))
        .because(e)
    })?;
    // Connects on the first call, and again after a failure: a server that is down is a
    // failure the breaker counts, not a startup error.
    let channel = endpoint
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    let breaker = live_breaker("client")?;
    let mut client = FlakyClient::new(
        tower::ServiceBuilder::new()
            .layer(GrpcBreakerLayer::new(breaker.clone()))
            .service(channel),
    );
    println!("calling flaky.Flaky/Call at {url} every {every} ms through a client breaker");
    println!("client breaker: 3 failures in a row open it for 5 s");
    let mut tick = tokio::time::interval(Duration::from_millis(every));
    let mut n = 0;
    while calls.is_none_or(|calls| n < calls) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {}
        }
        n += 1;
        let refused_before = breaker.snapshot().totals.rejected;
        let mut request = Request::new(Script::default());
        request.set_timeout(SERVER_TIMEOUT);
        let what = match client.call(request).await {
            Ok(answer) => format!("ok (n = {})", answer.into_inner().n),
            Err(status) if breaker.snapshot().totals.rejected > refused_before => format!(
                "not sent: the client breaker is {} (retry {})",
                breaker.state(),
                retry_pushback(&status).map_or("later".to_string(), |after| {
                    format!("in {:.1} s", after.as_secs_f64())
                })
            ),
            Err(status) => match retry_pushback(&status) {
                Some(after) => format!(
                    "{:?} from the server's breaker (retry in {:.1} s): the handler was not \
                     called",
                    status.code(),
                    after.as_secs_f64()
                ),
                None => format!("{:?}: {}", status.code(), status.message()),
            },
        };
        println!("call {n}: {what}");
    }
    let s = breaker.snapshot();
    println!(
        "client breaker: {}; {} calls answered, {} failed, {} not sent",
        s.state, s.totals.successes, s.totals.failures, s.totals.rejected
    );
    Ok(())
}

async fn story() -> Result<(), Box<dyn std::error::Error>> {
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
