//! Metric charts, drawn on the server with plotters' SVG backend. The page
//! embeds the SVG text, so server-rendered and hydrated pages show the same
//! chart and the wasm bundle carries no plotting code. Plotters computes the
//! scales, ticks and axes; every point gets an SVG `<title>`, so hovering
//! shows its value with no script. Colours are plain attributes the
//! stylesheet re-colours in dark mode.

use std::fmt::Write;

use plotters::prelude::*;

use crate::error::AppError;
use crate::model::{ChartAxis, ChartOptions, MetricChart, MetricHistory};

const SIZE: (u32, u32) = (640, 320);
/// Past this many points a chart gets a hover mark on every n-th only.
const HOVER_POINTS: usize = 1500;

/// One chart per metric key, each run a line on it, in the order of `histories`.
pub fn metric_charts(
    histories: &[MetricHistory],
    options: ChartOptions,
) -> Result<Vec<MetricChart>, AppError> {
    let mut keys: Vec<&str> = histories
        .iter()
        .map(|history| history.key.as_str())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let lines: Vec<&MetricHistory> = histories
                .iter()
                .filter(|history| history.key == key)
                .collect();
            chart(key, &lines, options)
        })
        .collect()
}

fn chart(
    key: &str,
    lines: &[&MetricHistory],
    options: ChartOptions,
) -> Result<MetricChart, AppError> {
    let series: Vec<(String, Vec<(f64, f64)>)> = lines
        .iter()
        .map(|history| (history.run_name.clone(), points(history, options.axis)))
        .collect();
    // One value per run is a number, not a line.
    if series.iter().all(|(_, points)| points.len() <= 1) {
        return Ok(MetricChart {
            metric: key.to_string(),
            svg: String::new(),
            values: series
                .iter()
                .filter_map(|(run, points)| points.first().map(|(_, value)| (run.clone(), *value)))
                .collect(),
            note: None,
        });
    }
    let all_positive = series
        .iter()
        .flat_map(|(_, points)| points.iter())
        .all(|(_, value)| *value > 0.0);
    let log_scale = options.log_scale && all_positive;
    let note = (options.log_scale && !all_positive)
        .then(|| "Some values are 0 or below: drawn on a linear scale.".to_string());
    Ok(MetricChart {
        metric: key.to_string(),
        svg: line_chart(&series, options, log_scale)?,
        values: Vec::new(),
        note,
    })
}

fn line_chart(
    series: &[(String, Vec<(f64, f64)>)],
    options: ChartOptions,
    log_scale: bool,
) -> Result<String, AppError> {
    // Drawn in log₁₀ units on a linear axis whose labels read as values.
    let to_y = |value: f64| if log_scale { value.log10() } else { value };
    let drawn: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|(_, points)| points.iter().map(|(x, y)| (*x, to_y(*y))).collect())
        .collect();
    let (x_range, y_range) = ranges(drawn.iter().flatten());
    let x_label = match options.axis {
        ChartAxis::Step => "step",
        ChartAxis::Time => "seconds since the first value",
    };
    let y_label = |value: &f64| {
        if log_scale {
            format_value(10f64.powf(*value))
        } else {
            format_value(*value)
        }
    };
    let weight = f64::from(options.smoothing) / 100.0;

    let mut svg = String::new();
    let mut hover = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range, y_range)
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(if log_scale { "log scale" } else { "" })
            .y_label_formatter(&y_label)
            .light_line_style(RGBColor(236, 238, 242))
            .bold_line_style(RGBColor(214, 218, 226))
            .label_style(("sans-serif", 13).into_font().color(&RGBColor(70, 78, 92)))
            .draw()
            .map_err(chart_error)?;
        let total: usize = drawn.iter().map(Vec::len).sum();
        let every = total.div_ceil(HOVER_POINTS).max(1);
        for (index, ((label, raw), points)) in series.iter().zip(&drawn).enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let smoothed = (weight > 0.0).then(|| smooth(points, weight));
            // With smoothing, the raw values stay as a faint line behind.
            if smoothed.is_some() {
                chart
                    .draw_series(LineSeries::new(
                        points.iter().copied(),
                        color.mix(0.25).stroke_width(1),
                    ))
                    .map_err(chart_error)?;
            }
            // A lone value among lines has no line to draw: mark it.
            if points.len() == 1 {
                chart
                    .draw_series(
                        points
                            .iter()
                            .map(|point| Circle::new(*point, 4, color.filled())),
                    )
                    .map_err(chart_error)?;
            }
            let legend_line = chart
                .draw_series(LineSeries::new(
                    smoothed.as_deref().unwrap_or(points).iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(chart_error)?;
            if series.len() > 1 {
                legend_line.label(label.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
            for (position, ((x, value), point)) in raw.iter().zip(points).enumerate() {
                if position % every != 0 && position + 1 != points.len() {
                    continue;
                }
                let (px, py) = chart.backend_coord(point);
                let _ = write!(
                    hover,
                    "<circle cx=\"{px}\" cy=\"{py}\" r=\"4\"><title>{} · {x_label} {}: {}</title></circle>",
                    escape(label),
                    format_value(*x),
                    format_value(*value)
                );
            }
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(214, 218, 226))
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(chart_error)?;
        }
        root.present().map_err(chart_error)?;
    }
    let end = svg.rfind("</svg>").unwrap_or(svg.len());
    svg.insert_str(end, &format!("<g class=\"hover\">{hover}</g>\n"));
    Ok(svg)
}

/// Exponential moving average: each point `weight` of the one before and
/// the rest its own value.
fn smooth(points: &[(f64, f64)], weight: f64) -> Vec<(f64, f64)> {
    let mut last = None;
    points
        .iter()
        .map(|(x, y)| {
            let value = match last {
                Some(previous) => weight * previous + (1.0 - weight) * y,
                None => *y,
            };
            last = Some(value);
            (*x, value)
        })
        .collect()
}

/// A number as people read it: up to 4 significant digits, exponent form
/// when very large or small.
pub fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 || (1e-3..1e6).contains(&magnitude) {
        let text = format!("{value:.4}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        if text == "-0" {
            "0".into()
        } else {
            text.to_string()
        }
    } else {
        format!("{value:.3e}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn points(history: &MetricHistory, axis: ChartAxis) -> Vec<(f64, f64)> {
    let first_time = history
        .points
        .iter()
        .map(|(_, time, _)| *time)
        .min()
        .unwrap_or(0);
    history
        .points
        .iter()
        .filter(|(_, _, value)| value.is_finite())
        .map(|(step, time, value)| match axis {
            ChartAxis::Step => (*step as f64, *value),
            ChartAxis::Time => ((time - first_time) as f64 / 1000.0, *value),
        })
        .collect()
}

/// The data's extent, widened where it is a single value so the chart has
/// somewhere to draw it.
fn ranges<'a>(
    points: impl Iterator<Item = &'a (f64, f64)>,
) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in points {
        (x_min, x_max, y_min, y_max) = (x_min.min(*x), x_max.max(*x), y_min.min(*y), y_max.max(*y));
    }
    if x_min > x_max {
        return (0.0..1.0, 0.0..1.0);
    }
    let widen = |low: f64, high: f64| {
        let pad = if high > low {
            (high - low) * 0.05
        } else {
            low.abs().max(1.0) * 0.1
        };
        (low - pad)..(high + pad)
    };
    let x = if x_max > x_min {
        x_min..x_max
    } else {
        widen(x_min, x_max)
    };
    (x, widen(y_min, y_max))
}

fn chart_error(err: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %err, "drawing a chart failed");
    AppError::Internal {
        reference: "chart".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(run: &str, key: &str, values: &[f64]) -> MetricHistory {
        MetricHistory {
            run_id: format!("id-{run}"),
            run_name: run.into(),
            key: key.into(),
            points: values
                .iter()
                .enumerate()
                .map(|(step, value)| (step as i64, 1_000 + 500 * step as i64, *value))
                .collect(),
        }
    }

    #[test]
    fn one_chart_per_metric_with_a_line_per_run() {
        let histories = [
            history("a", "loss", &[1.0, 0.5, 0.25]),
            history("b", "loss", &[0.9, 0.6]),
            history("a", "acc", &[0.7]),
        ];
        let charts = metric_charts(&histories, ChartOptions::default()).unwrap();
        assert_eq!(
            charts
                .iter()
                .map(|chart| chart.metric.as_str())
                .collect::<Vec<_>>(),
            vec!["acc", "loss"]
        );
        let loss = &charts[1].svg;
        assert!(loss.starts_with("<svg"), "{loss}");
        assert_eq!(
            loss.matches("stroke-width=\"2\"").count(),
            2 + 2,
            "two runs, and their two legend marks: {loss}"
        );
        assert!(
            loss.contains(">\na\n</text>") && loss.contains(">\nb\n</text>"),
            "a legend names the runs"
        );
        assert_eq!(
            (charts[0].svg.as_str(), charts[0].values.clone()),
            ("", vec![("a".to_string(), 0.7)]),
            "one value per run is a number, not a chart"
        );
        assert!(
            loss.contains("<title>b · step 1: 0.6</title>"),
            "every point says its value on hover: {loss}"
        );
    }

    #[test]
    fn log_scale_and_smoothing_are_drawn_where_they_can_be() {
        let run = history("a", "loss", &[100.0, 10.0, 1.0, 0.1]);
        let log = ChartOptions {
            log_scale: true,
            ..ChartOptions::default()
        };
        let chart = &metric_charts(std::slice::from_ref(&run), log).unwrap()[0];
        assert!(chart.svg.contains("log scale"), "{}", chart.svg);
        assert_eq!(chart.note, None);
        let crossing = history("a", "delta", &[1.0, -1.0]);
        let chart = &metric_charts(&[crossing], log).unwrap()[0];
        assert_eq!(
            chart.note.as_deref(),
            Some("Some values are 0 or below: drawn on a linear scale.")
        );
        assert!(!chart.svg.contains("log scale"));

        assert_eq!(
            smooth(&[(0.0, 1.0), (1.0, 0.0), (2.0, 0.0)], 0.5),
            vec![(0.0, 1.0), (1.0, 0.5), (2.0, 0.25)]
        );
        let smoothed = ChartOptions {
            smoothing: 60,
            ..ChartOptions::default()
        };
        let svg = &metric_charts(&[run], smoothed).unwrap()[0].svg;
        let faded = svg.matches("opacity=\"0.25\"").count();
        let bold = svg.matches("stroke-width=\"2\"").count();
        assert_eq!(
            (faded, bold),
            (1, 1),
            "the smoothed line over the faded raw one: {svg}"
        );
    }

    #[test]
    fn values_read_as_people_write_them() {
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(-0.00001), "-1.000e-5");
        assert_eq!(format_value(12_345_678.0), "1.235e7");
        assert_eq!(format_value(0.0), "0");
    }

    #[test]
    fn the_time_axis_counts_seconds_from_the_first_value() {
        let run = history("a", "loss", &[1.0, 0.5, 0.25]);
        assert_eq!(
            points(&run, ChartAxis::Time),
            vec![(0.0, 1.0), (0.5, 0.5), (1.0, 0.25)]
        );
        assert_eq!(
            points(&run, ChartAxis::Step),
            vec![(0.0, 1.0), (1.0, 0.5), (2.0, 0.25)]
        );
        let time = ChartOptions {
            axis: ChartAxis::Time,
            ..ChartOptions::default()
        };
        let svg = &metric_charts(&[run], time).unwrap()[0].svg;
        assert!(svg.contains("seconds since the first value"));
    }
}
