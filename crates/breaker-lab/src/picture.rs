//! One picture per run (SVG and PNG): the traffic's failure and slow-call rates with each
//! config's thresholds, then for each config its state over time and the calls it shed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use breaker_core::Outcome;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::Report;
use crate::traffic::Traffic;

/// Width of the pictures, in pixels.
pub const WIDTH: u32 = 1200;
/// Height of the rates panel, and of each config's panel.
const TOP: u32 = 260;
const ROW: u32 = 150;

/// Where the text font comes from: Debian's `fonts-dejavu-core` (installed on the machines
/// that build this project; `.ci/run` installs it when missing).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The height of a picture for `configs` configs.
pub fn height(configs: usize) -> u32 {
    TOP + ROW * configs as u32
}

/// Loads the font pictures are labelled with (once per process).
pub fn use_font(path: &Path) -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes = std::fs::read(path).map_err(|e| {
                format!(
                    "cannot read the font {} ({e}): install Debian's fonts-dejavu-core, or \
                     pass --font with a TrueType font",
                    path.display()
                )
            })?;
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a TrueType font", path.display()))
        })
        .clone()
}

/// Per-second failure and slow-call rates of the traffic (every call, admitted or not), in
/// percent.
fn rates(traffic: &Traffic, slow: Duration) -> Vec<(f64, f64, f64)> {
    let seconds = traffic
        .calls
        .last()
        .map_or(0, |c| c.at.as_secs() as usize + 1);
    let mut counts = vec![(0u64, 0u64, 0u64); seconds];
    for call in &traffic.calls {
        let c = &mut counts[call.at.as_secs() as usize];
        c.0 += 1;
        c.1 += u64::from(call.outcome == Outcome::Failure);
        c.2 += u64::from(call.latency > slow);
    }
    counts
        .iter()
        .enumerate()
        .map(|(s, (n, f, sl))| {
            let pct = |x: u64| {
                if *n == 0 {
                    0.0
                } else {
                    x as f64 * 100.0 / *n as f64
                }
            };
            (s as f64 + 0.5, pct(*f), pct(*sl))
        })
        .collect()
}

fn state_color(state: &str) -> RGBColor {
    match state {
        "open" | "forced_open" => RGBColor(214, 39, 40),
        "half_open" => RGBColor(255, 160, 40),
        _ => RGBColor(44, 160, 44),
    }
}

const CONFIG_COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
];

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    reports: &[Report],
    traffic: &Traffic,
    slow: Duration,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let end = traffic
        .calls
        .last()
        .map_or(1.0, |c| (c.at + c.latency).as_secs_f64().ceil());
    let (top, rest) = root.split_vertically(TOP);

    // The traffic: failure and slow-call rates per second, thresholds of every config.
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "traffic: failure and slow-call rate per second",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(28)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..end, 0f64..100f64)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("%")
        .light_line_style(WHITE)
        .draw()?;
    let rates = rates(traffic, slow);
    for fault in &traffic.faults {
        let area = [
            (fault.start.as_secs_f64(), 0.0),
            (fault.end.as_secs_f64(), 100.0),
        ];
        chart.draw_series([Rectangle::new(area, RGBColor(240, 240, 240).filled())])?;
    }
    chart
        .draw_series(LineSeries::new(
            rates.iter().map(|r| (r.0, r.1)),
            RED.stroke_width(2),
        ))?
        .label("failure rate")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(rates.iter().map(|r| (r.0, r.2)), BLUE))?
        .label(format!("slow-call rate (> {} ms)", slow.as_millis()))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    for (i, report) in reports.iter().enumerate() {
        let color = CONFIG_COLORS[i % CONFIG_COLORS.len()];
        for (what, threshold) in [
            ("failure", report.failure_rate_threshold),
            ("slow", report.slow_call_rate_threshold),
        ] {
            if let Some(t) = threshold {
                chart
                    .draw_series(DashedLineSeries::new(
                        [(0.0, t), (end, t)],
                        6,
                        4,
                        color.into(),
                    ))?
                    .label(format!("{}: {what} threshold {t}%", report.config))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()?;

    // One row per config: its state over time, what it shed each second, and the rates its
    // window saw against its thresholds.
    for (i, (report, row)) in reports
        .iter()
        .zip(rest.split_evenly((reports.len(), 1)))
        .enumerate()
    {
        let color = CONFIG_COLORS[i % CONFIG_COLORS.len()];
        let shed_max = report
            .shed_per_second
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let band = shed_max * 1.25;
        let mut chart = ChartBuilder::on(&row)
            .caption(
                format!(
                    "{}: state (green closed, orange half-open, red open), calls shed per second \
                     (black, left), window failure rate (red) and slow-call rate (blue) against \
                     its thresholds (dashed, right, %)",
                    report.config
                ),
                ("sans-serif", 13),
            )
            .margin(10)
            .x_label_area_size(24)
            .y_label_area_size(48)
            .right_y_label_area_size(40)
            .build_cartesian_2d(0f64..end, 0f64..band)?
            .set_secondary_coord(0f64..end, 0f64..125f64);
        chart.configure_mesh().light_line_style(WHITE).draw()?;
        chart.configure_secondary_axes().draw()?;
        let mut from = (0.0, "closed");
        for &(at, state) in report.timeline.iter().chain([(end, "closed")].iter()) {
            let area = [(from.0, band * 0.9), (at, band)];
            chart.draw_series([Rectangle::new(area, state_color(from.1).filled())])?;
            from = (at, state);
        }
        chart.draw_series(LineSeries::new(
            report
                .shed_per_second
                .iter()
                .enumerate()
                .map(|(s, n)| (s as f64 + 0.5, *n as f64)),
            BLACK,
        ))?;
        chart.draw_secondary_series(LineSeries::new(
            report.window_rates.iter().map(|r| (r.0, r.1)),
            RED.mix(0.8),
        ))?;
        if report.slow_call_rate_threshold.is_some() {
            chart.draw_secondary_series(LineSeries::new(
                report.window_rates.iter().map(|r| (r.0, r.2)),
                BLUE.mix(0.8),
            ))?;
        }
        for t in [
            report.failure_rate_threshold,
            report.slow_call_rate_threshold,
        ]
        .into_iter()
        .flatten()
        {
            chart.draw_secondary_series(DashedLineSeries::new(
                [(0.0, t), (end, t)],
                6,
                4,
                color.into(),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}

/// Draws the run into `{base}.svg` and `{base}.png`; returns both paths. The slow-call line
/// of the rates panel uses `slow` as its threshold.
pub fn draw_run(
    base: &Path,
    reports: &[Report],
    traffic: &Traffic,
    slow: Duration,
    font: &Path,
) -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
    use_font(font)?;
    let size = (WIDTH, height(reports.len()));
    let svg = base.with_extension("svg");
    let png = base.with_extension("png");
    draw(
        SVGBackend::new(&svg, size).into_drawing_area(),
        reports,
        traffic,
        slow,
    )?;
    draw(
        BitMapBackend::new(&png, size).into_drawing_area(),
        reports,
        traffic,
        slow,
    )?;
    Ok((svg, png))
}
