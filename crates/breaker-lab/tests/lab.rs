//! The lab's numbers, exact: a scripted outage replayed through a config whose every step can
//! be worked out by hand; determinism; trace errors with line numbers.

use std::time::Duration;

use breaker_core::settings::Settings;
use breaker_lab::traffic::{Pattern, parse_csv};
use breaker_lab::{Report, simulate, table};

fn settings(toml_text: &str) -> Settings {
    toml::from_str(toml_text).unwrap()
}

const MS: fn(u64) -> Duration = Duration::from_millis;

#[test]
fn an_outage_replayed_gives_the_numbers_worked_out_by_hand() {
    // 10 calls a second for 30 s, each 20 ms; everything fails from 10 s to 20 s.
    let traffic = Pattern::Outage {
        start: Duration::from_secs(10),
        end: Duration::from_secs(20),
    }
    .generate(10, Duration::from_secs(30), 7);
    assert_eq!(traffic.calls.len(), 300);
    let config = settings("count_window = 20\nfailure_rate = 50.0\nopen_duration = \"5s\"");
    let r = simulate("count-20", &config, &traffic).unwrap();
    // The window holds 20 successes when the outage starts; the 10th failure (the call at
    // 10.9 s, ending at 10.92 s) makes it 50 %: open.
    assert_eq!(r.time_to_trip, Some(MS(920)));
    // Open until 15.92 s: the call at 16.0 s probes, fails (16.02 s), open again until
    // 21.02 s; the call at 21.1 s probes, succeeds (21.12 s): closed, 1.12 s after the end.
    assert_eq!(r.time_to_recover, Some(MS(1120)));
    assert_eq!(r.trips, 2);
    assert_eq!(r.false_trips, Some(0));
    assert_eq!(r.hit_failing_dependency, 11, "10 before the trip, 1 probe");
    assert_eq!(r.shed, 100, "11.0..=15.9 s and 16.1..=21.0 s");
    assert_eq!(
        r.good_calls_lost, 11,
        "20.0..=21.0 s: healthy again, still open"
    );
    assert_eq!(r.let_through, 0);
    let states: Vec<&str> = r.timeline.iter().map(|(_, s)| *s).collect();
    assert_eq!(states, ["open", "half_open", "open", "half_open", "closed"]);
    assert!((r.timeline[0].0 - 10.92).abs() < 1e-9);
}

#[test]
fn noise_only_counts_as_false_trips() {
    let traffic = Pattern::Steady { error_rate: 0.4 }.generate(50, Duration::from_secs(60), 3);
    let touchy = simulate(
        "touchy",
        &settings("count_window = 10\nfailure_rate = 30.0"),
        &traffic,
    )
    .unwrap();
    let calm = simulate(
        "calm",
        &settings("count_window = 100\nfailure_rate = 60.0"),
        &traffic,
    )
    .unwrap();
    assert!(touchy.trips > 0);
    assert_eq!(
        touchy.false_trips,
        Some(touchy.trips),
        "no fault: every trip is false"
    );
    assert_eq!(
        touchy.good_calls_lost, touchy.shed,
        "never failing: every call shed was a good one"
    );
    assert_eq!(calm.trips, 0, "40 % noise stays under 60 % over 100 calls");
    assert_eq!((touchy.time_to_trip, calm.time_to_trip), (None, None));
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let run = |seed| {
        let traffic =
            Pattern::Steady { error_rate: 0.2 }.generate(100, Duration::from_secs(30), seed);
        let reports: Vec<Report> = [
            "count_window = 20\nfailure_rate = 30.0",
            "consecutive_failures = 3",
        ]
        .iter()
        .enumerate()
        .map(|(i, t)| simulate(&format!("c{i}"), &settings(t), &traffic).unwrap())
        .collect();
        serde_json::to_string(&reports).unwrap()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn every_pattern_replays_and_reports() {
    let d = Duration::from_secs(30);
    for pattern in [
        Pattern::Steady { error_rate: 0.01 },
        Pattern::Burst {
            start: MS(10_000),
            length: MS(2_000),
            error_rate: 0.9,
        },
        Pattern::Degradation {
            start: MS(10_000),
            ramp: MS(10_000),
        },
        Pattern::Flapping {
            period: MS(10_000),
            down: MS(3_000),
        },
        Pattern::Outage {
            start: MS(10_000),
            end: MS(20_000),
        },
    ] {
        let traffic = pattern.generate(100, d, 1);
        assert_eq!(traffic.calls.len(), 3000, "{pattern:?}");
        let r = simulate(
            "slow-aware",
            &settings("count_window = 50\nminimum_calls = 20\nslow_call_duration = \"1s\"\nslow_call_rate = 50.0"),
            &traffic,
        )
        .unwrap();
        assert!(
            table(std::slice::from_ref(&r)).contains("| slow-aware | 3000 |"),
            "{pattern:?}"
        );
        if matches!(pattern, Pattern::Degradation { .. }) {
            assert!(r.trips > 0, "slow calls trip a slow-call rule");
        }
    }
}

#[test]
fn an_invalid_config_names_its_key() {
    let traffic = Pattern::Steady { error_rate: 0.0 }.generate(1, Duration::from_secs(1), 1);
    let err = simulate("bad", &settings("count_window = 0"), &traffic).unwrap_err();
    assert_eq!(err.field(), "count_window");
}

#[test]
fn trace_errors_name_the_line_and_what_is_expected() {
    let header = "timestamp_ms,latency_ms,outcome\n";
    let cases = [
        (
            "ts,lat,out\n0,1,success\n",
            1,
            "header \"ts,lat,out\": expected timestamp_ms,latency_ms,outcome (and optionally ,retry_after_ms)",
        ),
        ("", 1, "empty trace"),
        (
            "timestamp_ms,latency_ms,outcome\n0,1\n",
            2,
            "2 fields: expected 3",
        ),
        (
            "timestamp_ms,latency_ms,outcome\n# a comment\n\nx,1,success\n",
            4,
            "timestamp_ms \"x\": expected milliseconds from 0",
        ),
        (
            "timestamp_ms,latency_ms,outcome\n0,-5,failure\n",
            2,
            "latency_ms \"-5\"",
        ),
        (
            "timestamp_ms,latency_ms,outcome\n10,1,success\n5,1,success\n",
            3,
            "before the previous line's",
        ),
        (
            "timestamp_ms,latency_ms,outcome\n0,1,fine\n",
            2,
            "outcome \"fine\": expected success, failure or ignored",
        ),
    ];
    for (text, line, needle) in cases {
        let err = parse_csv(text).unwrap_err();
        assert_eq!(err.line, line, "{text:?}: {err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    let traffic = parse_csv(&format!(
        "{header}0,12.5,success\n100,800,failure\n100,3,ignored\n"
    ))
    .unwrap();
    assert_eq!(traffic.calls.len(), 3);
    assert_eq!(traffic.calls[0].latency, Duration::from_micros(12_500));
    assert!(
        !traffic.faults_known && traffic.faults.is_empty(),
        "a trace has no known fault periods"
    );
}

#[test]
fn a_trace_is_judged_call_by_call() {
    // Faults unknown: a failed call is one made while the dependency was failing, a shed
    // call that would have succeeded is a good call lost, and no trip is called false.
    let mut text = String::from("timestamp_ms,latency_ms,outcome\n");
    for i in 0..40u64 {
        let outcome = if (10..20).contains(&i) {
            "failure"
        } else {
            "success"
        };
        text.push_str(&format!("{},5,{outcome}\n", i * 100));
    }
    let traffic = parse_csv(&text).unwrap();
    let r = simulate(
        "c3",
        &settings("consecutive_failures = 3\nopen_duration = \"500ms\""),
        &traffic,
    )
    .unwrap();
    // Failures at 1.0, 1.1, 1.2 s trip it (1.205 s); open until 1.705 s: 1.3..=1.7 s shed
    // (all failures); the 1.8 s probe fails, open until 2.305 s: 1.9 s (failure) and
    // 2.0..=2.3 s (successes) shed; the 2.4 s probe succeeds.
    assert_eq!(r.trips, 2);
    assert_eq!(r.false_trips, None, "unknown for a trace");
    assert_eq!(
        r.hit_failing_dependency, 4,
        "three that tripped it, one probe"
    );
    assert_eq!(r.shed, 10);
    assert_eq!(
        r.good_calls_lost, 4,
        "2.0, 2.1, 2.2 and 2.3 s would have succeeded"
    );
    assert!(table(&[r]).contains("| c3 | 40 | 10 | 4 | 4 | 2 | - |"));
}

#[test]
fn a_period_as_long_as_the_flapping_never_recovers_and_jitter_breaks_the_lock_step() {
    // Down 3 s in every 10 s, 100 calls a second: 4,200 calls to a healthy dependency.
    let traffic = Pattern::Flapping {
        period: Duration::from_secs(10),
        down: Duration::from_secs(3),
    }
    .generate(100, Duration::from_secs(60), 1);
    let balanced =
        "count_window = 100\nminimum_calls = 20\nfailure_rate = 50.0\nopen_duration = \"10s\"";
    let locked = simulate("locked", &settings(balanced), &traffic).unwrap();
    // Open at 0.21 s, then every probe 10 s after a failure: in the next down phase.
    assert_eq!(locked.time_to_recover, None);
    assert_eq!(locked.good_calls_lost, 4200, "every healthy call shed");
    assert_eq!(locked.false_trips, Some(0));
    assert!(table(std::slice::from_ref(&locked)).contains("| never |"));

    let jittered = |seed: u64| {
        let text = format!("{balanced}\njitter = 0.5\njitter_seed = {seed}");
        simulate("jitter", &settings(&text), &traffic).unwrap()
    };
    let mut recovered = 0;
    for seed in 1..=5 {
        let r = jittered(seed);
        assert!(
            r.good_calls_lost < locked.good_calls_lost,
            "seed {seed}: {r:?}"
        );
        recovered += u32::from(r.time_to_recover.is_some());
        assert_eq!(jittered(seed), r, "the same seed, the same run");
    }
    assert_eq!(recovered, 5, "jitter finds the healthy phase");
}

#[test]
fn a_dependency_that_says_when_to_come_back_is_not_probed_before() {
    // 100 calls a second; from 10 s to 30 s every call fails with the seconds left as its
    // Retry-After.
    let traffic = Pattern::Overload {
        start: Duration::from_secs(10),
        end: Duration::from_secs(30),
    }
    .generate(100, Duration::from_secs(40), 1);
    assert_eq!(
        traffic.calls[1000].retry_after,
        Some(Duration::from_secs(20))
    );
    assert_eq!(
        traffic.calls[1001].retry_after,
        Some(Duration::from_secs(20)),
        "rounded up"
    );
    assert_eq!(
        traffic.calls[2999].retry_after,
        Some(Duration::from_secs(1))
    );
    assert_eq!(traffic.calls[3000].retry_after, None);
    let config = settings("consecutive_failures = 5\nopen_duration = \"5s\"");
    let honoured = simulate("on", &config, &traffic).unwrap();
    let mut ignoring = traffic.clone();
    ignoring.calls.iter_mut().for_each(|c| c.retry_after = None);
    let ignored = simulate("off", &config, &ignoring).unwrap();
    // Honoured: the 5th failure (the call at 10.04 s, ending at 10.06 s with a 20 s hint)
    // opens it until 30.06 s, after 6 calls (10.05 s was in flight); the probe at 30.07 s
    // succeeds. Not one probe meets the overload.
    assert_eq!((honoured.trips, honoured.hit_failing_dependency), (1, 6));
    assert_eq!(honoured.time_to_recover, Some(MS(90)));
    // Ignored: a probe 5 s after each failure fails (15.07, 20.10, 25.13 s); the one at
    // 30.16 s succeeds.
    assert_eq!((ignored.trips, ignored.hit_failing_dependency), (4, 9));
    assert_eq!(ignored.time_to_recover, Some(MS(180)));

    // A trace says it in a fourth column.
    let trace = parse_csv(
        "timestamp_ms,latency_ms,outcome,retry_after_ms\n0,5,failure,1500\n10,5,success,\n",
    )
    .unwrap();
    assert_eq!(trace.calls[0].retry_after, Some(MS(1500)));
    assert_eq!(trace.calls[1].retry_after, None);
}

#[test]
fn recovery_is_told_only_when_it_can_be() {
    // A burst whose breaker closes again before the burst ends: recovered at once.
    let burst = Pattern::Burst {
        start: Duration::from_secs(20),
        length: Duration::from_secs(2),
        error_rate: 0.6,
    }
    .generate(100, Duration::from_secs(60), 4);
    let quick = settings("consecutive_failures = 8\nopen_duration = \"300ms\"");
    let r = simulate("quick", &quick, &burst).unwrap();
    assert!(r.time_to_trip.is_some(), "{r:?}");
    assert_eq!(
        (r.recovered, r.time_to_recover),
        (Some(true), Some(Duration::ZERO))
    );
    assert!(!table(std::slice::from_ref(&r)).contains("never"));

    // A degradation lasts to the end of the traffic: recovery cannot be told.
    let degradation = Pattern::Degradation {
        start: Duration::from_secs(10),
        ramp: Duration::from_secs(10),
    }
    .generate(100, Duration::from_secs(30), 1);
    let slow = settings(
        "count_window = 20\nslow_call_duration = \"500ms\"\nslow_call_rate = 50.0\nopen_duration = \"1s\"",
    );
    let r = simulate("slow", &slow, &degradation).unwrap();
    assert!(r.trips > 0);
    assert_eq!((r.recovered, r.time_to_recover), (None, None));
    assert!(table(std::slice::from_ref(&r)).contains("| - |"));
}

#[test]
fn a_trace_with_absurd_numbers_is_refused_not_a_crash() {
    for line in ["1e300,5,success", "0,1e300,failure", "0,5,failure,1e300"] {
        let header = if line.matches(',').count() == 3 {
            "timestamp_ms,latency_ms,outcome,retry_after_ms"
        } else {
            "timestamp_ms,latency_ms,outcome"
        };
        let err = parse_csv(&format!("{header}\n{line}\n")).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("(7 days)"), "{err}");
    }
}

#[test]
fn the_enforcement_ramp_refuses_its_share_and_reports_the_rest() {
    let traffic = Pattern::Outage {
        start: Duration::from_secs(10),
        end: Duration::from_secs(20),
    }
    .generate(100, Duration::from_secs(30), 1);
    let at = |percent: f64| {
        let text = format!(
            "consecutive_failures = 5\nopen_duration = \"2s\"\nenforcement = {percent}\nenforcement_seed = 9"
        );
        simulate(&format!("{percent}%"), &settings(&text), &traffic).unwrap()
    };
    let (off, half, full) = (at(0.0), at(50.0), at(100.0));
    assert_eq!((off.shed, off.let_through), (0, full.shed));
    assert_eq!(
        off.hit_failing_dependency, 1000,
        "the whole outage reaches it"
    );
    assert_eq!(full.let_through, 0);
    assert_eq!(
        half.shed + half.let_through,
        full.shed,
        "the same decisions, split"
    );
    assert!(
        (full.shed * 2 / 5..=full.shed * 3 / 5).contains(&half.shed),
        "about half enforced: {half:?}"
    );
    assert_eq!(at(50.0), half, "the seed picks the same calls");
    let t = table(&[off, half, full]);
    assert!(t.contains("| let through |"), "{t}");
}

#[test]
fn a_run_draws_one_svg_and_one_png_of_the_expected_size_and_the_same_bytes_for_a_seed() {
    use breaker_lab::picture::{DEFAULT_FONT, WIDTH, draw_run, height};
    let dir = std::env::temp_dir().join(format!("breaker-lab-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let traffic = Pattern::Flapping {
        period: MS(10_000),
        down: MS(3_000),
    }
    .generate(50, Duration::from_secs(30), 5);
    let reports: Vec<Report> = [
        ("a", "count_window = 20\nfailure_rate = 40.0"),
        ("b", "consecutive_failures = 5"),
    ]
    .iter()
    .map(|(n, t)| simulate(n, &settings(t), &traffic).unwrap())
    .collect();
    let font = std::path::Path::new(DEFAULT_FONT);
    let (svg, png) = draw_run(
        &dir.join("one"),
        &reports,
        &traffic,
        Duration::from_secs(1),
        font,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let png_bytes = std::fs::read(&png).unwrap();
    assert_eq!(&png_bytes[1..4], b"PNG");
    let be = |at: usize| u32::from_be_bytes(png_bytes[at..at + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (WIDTH, height(2)), "PNG width and height");
    assert!(
        png_bytes.len() > 10_000,
        "a real picture: {} bytes",
        png_bytes.len()
    );
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains(&format!("width=\"{WIDTH}\"")));
    assert!(svg_text.contains(&format!("height=\"{}\"", height(2))));
    assert!(svg_text.contains("a: state"), "each config has its row");

    // The same seed draws the same bytes.
    let (svg2, _) = draw_run(
        &dir.join("two"),
        &reports,
        &traffic,
        Duration::from_secs(1),
        font,
    )
    .unwrap();
    assert_eq!(std::fs::read(&svg2).unwrap(), svg_text.into_bytes());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pictures in docs/ are what the lab draws today: regenerate them with
/// `cargo run -p breaker-lab -- --pattern NAME --out docs/lab` when this fails.
#[test]
fn the_tuning_guides_pictures_are_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/lab");
    let aliasing = root.join("aliasing.toml");
    let aliasing = aliasing.to_str().unwrap();
    for (picture, args) in [
        ("steady", vec!["--pattern", "steady"]),
        ("outage", vec!["--pattern", "outage"]),
        ("flapping", vec!["--pattern", "flapping"]),
        (
            "aliasing",
            vec![
                "--pattern",
                "flapping",
                "--configs",
                aliasing,
                "--jitter",
                "0,0.5",
                "--name",
                "aliasing",
            ],
        ),
    ] {
        let out = std::env::temp_dir().join(format!("lab-docs-{}-{picture}", std::process::id()));
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_breaker-lab"))
            .args(&args)
            .arg("--out")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let drawn = std::fs::read(out.join(format!("{picture}.svg"))).unwrap();
        let shipped = std::fs::read(root.join(format!("{picture}.svg")))
            .unwrap_or_else(|e| panic!("docs/lab/{picture}.svg: {e}"));
        assert!(
            drawn == shipped,
            "docs/lab/{picture}.svg is out of date: regenerate it with {args:?}"
        );
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn the_command_line_replays_every_config_at_each_jitter_and_enforcement() {
    let out = std::env::temp_dir().join(format!("lab-cli-{}", std::process::id()));
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_breaker-lab"))
            .args(args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let ok = run(&[
        "--pattern",
        "flapping",
        "--duration",
        "20",
        "--jitter",
        "0,0.3",
        "--enforcement",
        "0,100",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = String::from_utf8(ok.stdout).unwrap();
    for name in [
        "| balanced no jitter enforcing 0% |",
        "| balanced jitter 0.3 enforcing 100% |",
        "| sensitive no jitter enforcing 100% |",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| config"))
            .count(),
        12
    );

    // Jitter from a config file without a seed of its own repeats with --seed.
    let configs = out.join("jitter.toml");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        &configs,
        "[configs.j]\nconsecutive_failures = 5\nopen_duration = \"4s\"\njitter = 0.5\n",
    )
    .unwrap();
    let twice: Vec<String> = (0..2)
        .map(|_| {
            let o = run(&[
                "--pattern",
                "flapping",
                "--seed",
                "3",
                "--configs",
                configs.to_str().unwrap(),
            ]);
            assert!(o.status.success());
            String::from_utf8(o.stdout).unwrap()
        })
        .collect();
    assert_eq!(twice[0], twice[1]);

    let bad = run(&["--jitter", "0,lots"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--jitter \"0,lots\": expected numbers separated by commas"),
        "{err}"
    );
    let too_much = run(&["--jitter", "1.5"]);
    let err = String::from_utf8_lossy(&too_much.stderr);
    assert!(
        err.contains("jitter"),
        "the config error names the key: {err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
