//! `cargo xtask bench`: run the criterion benchmarks and write docs/benchmarks.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::{root, run as cargo};

/// The circuit-breaker subjects, ours first, in report order.
const BREAKERS: &[&str] = &[
    "ours_consecutive",
    "ours_consecutive_permit",
    "ours_count_window",
    "ours_time_window",
    "ours_time_window_instant",
    "recloser_sync",
    "recloser_async",
    "failsafe_default",
    "failsafe_consecutive",
];

/// (scenario, title, subjects) in report order.
const SCENARIOS: &[(&str, &str, &[&str])] = &[
    (
        "closed_1t",
        "closed, every call succeeds, one thread",
        BREAKERS,
    ),
    (
        "closed_2t",
        "closed, every call succeeds, two threads on one breaker (per call per thread)",
        BREAKERS,
    ),
    ("open_rejected", "open, every call rejected", BREAKERS),
    (
        "closed_10pct_failures",
        "closed, 10 % failures that do not trip",
        BREAKERS,
    ),
    (
        "tower",
        "through a tower service around a ready inner service",
        &[
            "bare_service",
            "ours_layer",
            "ours_layer_static",
            "tower_resilience",
        ],
    ),
    (
        "baseline",
        "baselines",
        &[
            "direct_call",
            "atomic_load",
            "atomic_fetch_add",
            "instant_now",
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
        0.6,
    ),
    (
        "closed, 1 thread, time window",
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
        "open, rejected",
        "open_rejected",
        "ours_consecutive",
        "recloser_sync",
        0.8,
    ),
    (
        "tower layer",
        "tower",
        "ours_layer",
        "tower_resilience",
        0.1,
    ),
];

pub(crate) fn run(quick: bool) -> Result<(), String> {
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
        args.extend([
            "--warm-up-time",
            "0.5",
            "--measurement-time",
            "1",
            "--sample-size",
            "30",
        ]);
    }
    let out = allocations_file.to_string_lossy().into_owned();
    cargo(&args, &[("BENCH_ALLOCATIONS_OUT", &out)])?;

    let medians = read_medians(&root.join("target/criterion"))?;
    let allocations = read_allocations(&allocations_file)?;
    let report = render(&medians, &allocations, quick);
    let path = root.join("docs/benchmarks.md");
    fs::write(&path, report).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
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

fn render(medians: &Medians, allocations: &BTreeMap<(String, String), f64>, quick: bool) -> String {
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
    let overhead = get("tower", "ours_layer") - get("tower", "bare_service");
    let _ = writeln!(
        md,
        "| tower layer overhead over the bare service | {:.1} | {:.1} | +{overhead:.1} ns | +10 ns | {} |",
        get("tower", "ours_layer"),
        get("tower", "bare_service"),
        if overhead <= 10.0 { "yes" } else { "**no**" }
    );
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
        let (peers, header): (Vec<&str>, &str) = if *scenario == "tower" {
            (
                vec!["tower_resilience", "bare_service"],
                "| subject | median ns | vs tower_resilience | vs bare_service | allocations / call |",
            )
        } else if *scenario == "baseline" {
            (vec![], "| subject | median ns |")
        } else {
            (
                vec!["recloser_sync", "failsafe_consecutive"],
                "| subject | median ns | vs recloser_sync | vs failsafe_consecutive | allocations / call |",
            )
        };
        let _ = writeln!(md, "{header}");
        let cols = header.matches('|').count() - 1;
        let _ = writeln!(md, "|---{}|", "|---:".repeat(cols - 1));
        for subject in *subjects {
            let m = get(scenario, subject);
            let mut line = format!("| `{subject}` | {m:.1} |");
            for peer in &peers {
                let _ = write!(line, " {:.3} |", m / get(scenario, peer));
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
    if let Ok(notes) = fs::read_to_string(root().join("benches/NOTES.md")) {
        md.push_str(&notes);
    }
    md
}
