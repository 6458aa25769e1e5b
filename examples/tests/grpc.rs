//! The `grpc` example's live modes driven as a user would, over loopback:
//!
//! - `serve` called by a client nobody here wrote, Python's grpcio (generic calls on
//!   `/flaky.Flaky/Call`, no generated code), while the server is told on standard input to
//!   fail, hang and recover: the client sees the handler's errors, then the breaker's
//!   refusals with `grpc-retry-pushback-ms` (the handler not called), then answers again;
//! - `client` pointed at an address where nothing listens yet: its breaker opens on the
//!   connection errors and stops sending; a server started there later brings it back; a
//!   server told to fail opens it again.
//!
//! Waits are bounded (the breakers' open periods, on the processes' own clocks, are the
//! subject); every process is stopped at the end, on panic too.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Running, free_port, require};

const LIMIT: Duration = Duration::from_secs(30);

/// A gRPC client over grpcio: one line per call on standard input (`call [TIMEOUT_S]`), one
/// line per answer: `OK <answer bytes in hex>` or `ERR <CODE> pushback=<ms or -> <details>`.
const PYTHON_CLIENT: &str = r#"
import sys
try:
    import grpc
except ImportError:
    print("NO-GRPCIO", flush=True)
    sys.exit(3)
channel = grpc.insecure_channel(sys.argv[1])
call = channel.unary_unary("/flaky.Flaky/Call")  # bytes in, bytes out
print("ready", flush=True)
for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    timeout = float(words[1]) if len(words) > 1 else 5.0
    try:
        print("OK", call(b"", timeout=timeout).hex(), flush=True)
    except grpc.RpcError as e:
        metadata = dict(e.initial_metadata() or ())
        metadata.update(dict(e.trailing_metadata() or ()))
        pushback = metadata.get("grpc-retry-pushback-ms", "-")
        print("ERR", e.code().name, "pushback=" + pushback, e.details(), flush=True)
"#;

fn serve(port: u16) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_grpc"));
    command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    let mut server = Running::start(command);
    server.wait_for("serving flaky.Flaky on", LIMIT);
    server
}

fn python_client(port: u16) -> Running {
    let python = require("python3", "Debian's python3 (apt-get install python3)");
    let mut command = Command::new(python);
    command
        .args(["-c", PYTHON_CLIENT, &format!("127.0.0.1:{port}")])
        .env("GRPC_VERBOSITY", "NONE");
    let mut client = Running::start(command);
    let first = client.wait_until("ready", LIMIT, |_| true);
    assert_eq!(
        first, "ready",
        "Python's grpcio is not installed: this test needs it; install it with \
         `pip install grpcio` (.ci/run does)"
    );
    client
}

/// One call from the Python client; its answer line.
fn call(client: &mut Running, timeout_s: f64) -> String {
    client.send(&format!("call {timeout_s}"));
    client.wait_until("an answer", LIMIT, |l| {
        l.starts_with("OK ") || l.starts_with("ERR ")
    })
}

/// The pushback of a breaker's refusal, in milliseconds; panics if `answer` is not one.
fn refusal(answer: &str) -> u64 {
    let rest = answer
        .strip_prefix("ERR UNAVAILABLE pushback=")
        .unwrap_or_else(|| panic!("not a refusal: {answer}"));
    let (ms, details) = rest.split_once(' ').expect("details");
    assert!(
        details.starts_with("circuit breaker open: the call was not sent"),
        "{answer}"
    );
    ms.parse()
        .unwrap_or_else(|_| panic!("no pushback in a refusal: {answer}"))
}

/// Calls until one is answered, within the limit (the server's open period must end first);
/// every call before it is a refusal with a pushback of at most the open period.
fn until_answered(client: &mut Running) {
    let start = Instant::now();
    loop {
        let answer = call(client, 5.0);
        if answer == "OK 0801" {
            return;
        }
        let pushback = refusal(&answer);
        assert!(pushback > 0 && pushback <= 5_100, "{answer}");
        assert!(
            start.elapsed() < LIMIT,
            "not answered within {LIMIT:?}: {answer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn handler_calls(server: &mut Running) -> u64 {
    server.send("state");
    let line = server.wait_for("calls that reached the handler: ", LIMIT);
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn python_grpcio_watches_the_server_breaker_trip_on_failures_and_hangs_refuse_and_recover() {
    let port = free_port();
    let mut server = serve(port);
    let mut client = python_client(port);
    assert_eq!(call(&mut client, 5.0), "OK 0801");

    // The handler fails: three failures, then refusals that never reach it.
    server.send("fail");
    server.wait_for("handler: fails", LIMIT);
    for _ in 0..3 {
        assert_eq!(
            call(&mut client, 5.0),
            "ERR UNAVAILABLE pushback=- the handler's own dependency is down (the server was \
             told `fail`)"
        );
    }
    server.wait_for("breaker server: closed -> open", LIMIT);
    let before = handler_calls(&mut server);
    assert_eq!(before, 4);
    let pushback = refusal(&call(&mut client, 5.0));
    // At most the open period, give or take the few milliseconds a coarse clock reading lags.
    assert!(pushback > 0 && pushback <= 5_100, "{pushback}");
    assert_eq!(
        handler_calls(&mut server),
        before,
        "a refused call is not handled"
    );

    // It recovers: refused until the open period ends, then the probe is answered.
    server.send("recover");
    server.wait_for("handler: answers", LIMIT);
    until_answered(&mut client);
    server.wait_for("breaker server: half_open -> closed", LIMIT);

    // The handler hangs: calls end at the client's deadline (1 s), and count as failures.
    server.send("hang");
    server.wait_for("handler: hangs", LIMIT);
    for _ in 0..3 {
        let answer = call(&mut client, 1.0);
        assert!(answer.starts_with("ERR DEADLINE_EXCEEDED "), "{answer}");
    }
    server.wait_for("breaker server: closed -> open", LIMIT);
    refusal(&call(&mut client, 5.0));
    server.send("recover");
    until_answered(&mut client);

    server.send("quit");
    assert!(server.finish(LIMIT).success());
}

#[test]
fn the_client_breaker_opens_on_an_absent_server_recovers_when_it_comes_and_opens_on_its_failures() {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_grpc"));
    command.args([
        "client",
        "--connect",
        &format!("127.0.0.1:{port}"),
        "--every",
        "100",
    ]);
    let mut client = Running::start(command);

    // Nothing listens there: the connection errors open the client's breaker, which then
    // stops sending.
    client.wait_for("breaker client: closed -> open", LIMIT);
    client.wait_for("not sent: the client breaker is open (retry in", LIMIT);

    // A server comes: the next probe after the open period reaches it and closes the breaker.
    let mut server = serve(port);
    client.wait_for("breaker client: half_open -> closed", LIMIT);
    client.wait_for("ok (n = 1)", LIMIT);

    // The server's handler fails: the client's breaker counts its errors and opens again.
    server.send("fail");
    client.wait_for("Unavailable: the handler's own dependency is down", LIMIT);
    client.wait_for("breaker client: closed -> open", LIMIT);
    client.wait_for("not sent: the client breaker is open", LIMIT);
}
