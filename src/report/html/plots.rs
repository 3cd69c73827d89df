//! The report's plots, as SVG files drawn with plotters: a metric's samples in this run against
//! its baseline band, and its history across runs with the baseline band and change points.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::gate::{HistoryPoint, MetricVerdict, format_value};
use crate::stats;

const SIZE: (u32, u32) = (600, 340);
const FONT: &str = "sans-serif";

const INK: RGBColor = RGBColor(0x24, 0x29, 0x2f);
const THIS_RUN: RGBColor = RGBColor(0x09, 0x69, 0xda);
/// The baseline's band and median line.
const BASELINE: RGBColor = RGBColor(0x57, 0x60, 0x6a);
/// The runs the baseline was taken from, and the rest.
const BASELINE_RUN: RGBColor = RGBColor(0x42, 0x4a, 0x53);
const OTHER: RGBColor = RGBColor(0xaf, 0xb8, 0xc1);
const CHANGE: RGBColor = RGBColor(0xbc, 0x4c, 0x00);

/// The baseline's middle 50% (quartiles) and median, when there is a baseline.
struct Band {
    low: f64,
    median: f64,
    high: f64,
}

fn band(m: &MetricVerdict) -> Option<Band> {
    let q = |p| stats::quantile(&m.baseline, p).ok();
    Some(Band {
        low: q(0.25)?,
        median: q(0.5)?,
        high: q(0.75)?,
    })
}

/// A y range around `values` with some air below and `headroom` (a fraction of the values'
/// span) above for the legend; never empty.
fn y_range(values: impl Iterator<Item = f64>, headroom: f64) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let span = (hi - lo).max(hi.abs().max(1e-9) * 0.05);
    (lo - span * 0.12)..(hi + span * headroom)
}

/// An axis tick without trailing zeros: `2.2`, not `2.200`.
fn tick(v: f64) -> String {
    let text = format_value(v);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn y_label(m: &MetricVerdict) -> String {
    format!("{} ({})", m.key.metric, m.unit)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Plot = Result<(), Box<dyn std::error::Error>>;

/// Draws into a fresh SVG document.
fn svg(draw: impl FnOnce(&Area<'_>) -> Plot) -> anyhow::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        draw(&root).map_err(|e| anyhow::anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(out)
}

/// This run's samples in order, its median, and the baseline's median and middle 50%.
pub fn samples(m: &MetricVerdict) -> anyhow::Result<String> {
    svg(|root| draw_samples(root, m))
}

fn draw_samples(root: &Area<'_>, m: &MetricVerdict) -> Plot {
    let band = band(m);
    let n = m.current.len() as f64;
    let extra = band.iter().flat_map(|b| [b.low, b.high]);
    let mut chart = ChartBuilder::on(root)
        .caption("Samples in this run", (FONT, 19).into_font().color(&INK))
        .margin(14)
        .x_label_area_size(46)
        .y_label_area_size(72)
        .build_cartesian_2d(
            0.5..n + 0.5,
            y_range(m.current.iter().copied().chain(extra), 0.75),
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(m.current.len().min(20))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick(*y))
        .x_desc("sample (in the order measured)")
        .y_desc(y_label(m))
        .axis_desc_style((FONT, 16).into_font().color(&INK))
        .label_style((FONT, 15).into_font().color(&INK))
        .max_light_lines(1)
        .light_line_style(OTHER.mix(0.15))
        .bold_line_style(OTHER.mix(0.45))
        .draw()?;
    let (x0, x1) = (0.5, n + 0.5);
    if let Some(b) = &band {
        chart
            .draw_series([Rectangle::new(
                [(x0, b.low), (x1, b.high)],
                BASELINE.mix(0.18).filled(),
            )])?
            .label("baseline, middle 50%")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], BASELINE.mix(0.18).filled())
            });
        chart
            .draw_series(DashedLineSeries::new(
                [(x0, b.median), (x1, b.median)],
                6,
                4,
                BASELINE.stroke_width(2),
            ))?
            .label("baseline median")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BASELINE.stroke_width(2)));
    }
    if let Ok(median) = stats::quantile(&m.current, 0.5) {
        chart
            .draw_series(LineSeries::new(
                [(x0, median), (x1, median)],
                THIS_RUN.stroke_width(2),
            ))?
            .label("this run's median")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], THIS_RUN.stroke_width(2)));
    }
    chart
        .draw_series(
            m.current
                .iter()
                .enumerate()
                .map(|(i, &v)| Circle::new((i as f64 + 1.0, v), 5, THIS_RUN.filled())),
        )?
        .label("sample")
        .legend(|(x, y)| Circle::new((x + 8, y), 4, THIS_RUN.filled()));
    legend(&mut chart)
}

/// The metric's run medians over time (whiskers from each run's min to max), the baseline band,
/// this run highlighted, and each change point as a vertical line where the new level starts.
pub fn history(m: &MetricVerdict) -> anyhow::Result<String> {
    svg(|root| draw_history(root, m))
}

fn draw_history(root: &Area<'_>, m: &MetricVerdict) -> Plot {
    let points = &m.history;
    let band = band(m);
    let n = points.len() as f64;
    let values = points.iter().flat_map(|p| [p.min, p.max]);
    let extra = band.iter().flat_map(|b| [b.low, b.high]);
    let labels: Vec<String> = points
        .iter()
        .map(|p| p.started.format("%m-%d %H:%M").to_string())
        .collect();
    let label_of = |x: &f64| {
        let i = x.round();
        let near = (x - i).abs() < 1e-6 && i >= 0.0;
        near.then(|| labels.get(i as usize).cloned())
            .flatten()
            .unwrap_or_default()
    };
    let mut chart = ChartBuilder::on(root)
        .caption(
            "History (this run's conditions)",
            (FONT, 19).into_font().color(&INK),
        )
        .margin(14)
        .x_label_area_size(46)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.5..n - 0.5, y_range(values.chain(extra), 1.0))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(points.len().clamp(2, 6))
        .x_label_formatter(&label_of)
        .y_label_formatter(&|y| tick(*y))
        .x_desc("run start (UTC), oldest to newest")
        .y_desc(format!("median {}", y_label(m)))
        .axis_desc_style((FONT, 16).into_font().color(&INK))
        .label_style((FONT, 15).into_font().color(&INK))
        .max_light_lines(1)
        .light_line_style(OTHER.mix(0.15))
        .bold_line_style(OTHER.mix(0.45))
        .draw()?;
    let (x0, x1) = (-0.5, n - 0.5);
    if let Some(b) = &band {
        chart
            .draw_series([Rectangle::new(
                [(x0, b.low), (x1, b.high)],
                BASELINE.mix(0.18).filled(),
            )])?
            .label("baseline, middle 50%")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], BASELINE.mix(0.18).filled())
            });
    }
    let (lo, hi) = (chart.y_range().start, chart.y_range().end);
    for (k, cp) in m.change_points.iter().enumerate() {
        let x = cp.index as f64 - 0.5;
        let series = chart.draw_series(DashedLineSeries::new(
            [(x, lo), (x, hi)],
            7,
            4,
            CHANGE.stroke_width(2),
        ))?;
        if k == 0 {
            series
                .label("change point")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], CHANGE.stroke_width(2)));
        }
    }
    chart.draw_series(points.iter().enumerate().map(|(i, p)| {
        PathElement::new(
            [(i as f64, p.min), (i as f64, p.max)],
            colour(p).stroke_width(1),
        )
    }))?;
    let dots = |in_baseline: bool| {
        points
            .iter()
            .enumerate()
            .filter(move |(_, p)| !p.is_current && p.in_baseline == in_baseline)
            .map(|(i, p)| Circle::new((i as f64, p.median), 4, colour(p).filled()))
    };
    chart
        .draw_series(dots(false))?
        .label("run median (whiskers: min–max)")
        .legend(|(x, y)| Circle::new((x + 8, y), 4, OTHER.filled()));
    if points.iter().any(|p| p.in_baseline) {
        chart
            .draw_series(dots(true))?
            .label("baseline run")
            .legend(|(x, y)| Circle::new((x + 8, y), 4, BASELINE_RUN.filled()));
    }
    chart
        .draw_series(
            points
                .iter()
                .enumerate()
                .filter(|(_, p)| p.is_current)
                .map(|(i, p)| Circle::new((i as f64, p.median), 6, THIS_RUN.filled())),
        )?
        .label("this run")
        .legend(|(x, y)| Circle::new((x + 8, y), 5, THIS_RUN.filled()));
    legend(&mut chart)
}

fn colour(p: &HistoryPoint) -> RGBColor {
    match (p.is_current, p.in_baseline) {
        (true, _) => THIS_RUN,
        (false, true) => BASELINE_RUN,
        (false, false) => OTHER,
    }
}

fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
) -> Plot
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(OTHER)
        .label_font((FONT, 15).into_font().color(&INK))
        .draw()?;
    Ok(())
}
