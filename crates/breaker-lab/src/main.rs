//! `cargo run -p breaker-lab -- [options]`: replays traffic through breaker configs and
//! prints, for each config, when it trips, what it sheds, what still reaches the failing
//! dependency, and when it recovers.
//!
//! ```text
//! --pattern steady|burst|degradation|flapping|outage|overload
//!                         generated traffic (default: outage; overload: failures that
//!                         say when to come back, with Retry-After)
//! --trace FILE.csv        a recorded trace instead (timestamp_ms,latency_ms,outcome)
//! --configs FILE.toml     [configs.NAME] tables of breaker settings (default: three examples)
//! --rate N                calls per second of generated traffic (default 100)
//! --duration SECONDS      length of generated traffic (default 60)
//! --seed N                random seed of generated traffic, of jitter and of the
//!                         enforcement ramp's choices (default 1)
//! --jitter F,F,...        replay every config with each jitter (0: none; 0.5: open
//!                         periods spread by ± 50 %), to see what it does to probes
//! --enforcement P,P,...   replay every config at each enforcement percentage (0: decide
//!                         but refuse nothing; 100: refuse all it decides to)
//! --hints on,off          replay every config honouring the dependency's Retry-After
//!                         hints (on, as the adapters do) and ignoring them (off)
//! --json                  JSON instead of a table
//! --out DIR               where the picture goes (default: lab-out): DIR/NAME.svg and .png
//! --name NAME             the picture's file name (default: the pattern's, or "trace")
//! --font FILE.ttf         the pictures' font (default: DejaVu Sans, Debian's fonts-dejavu-core)
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use breaker_core::settings::Settings;
use breaker_lab::picture::{DEFAULT_FONT, draw_run};
use breaker_lab::traffic::{Pattern, parse_csv};
use breaker_lab::{simulate, table};
use serde::Deserialize;

const EXAMPLE_CONFIGS: &str = r#"
[configs.sensitive]
count_window = 20
minimum_calls = 10
failure_rate = 30.0
open_duration = "5s"

[configs.balanced]
count_window = 100
minimum_calls = 20
failure_rate = 50.0
open_duration = "10s"

[configs.consecutive]
consecutive_failures = 5
open_duration = "10s"
"#;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    configs: BTreeMap<String, Settings>,
}

/// `settings` as given, or once per jitter and per enforcement percentage asked for, each
/// named after what changed (`balanced jitter 0.5`, `balanced enforcing 50%`). Jitter and
/// the ramp's choices are drawn from `seed`: a run is repeatable.
fn variants(
    name: &str,
    settings: &Settings,
    jitters: Option<&[f64]>,
    enforcements: Option<&[f64]>,
    seed: u64,
) -> Vec<(String, Settings)> {
    let mut settings = settings.clone();
    if settings.jitter.is_some() && settings.jitter_seed.is_none() {
        // Jitter of a config file, without a seed of its own: the run's seed, so the run
        // repeats.
        settings.jitter_seed = Some(seed);
    }
    let mut out = vec![(name.to_string(), settings)];
    if let Some(jitters) = jitters {
        out = out
            .into_iter()
            .flat_map(|(name, settings)| {
                jitters.iter().map(move |&j| {
                    let mut s = settings.clone();
                    if j == 0.0 {
                        (s.jitter, s.jitter_seed) = (None, None);
                        (format!("{name} no jitter"), s)
                    } else {
                        (s.jitter, s.jitter_seed) = (Some(j), Some(seed));
                        (format!("{name} jitter {j}"), s)
                    }
                })
            })
            .collect();
    }
    if let Some(enforcements) = enforcements {
        out = out
            .into_iter()
            .flat_map(|(name, settings)| {
                enforcements.iter().map(move |&p| {
                    let mut s = settings.clone();
                    (s.enforcement, s.enforcement_seed) = (Some(p), Some(seed));
                    (format!("{name} enforcing {p}%"), s)
                })
            })
            .collect();
    }
    out
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("breaker-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| -> Option<&str> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let number = |flag: &str, default: u64| -> Result<u64, String> {
        value(flag).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("{flag} {v:?}: expected a whole number"))
        })
    };
    let rate = number("--rate", 100)? as u32;
    let duration = Duration::from_secs(number("--duration", 60)?);
    let seed = number("--seed", 1)?;
    let configs_text = match value("--configs") {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        None => EXAMPLE_CONFIGS.to_string(),
    };
    let configs: ConfigFile = toml::from_str(&configs_text)?;
    let name = value("--name")
        .map(str::to_string)
        .unwrap_or_else(|| match value("--trace") {
            Some(_) => "trace".into(),
            None => value("--pattern").unwrap_or("outage").to_string(),
        });
    let traffic = match value("--trace") {
        Some(path) => {
            parse_csv(&std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?)?
        }
        None => {
            let third = duration / 3;
            let pattern = match value("--pattern").unwrap_or("outage") {
                "steady" => Pattern::Steady { error_rate: 0.05 },
                "burst" => Pattern::Burst {
                    start: third,
                    length: Duration::from_secs(2),
                    error_rate: 0.6,
                },
                "degradation" => Pattern::Degradation {
                    start: third,
                    ramp: third,
                },
                "flapping" => Pattern::Flapping {
                    period: Duration::from_secs(10),
                    down: Duration::from_secs(3),
                },
                "outage" => Pattern::Outage {
                    start: third,
                    end: third * 2,
                },
                "overload" => Pattern::Overload {
                    start: third,
                    end: third * 2,
                },
                other => {
                    return Err(format!(
                        "--pattern {other:?}: expected steady, burst, degradation, flapping, \
                         outage or overload"
                    )
                    .into());
                }
            };
            pattern.generate(rate, duration, seed)
        }
    };
    let list = |flag: &str| -> Result<Option<Vec<f64>>, String> {
        value(flag)
            .map(|v| {
                v.split(',')
                    .map(|x| {
                        x.trim()
                            .parse::<f64>()
                            .ok()
                            .filter(|x| x.is_finite())
                            .ok_or_else(|| {
                                format!("{flag} {v:?}: expected numbers separated by commas")
                            })
                    })
                    .collect()
            })
            .transpose()
    };
    let jitters = list("--jitter")?;
    let enforcements = list("--enforcement")?;
    let hints: Option<Vec<bool>> = value("--hints")
        .map(|v| {
            v.split(',')
                .map(|x| match x.trim() {
                    "on" => Ok(true),
                    "off" => Ok(false),
                    _ => Err(format!("--hints {v:?}: expected on, off or on,off")),
                })
                .collect()
        })
        .transpose()?;
    let without_hints = {
        let mut t = traffic.clone();
        t.calls.iter_mut().for_each(|c| c.retry_after = None);
        t
    };
    let mut reports = Vec::new();
    for (name, settings) in &configs.configs {
        for (name, settings) in variants(
            name,
            settings,
            jitters.as_deref(),
            enforcements.as_deref(),
            seed,
        ) {
            for &honour in hints.as_deref().unwrap_or(&[true]) {
                let (name, traffic) = match (&hints, honour) {
                    (None, _) => (name.clone(), &traffic),
                    (Some(_), true) => (format!("{name} hints on"), &traffic),
                    (Some(_), false) => (format!("{name} hints off"), &without_hints),
                };
                reports.push(
                    simulate(&name, &settings, traffic)
                        .map_err(|e| format!("config {name}: {e}"))?,
                );
            }
        }
    }
    let out = std::path::PathBuf::from(value("--out").unwrap_or("lab-out"));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let font = std::path::PathBuf::from(value("--font").unwrap_or(DEFAULT_FONT));
    let slow = configs
        .configs
        .values()
        .find_map(|s| s.slow_call_duration)
        .unwrap_or(Duration::from_secs(1));
    let (svg, png) = draw_run(&out.join(&name), &reports, &traffic, slow, &font)?;
    if args.iter().any(|a| a == "--json") {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", table(&reports));
        println!("\npictures: {} and {}", svg.display(), png.display());
    }
    Ok(())
}
