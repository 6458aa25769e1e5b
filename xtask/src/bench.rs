//! `cargo xtask bench`: run the criterion benchmarks and write docs/benchmarks.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::{root, run as cargo};

/// The circuit-breaker subjects, ours first, in report order, after the unguarded call.
const CLOSED_SUBJECTS: &[&str] = &[
    "direct_call",
    "ours_consecutive",
    "ours_consecutive_permit",
    "ours_count_window",
    "ours_time_window",
    "ours_time_window_coarse_clock",
    "recloser_sync",
    "recloser_async",
    "failsafe_default",
    "failsafe_consecutive",
];

/// The circuit-breaker subjects, ours first, in report order.
const BREAKERS: &[&str] = CLOSED_SUBJECTS.split_at(1).1;

/// (scenario, title, subjects) in report order.
const SCENARIOS: &[(&str, &str, &[&str])] = &[
    (
        "closed_1t",
        "closed, every call succeeds, one thread",
        CLOSED_SUBJECTS,
    ),
    (
        "closed_2t",
        "closed, every call succeeds, two threads on one breaker (per call per thread)",
        CLOSED_SUBJECTS,
    ),
    ("open_rejected", "open, every call rejected", BREAKERS),
    (
        "closed_10pct_failures",
        "closed, 10 % failures that do not trip",
        CLOSED_SUBJECTS,
    ),
    (
        "tower",
        "through a tower service around a ready inner service",
        &[
            "bare_service",
            "ours_layer",
            "ours_layer_static",
            "bare_service_in_place",
            "ours_layer_in_place",
            "ours_layer_static_in_place",
            "tower_resilience",
        ],
    ),
    (
        "redis_sharing",
        "a breaker alone and the same breaker shared through Redis (its sync task running)",
        &[
            "local_count_window",
            "shared_count_window",
            "local_open_rejected",
            "shared_open_rejected",
        ],
    ),
    (
        "admin",
        "a breaker without an admin, with `breaker-admin` mounted and served (its observer on the \
         breaker), and with ten dashboards reading the admin's event stream",
        &[
            "no_admin_closed",
            "admin_closed",
            "admin_10_dashboards_closed",
            "no_admin_open",
            "admin_open",
            "admin_10_dashboards_open",
        ],
    ),
    (
        "baseline",
        "baselines",
        &[
            "loop_only",
            "atomic_load",
            "atomic_fetch_add",
            "instant_now",
            "coarse_clock_now",
        ],
    ),
];

/// (what, scenario, ours, peer, limit on ours/peer).
const RATIO_TARGETS: &[(&str, &str, &str, &str, f64)] = &[
    (
        "closed, 1 thread, consecutive",
        "closed_1t",
        "ours_consecutive",
        "recloser_sync",
        0.25,
    ),
    (
        "closed, 1 thread, count window",
        "closed_1t",
        "ours_count_window",
        "recloser_sync",
        1.0,
    ),
    (
        "closed, 1 thread, time window, default clock",
        "closed_1t",
        "ours_time_window",
        "recloser_sync",
        1.0,
    ),
    (
        "closed, 2 threads, consecutive",
        "closed_2t",
        "ours_consecutive",
        "recloser_sync",
        0.1,
    ),
    (
        "closed, 2 threads, count window",
        "closed_2t",
        "ours_count_window",
        "recloser_sync",
        0.5,
    ),
    (
        "open, rejected, default configuration",
        "open_rejected",
        "ours_consecutive",
        "recloser_sync",
        0.3,
    ),
    (
        "tower layer",
        "tower",
        "ours_layer",
        "tower_resilience",
        0.1,
    ),
    (
        "Redis sharing on vs off, closed",
        "redis_sharing",
        "shared_count_window",
        "local_count_window",
        2.0,
    ),
    (
        "Redis sharing on vs off, open",
        "redis_sharing",
        "shared_open_rejected",
        "local_open_rejected",
        2.0,
    ),
    (
        "admin mounted, ten dashboards connected vs no admin, closed",
        "admin",
        "admin_10_dashboards_closed",
        "no_admin_closed",
        1.25,
    ),
    (
        "admin mounted, ten dashboards connected vs no admin, open",
        "admin",
        "admin_10_dashboards_open",
        "no_admin_open",
        1.25,
    ),
];

/// (what, scenario, ours, limit in ns).
const ABSOLUTE_TARGETS: &[(&str, &str, &str, f64)] = &[(
    "open, rejected, default configuration",
    "open_rejected",
    "ours_consecutive",
    10.0,
)];

/// (what, ours, base, limit in ns added) in the `tower` scenario.
const OVERHEAD_TARGETS: &[(&str, &str, &str, f64)] = &[
    (
        "tower layer over the bare service, `&'static` breaker",
        "ours_layer_static",
        "bare_service",
        10.0,
    ),
    (
        "tower layer over the bare service, `Arc` breaker",
        "ours_layer",
        "bare_service",
        10.0,
    ),
    (
        "tower layer over the bare service, `&'static` breaker, future polled in place",
        "ours_layer_static_in_place",
        "bare_service_in_place",
        10.0,
    ),
    (
        "tower layer over the bare service, `Arc` breaker, future polled in place",
        "ours_layer_in_place",
        "bare_service_in_place",
        10.0,
    ),
];

/// The end-to-end load test's goals: throughput lost and p99 latency added by the
/// middleware.
const LOAD_MAX_THROUGHPUT_LOSS: f64 = 0.03;
const LOAD_MAX_P99_ADDED_US: f64 = 20.0;

/// The keyed-registry memory goal: 100,000 per-host breakers.
const KEYED_100K_MAX_BYTES: f64 = 100e6;

/// Criterion's settings for `--quick` runs.
const QUICK_CRITERION: [&str; 6] = [
    "--warm-up-time",
    "0.5",
    "--measurement-time",
    "1",
    "--sample-size",
    "30",
];

pub(crate) fn run(quick: bool, no_run: bool) -> Result<(), String> {
    let root = root();
    let allocations_file = root.join("target/bench-allocations.tsv");
    let mut args = vec![
        "bench",
        "-p",
        "breaker-benches",
        "--bench",
        "breakers",
        "--",
        "--noplot",
    ];
    if quick {
        args.extend(QUICK_CRITERION);
    }
    let memory_file = root.join("target/bench-memory.tsv");
    let load_file = root.join("target/bench-axum-load.tsv");
    if !no_run {
        run_benches(&args, quick, &allocations_file, &memory_file, &load_file)?;
    }
    let medians = read_medians(&root.join("target/criterion"))?;
    let allocations = read_allocations(&allocations_file)?;
    let tables = Tables {
        memory: read_tsv(&memory_file)?,
        load: read_tsv(&load_file)?,
    };
    let report = render(&medians, &allocations, &tables, quick);
    let path = root.join("docs/benchmarks.md");
    fs::write(&path, report).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Runs the micro-benchmarks and the load test, which write their results to these files.
fn run_benches(
    args: &[&str],
    quick: bool,
    allocations_file: &Path,
    memory_file: &Path,
    load_file: &Path,
) -> Result<(), String> {
    let out = allocations_file.to_string_lossy().into_owned();
    let memory_out = memory_file.to_string_lossy().into_owned();
    cargo(
        args,
        &[
            ("BENCH_ALLOCATIONS_OUT", &out),
            ("BENCH_MEMORY_OUT", &memory_out),
        ],
    )?;
    let load_out = load_file.to_string_lossy().into_owned();
    let mut load_args = vec!["bench", "-p", "breaker-benches", "--bench", "axum_load"];
    if quick {
        load_args.extend(["--", "--quick"]);
    }
    cargo(&load_args, &[("BENCH_AXUM_LOAD_OUT", &load_out)])?;
    let redis_out = root().join("target/bench-redis.tsv");
    let redis_out = redis_out.to_string_lossy().into_owned();
    let mut redis_args = vec![
        "bench",
        "-p",
        "breaker-benches",
        "--bench",
        "redis_sharing",
        "--",
        "--noplot",
    ];
    if quick {
        redis_args.extend(QUICK_CRITERION);
    }
    cargo(
        &redis_args,
        &[
            ("BENCH_REDIS_OUT", &redis_out),
            ("BENCH_QUICK", if quick { "1" } else { "0" }),
        ],
    )?;
    let admin_out = root().join("target/bench-admin.tsv");
    let admin_out = admin_out.to_string_lossy().into_owned();
    let mut admin_args = vec![
        "bench",
        "-p",
        "breaker-benches",
        "--bench",
        "admin",
        "--",
        "--noplot",
    ];
    if quick {
        admin_args.extend(QUICK_CRITERION);
    }
    cargo(
        &admin_args,
        &[
            ("BENCH_ADMIN_OUT", &admin_out),
            ("BENCH_QUICK", if quick { "1" } else { "0" }),
        ],
    )
}

type Medians = BTreeMap<(String, String), f64>;

fn read_medians(dir: &Path) -> Result<Medians, String> {
    let mut medians = Medians::new();
    for (scenario, _, subjects) in SCENARIOS {
        for subject in *subjects {
            let file = dir.join(scenario).join(subject).join("new/estimates.json");
            let text = fs::read_to_string(&file)
                .map_err(|e| format!("missing {} ({e}); did the benchmark run?", file.display()))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let median = json["median"]["point_estimate"]
                .as_f64()
                .ok_or_else(|| format!("{}: no median", file.display()))?;
            medians.insert((scenario.to_string(), subject.to_string()), median);
        }
    }
    Ok(medians)
}

fn read_allocations(file: &Path) -> Result<BTreeMap<(String, String), f64>, String> {
    let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split('\t');
            let (scenario, subject, n) = (cols.next()?, cols.next()?, cols.next()?);
            Some(((scenario.to_string(), subject.to_string()), n.parse().ok()?))
        })
        .collect())
}

/// Rows of a tab-separated file with a header line, as strings.
fn read_tsv(file: &Path) -> Result<Vec<Vec<String>>, String> {
    let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

/// The tables the benchmark binaries write besides criterion's estimates.
struct Tables {
    /// subject, thread counters, inline bytes, heap bytes.
    memory: Vec<Vec<String>>,
    /// subject, requests per second (busy), p50 µs and p99 µs (one connection), p99 µs (busy),
    /// median per-round throughput ratio to `without_breaker`.
    load: Vec<Vec<String>>,
}

impl Tables {
    fn load(&self, subject: &str) -> Option<(f64, f64, f64)> {
        let row = self.load.iter().find(|r| r[0] == subject)?;
        Some((
            row[1].parse().ok()?,
            row[2].parse().ok()?,
            row[3].parse().ok()?,
        ))
    }

    fn load_ratio(&self, subject: &str) -> Option<f64> {
        let row = self.load.iter().find(|r| r[0] == subject)?;
        row.get(5)?.parse().ok()
    }

    fn keyed_100k_bytes(&self) -> Option<f64> {
        let row = self
            .memory
            .iter()
            .find(|r| r[0].starts_with("keyed_registry"))?;
        row.get(3)?.parse().ok()
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

fn locked_version(name: &str) -> String {
    let lock = fs::read_to_string(root().join("Cargo.lock")).unwrap_or_default();
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.find(&needle)
        .and_then(|i| lock[i + needle.len()..].split('"').next())
        .unwrap_or("?")
        .to_string()
}

fn cpu() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn render(
    medians: &Medians,
    allocations: &BTreeMap<(String, String), f64>,
    tables: &Tables,
    quick: bool,
) -> String {
    let get = |scenario: &str, subject: &str| medians[&(scenario.to_string(), subject.to_string())];
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench{}` on {} ({} cores), {}; mode: {}. Medians of criterion \
         samples, in nanoseconds per call (for two threads: per call per thread); ratios are \
         ours / peer in the same run. Allocations per call come from a counting global \
         allocator over 10,000 calls.\n",
        if quick { " --quick" } else { "" },
        cpu(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        command_output("rustc", &["--version"]),
        if quick {
            "quick (0.5 s warm-up, 1 s measurement, 30 samples)"
        } else {
            "full (criterion defaults)"
        },
    );
    let _ = writeln!(
        md,
        "Peers: failsafe {}, recloser {}, tower-resilience-circuitbreaker {}; ours: breaker-core {}, \
         breaker-tower {}. Source: `benches/benches/breakers.rs`.\n",
        locked_version("failsafe"),
        locked_version("recloser"),
        locked_version("tower-resilience-circuitbreaker"),
        locked_version("breaker-core"),
        locked_version("breaker-tower"),
    );

    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(
        md,
        "| target | ours (ns) | peer (ns) | ratio | limit | met |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|:---:|");
    for (what, scenario, ours, peer, limit) in RATIO_TARGETS {
        let (a, b) = (get(scenario, ours), get(scenario, peer));
        let ratio = a / b;
        let _ = writeln!(
            md,
            "| {what}: `{ours}` vs `{peer}` | {a:.1} | {b:.1} | {ratio:.3} | {limit} | {} |",
            if ratio <= *limit { "yes" } else { "**no**" }
        );
    }
    for (what, scenario, ours, limit) in ABSOLUTE_TARGETS {
        let a = get(scenario, ours);
        let _ = writeln!(
            md,
            "| {what}: `{ours}` | {a:.1} | | | {limit} ns | {} |",
            met(a <= *limit)
        );
    }
    for (what, ours, base, limit) in OVERHEAD_TARGETS {
        let (a, b) = (get("tower", ours), get("tower", base));
        let _ = writeln!(
            md,
            "| {what}: `{ours}` | {a:.1} | {b:.1} | +{:.1} ns | +{limit} ns | {} |",
            a - b,
            met(a - b <= *limit)
        );
    }
    if let Some(bytes) = tables.keyed_100k_bytes() {
        let _ = writeln!(
            md,
            "| keyed registry of 100,000 per-host breakers (count window of 20, no thread counters) | {:.1} MB | | | {:.0} MB | {} |",
            bytes / 1e6,
            KEYED_100K_MAX_BYTES / 1e6,
            met(bytes <= KEYED_100K_MAX_BYTES)
        );
    }
    if let (Some(bare), Some(guarded)) = (
        tables.load("without_breaker"),
        tables.load("with_breaker_closed"),
    ) {
        let ratio = tables
            .load_ratio("with_breaker_closed")
            .unwrap_or(guarded.0 / bare.0);
        let loss = 1.0 - ratio;
        let _ = writeln!(
            md,
            "| axum hello under load: throughput lost to the middleware (median of per-round ratios) | {:.0} req/s | {:.0} req/s | {:+.1} % | {:.0} % | {} |",
            guarded.0,
            bare.0,
            loss * 100.0,
            LOAD_MAX_THROUGHPUT_LOSS * 100.0,
            met(loss <= LOAD_MAX_THROUGHPUT_LOSS)
        );
        let added = guarded.2 - bare.2;
        let _ = writeln!(
            md,
            "| axum hello: p99 latency added by the middleware (one connection) | {:.1} us | {:.1} us | {added:+.1} us | +{LOAD_MAX_P99_ADDED_US:.0} us | {} |",
            guarded.2,
            bare.2,
            met(added <= LOAD_MAX_P99_ADDED_US)
        );
    }
    let ours_allocs: f64 = allocations
        .iter()
        .filter(|((_, subject), _)| subject.starts_with("ours"))
        .map(|(_, n)| *n)
        .sum();
    let _ = writeln!(
        md,
        "| zero allocations per call, every scenario, ours (tower layer included) | {ours_allocs:.3} | | | 0 | {} |\n",
        if ours_allocs == 0.0 { "yes" } else { "**no**" }
    );

    for (scenario, title, subjects) in SCENARIOS {
        let _ = writeln!(md, "## {title} (`{scenario}`)\n");
        // What a subject adds to the call it guards: over the bare tower service, or over
        // calling the guarded function directly.
        let (peers, base, header): (Vec<&str>, f64, &str) = if *scenario == "tower" {
            (
                vec!["tower_resilience"],
                get("tower", "bare_service"),
                "| subject | median ns | overhead over the bare service, moved or in place as the subject (ns) | vs tower_resilience | allocations / call |",
            )
        } else if *scenario == "baseline" {
            (vec![], f64::NAN, "| subject | median ns |")
        } else if *scenario == "redis_sharing" || *scenario == "admin" {
            // Against the same breaker alone: the ratios are in the targets.
            (vec![], f64::NAN, "| subject | median ns |")
        } else {
            // A rejection is compared with making the call.
            let base = if *scenario == "open_rejected" {
                "closed_1t"
            } else {
                scenario
            };
            (
                vec!["recloser_sync", "failsafe_consecutive"],
                get(base, "direct_call"),
                "| subject | median ns | overhead over direct_call (ns) | vs recloser_sync | vs failsafe_consecutive | allocations / call |",
            )
        };
        let _ = writeln!(md, "{header}");
        let cols = header.matches('|').count() - 1;
        let _ = writeln!(md, "|---{}|", "|---:".repeat(cols - 1));
        for subject in *subjects {
            let m = get(scenario, subject);
            let mut line = format!("| `{subject}` | {m:.1} |");
            if !base.is_nan() {
                // A future polled in place is compared with the bare one polled in place.
                let base = if *scenario == "tower" && subject.ends_with("_in_place") {
                    get("tower", "bare_service_in_place")
                } else {
                    base
                };
                let _ = write!(line, " {:+.1} |", m - base);
            }
            for peer in &peers {
                if *scenario == "tower" && subject.ends_with("_in_place") {
                    // The peer's future is measured moved only: no like-for-like ratio.
                    line.push_str(" - |");
                } else {
                    let _ = write!(line, " {:.3} |", m / get(scenario, peer));
                }
            }
            if !peers.is_empty() {
                match allocations.get(&(scenario.to_string(), subject.to_string())) {
                    Some(n) => {
                        let _ = write!(line, " {n:.3} |");
                    }
                    None => line.push_str(" - |"),
                }
            }
            let _ = writeln!(md, "{line}");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Memory per breaker (`memory`)\n");
    let _ = writeln!(
        md,
        "From `CircuitBreaker::memory()`: `size_of` the breaker and the heap it allocated; the \
         registry row is the heap growth of a `KeyedRegistry` filled with 100,000 host keys, \
         keys and map included, from the counting allocator.\n"
    );
    let _ = writeln!(
        md,
        "| subject | thread counters | inline bytes | heap bytes | total bytes |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for row in &tables.memory {
        let inline: f64 = row[2].parse().unwrap_or(0.0);
        let heap: f64 = row[3].parse().unwrap_or(0.0);
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {:.0} |",
            row[0],
            row[1],
            row[2],
            row[3],
            inline + heap
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "## axum hello server under load (`axum_load`)\n");
    let _ = writeln!(
        md,
        "`benches/benches/axum_load.rs`: the server on one core (one-thread tokio runtime), a \
         closed-loop load generator on the other: throughput (and a busy p99) with 32 \
         keep-alive HTTP/1.1 connections, latency with one connection (no request queues \
         behind another). {} rounds of {} per subject and measurement; in each round the \
         subjects run back to back in a rotating order, and \"vs without\" is the median over \
         rounds of that round's ratio, so that drift of the machine between rounds cancels. \
         The other columns are medians over rounds. With the breaker open every request is \
         answered 503 by the middleware (a JSON body and `Retry-After`): its requests / s are \
         rejections / s.\n",
        if quick { 5 } else { 15 },
        if quick { "0.5 s" } else { "1 s" },
    );
    let _ = writeln!(
        md,
        "| subject | requests / s (32 connections) | vs without | p50 us (1 connection) | p99 us (1 connection) | p99 us (32 connections) |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    for row in &tables.load {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} |",
            row[0], row[1], row[5], row[2], row[3], row[4]
        );
    }
    let _ = writeln!(md);
    if let Ok(text) = fs::read_to_string(root().join("target/bench-redis.tsv")) {
        let _ = writeln!(md, "## Sharing through Redis (`redis_sharing`)\n");
        let _ = writeln!(
            md,
            "`benches/benches/redis_sharing.rs`, against a redis-server and a Redis Cluster (three \
             primaries, three replicas) it starts on loopback ports of its own. The call path \
             is in the `redis_sharing` rows of the targets above. Here, per topology: the Redis \
             commands one replica sends while serving 10,000 calls/s (its own count of syncs, \
             and the `EVAL`/`EVALSHA` calls Redis counted meanwhile, on every node of the \
             cluster), and the time from a trip on one replica until two others are open (a \
             fresh fleet of three per round).\n"
        );
        let _ = writeln!(md, "| measure | setting | value |");
        let _ = writeln!(md, "|---|---|---:|");
        for line in text.lines().skip(1) {
            let cols: Vec<_> = line.split('\t').collect();
            if let [measure, setting, value] = cols[..] {
                let _ = writeln!(
                    md,
                    "| {} | {setting} | {value} |",
                    measure.replace('_', " ")
                );
            }
        }
        let _ = writeln!(md);
    }
    if let Ok(text) = fs::read_to_string(root().join("target/bench-admin.tsv")) {
        let _ = writeln!(md, "## The admin's event stream (`admin`)\n");
        let _ = writeln!(
            md,
            "`benches/benches/admin.rs`: 100 breakers registered with `breaker-admin`, each \
             changing state once a second (one trip or reset every 10 ms, round robin), with no \
             dashboard and with ten reading the event stream over loopback. The admin (its hub \
             and its HTTP connections) runs on a one-thread runtime of its own; its CPU time is \
             that thread's, per second of wall time. A transition's delivery time runs from the \
             observer's timestamp on the call path to its arrival at a dashboard (ms \
             resolution; the hub drains the queue every 100 ms). The call path itself is in \
             the `admin` rows of the targets above.\n"
        );
        let _ = writeln!(md, "| measure | setting | value |");
        let _ = writeln!(md, "|---|---|---:|");
        for line in text.lines().skip(1) {
            let cols: Vec<_> = line.split('\t').collect();
            if let [measure, setting, value] = cols[..] {
                let _ = writeln!(
                    md,
                    "| {} | {setting} | {value} |",
                    measure.replace('_', " ")
                );
            }
        }
        let _ = writeln!(md);
    }
    if let Ok(notes) = fs::read_to_string(root().join("benches/NOTES.md")) {
        md.push_str(&notes);
    }
    md
}
