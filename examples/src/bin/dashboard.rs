//! A first look at `breaker-admin`: several breakers under simulated traffic whose
//! dependencies fail, slow down and recover on a schedule, served with the admin API, the
//! live event stream and the dashboard page. Prints the dashboard's URL and a demo operator
//! token, and runs until stopped (Ctrl-C), or for `--serve-for SECONDS`.
//!
//! Run: `cargo run -p breaker-examples --bin dashboard` and open the printed URL; paste the
//! token into the page for the operator buttons. `--port N` picks the port (default 3000;
//! 0: any free port). `BREAKER_ADMIN_TOKEN` sets the token instead of a random one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use breaker_admin::{Admin, AdminObserver, Token};
use breaker_core::{CircuitBreaker, MonotonicClock, Outcome, Registry};
use breaker_examples::{StartupError, exit_code};
use breaker_tower::KeyedRegistry;

type Breaker = CircuitBreaker<MonotonicClock, AdminObserver>;

/// How a dependency behaves at a moment: the chance a call fails, the chance it is slow,
/// and how long a slow call takes.
#[derive(Clone, Copy)]
struct Health {
    failures: f64,
    slow: f64,
    slow_ms: u64,
}

const HEALTHY: Health = Health {
    failures: 0.02,
    slow: 0.02,
    slow_ms: 400,
};

/// Each dependency's weather, `t` seconds into the run: outages and slow spells that come
/// and go, so every state shows up within a couple of minutes.
fn weather(dependency: &str, t: f64) -> Health {
    let phase = |period: f64| t % period;
    match dependency {
        // An outage of 25 s every 90 s, then a wobbly recovery.
        "payments" => match phase(90.0) {
            p if (40.0..65.0).contains(&p) => Health {
                failures: 0.8,
                ..HEALTHY
            },
            p if (65.0..75.0).contains(&p) => Health {
                failures: 0.15,
                ..HEALTHY
            },
            _ => HEALTHY,
        },
        // Slow for 20 s of every 60 s: the slow-call rule trips it.
        "recommendations" => match phase(60.0) {
            p if (25.0..45.0).contains(&p) => Health {
                slow: 0.85,
                slow_ms: 600,
                ..HEALTHY
            },
            _ => HEALTHY,
        },
        // Hard down for 12 s of every 75 s.
        "inventory" => match phase(75.0) {
            p if (15.0..27.0).contains(&p) => Health {
                failures: 1.0,
                ..HEALTHY
            },
            _ => HEALTHY,
        },
        // A partial outage that stays under the threshold, then one that does not.
        "search" => match phase(120.0) {
            p if (30.0..60.0).contains(&p) => Health {
                failures: 0.25,
                ..HEALTHY
            },
            p if (80.0..100.0).contains(&p) => Health {
                failures: 0.6,
                ..HEALTHY
            },
            _ => HEALTHY,
        },
        "upstreams/b.example" => match phase(40.0) {
            p if (10.0..22.0).contains(&p) => Health {
                failures: 0.9,
                ..HEALTHY
            },
            _ => HEALTHY,
        },
        _ => HEALTHY,
    }
}

/// A small random source for the simulation (xorshift64*).
struct Dice(u64);

impl Dice {
    fn roll(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Calls `dependency` through `breaker` about 25 times a second, forever: each call takes
/// its time (a slow one sleeps) and fails as the weather says.
async fn traffic(dependency: String, breaker: Arc<Breaker>, started: Instant, seed: u64) {
    let mut dice = Dice(seed | 1);
    let mut tick = tokio::time::interval(Duration::from_millis(40));
    loop {
        tick.tick().await;
        let Ok(permit) = breaker.try_acquire_owned() else {
            continue; // rejected: a fallback would answer here
        };
        let health = weather(&dependency, started.elapsed().as_secs_f64());
        let (fails, slow) = (dice.roll() < health.failures, dice.roll() < health.slow);
        let took = Duration::from_millis(if slow {
            health.slow_ms
        } else {
            5 + (dice.roll() * 30.0) as u64
        });
        tokio::spawn(async move {
            tokio::time::sleep(took).await;
            let outcome = if fails {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            permit.record(outcome); // the permit times the call
        });
    }
}

/// A token nobody can guess (or `BREAKER_ADMIN_TOKEN`).
fn demo_token() -> String {
    if let Ok(token) = std::env::var("BREAKER_ADMIN_TOKEN") {
        return token;
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> std::process::ExitCode {
    exit_code(run())
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match arg("--port") {
        None => 3000,
        Some(p) => p.parse().map_err(|_| {
            StartupError::new(format!(
                "--port {p:?}: expected a port number (0 for any free one)"
            ))
        })?,
    };
    let serve_for = arg("--serve-for")
        .map(|s| s.parse().map(Duration::from_secs))
        .transpose()?;
    let token = demo_token();

    let registry = Arc::new(Registry::new());
    let admin = Admin::builder(registry.clone())
        .operator_token(Token::new("demo-operator", &token)?)
        .history(Duration::from_secs(120))
        .build()?;

    let breakers: Vec<(&str, Arc<Breaker>)> = vec![
        (
            "payments",
            Arc::new(
                CircuitBreaker::builder()
                    .name("payments")
                    .count_window(50)
                    .minimum_calls(20)
                    .failure_rate(50.0)
                    .exponential_open_duration(Duration::from_secs(8), 2.0, Duration::from_secs(30))
                    .half_open_probes(3)
                    .observer(admin.observer())
                    .build()?,
            ),
        ),
        (
            "search",
            Arc::new(
                CircuitBreaker::builder()
                    .name("search")
                    .time_window(Duration::from_secs(20), 10)
                    .minimum_calls(20)
                    .failure_rate(40.0)
                    .open_duration(Duration::from_secs(6))
                    .observer(admin.observer())
                    .build()?,
            ),
        ),
        (
            "inventory",
            Arc::new(
                CircuitBreaker::builder()
                    .name("inventory")
                    .consecutive_failures(5)
                    .open_duration(Duration::from_secs(5))
                    .observer(admin.observer())
                    .build()?,
            ),
        ),
        (
            "recommendations",
            Arc::new(
                CircuitBreaker::builder()
                    .name("recommendations")
                    .count_window(40)
                    .minimum_calls(20)
                    .failure_rate(50.0)
                    .slow_calls(Duration::from_millis(300), 60.0)
                    .open_duration(Duration::from_secs(7))
                    .observer(admin.observer())
                    .build()?,
            ),
        ),
    ];
    let started = Instant::now();
    for (i, (name, breaker)) in breakers.iter().enumerate() {
        registry.register(*name, breaker.clone())?;
        tokio::spawn(traffic(
            name.to_string(),
            breaker.clone(),
            started,
            0x9e37_79b9 + i as u64,
        ));
    }
    // Per-host breakers of an outbound client: a keyed group, members as `upstreams/<host>`.
    let observer = admin.observer();
    let upstreams = Arc::new(KeyedRegistry::new(100, move |host: &String| {
        CircuitBreaker::builder()
            .name(format!("upstreams/{host}"))
            .consecutive_failures(4)
            .open_duration(Duration::from_secs(4))
            .thread_counters(0)
            .observer(observer.clone())
            .build()
            .expect("valid settings")
    })?);
    registry.register_group("upstreams", upstreams.clone())?;
    for (i, host) in ["a.example", "b.example", "c.example"]
        .into_iter()
        .enumerate()
    {
        tokio::spawn(traffic(
            format!("upstreams/{host}"),
            upstreams.get(host),
            started,
            0x5151_0000 + i as u64,
        ));
    }

    let app = Router::new()
        .route("/", get(|| async { Redirect::to("/admin/dashboard") }))
        .nest("/admin", admin.router());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                "another program (another dashboard?) listens there: stop it, or pass --port \
                 with another port (0 for any free one)"
            } else {
                "pass --port with another port (0 for any free one)"
            };
            StartupError::new(format!("cannot listen on 127.0.0.1:{port}: {hint}")).because(e)
        })?;
    let addr = listener.local_addr()?;
    println!("breaker dashboard: http://{addr}/admin/dashboard");
    println!("operator token (demo): {token}");
    println!("  paste it into the page for the operator buttons, or:");
    println!(
        "  curl -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n    -d '{{\"action\": \"force_open\", \"reason\": \"trying it\"}}' http://{addr}/admin/breakers/inventory"
    );
    println!("Ctrl-C to stop");
    let stop = async move {
        match serve_for {
            Some(limit) => tokio::time::sleep(limit).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await?;
    Ok(())
}
