//! Metric charts, drawn on the server with plotters' SVG backend. The page
//! embeds the SVG text, so server-rendered and hydrated pages show the same
//! chart and the wasm bundle carries no plotting code. Plotters computes the
//! scales, ticks and axes; every point gets an SVG `<title>`, so hovering
//! shows its value with no script. Colours are plain attributes the
//! stylesheet re-colours in dark mode.

use std::fmt::Write;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::error::AppError;
use crate::model::{
    ChartAxis, ChartOptions, ComparePlots, MetricChart, MetricHistory, RunRow, TrafficPoint,
    TrafficReport,
};

const SIZE: (u32, u32) = (640, 320);
/// Past this many points a chart gets a hover mark on every n-th only.
const HOVER_POINTS: usize = 1500;

/// One chart per metric key, each run a line on it, in the order of `histories`.
pub fn metric_charts(
    histories: &[MetricHistory],
    options: ChartOptions,
) -> Result<Vec<MetricChart>, AppError> {
    sorted_unique(histories.iter().map(|history| history.key.as_str()))
        .into_iter()
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
    let in_range = |x: f64| {
        options.x_from.is_none_or(|from| x >= from) && options.x_to.is_none_or(|to| x <= to)
    };
    let series: Vec<(String, Vec<(f64, f64)>)> = lines
        .iter()
        .map(|history| {
            let points = points(history, options.axis)
                .into_iter()
                .filter(|(x, _)| in_range(*x))
                .collect();
            (history.run_name.clone(), points)
        })
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
        let y_desc = if log_scale { "log scale" } else { "" };
        let mut chart = plane(&root, x_range, y_range, (x_label, y_desc), &y_label)?;
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
                    "<circle cx=\"{px}\" cy=\"{py}\" r=\"4\"><title>{} · {} {}: {}</title></circle>",
                    escape(label),
                    escape(x_label),
                    format_value(*x),
                    format_value(*value)
                );
            }
        }
        if series.len() > 1 {
            draw_legend(&mut chart)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(with_hover(svg, &hover))
}

/// A deployment's traffic: requests per second, errors and latency
/// (p50, p95, p99), a line per version, each change of version a vertical
/// mark. No charts when nothing was requested in the range.
pub fn traffic_charts(report: &TrafficReport) -> Result<Vec<MetricChart>, AppError> {
    if report
        .versions
        .iter()
        .all(|version| version.points.is_empty())
    {
        return Ok(Vec::new());
    }
    type Value = fn(&TrafficPoint) -> Option<f64>;
    let rate: Value = |point| Some(point.requests_per_second);
    let errors: Value = |point| point.error_percent;
    let p50: Value = |point| point.p50_ms;
    let p95: Value = |point| point.p95_ms;
    let p99: Value = |point| point.p99_ms;
    // (title, unit, the lines each version gets: (suffix, value))
    type Chart<'a> = (&'a str, &'a str, Vec<(&'a str, Value)>);
    let charts: [Chart; 3] = [
        ("Requests per second", "requests/s", vec![("", rate)]),
        ("Errors", "% of requests", vec![("", errors)]),
        (
            "Latency",
            "ms",
            vec![(" p50", p50), (" p95", p95), (" p99", p99)],
        ),
    ];
    charts
        .into_iter()
        .map(|(title, unit, values)| {
            let mut series = Vec::new();
            for version in &report.versions {
                for (suffix, value) in &values {
                    let points: Vec<(f64, f64)> = version
                        .points
                        .iter()
                        .filter_map(|point| value(point).map(|v| (point.at_ms as f64, v)))
                        .collect();
                    series.push((format!("v{}{suffix}", version.version), points));
                }
            }
            Ok(MetricChart {
                metric: title.to_string(),
                svg: time_chart(report, &series, unit, values.len())?,
                values: Vec::new(),
                note: None,
            })
        })
        .collect()
}

/// Lines over the report's time range; `per_version` lines in a row share
/// a version's colour (p50 fainter than p99).
fn time_chart(
    report: &TrafficReport,
    series: &[(String, Vec<(f64, f64)>)],
    unit: &str,
    per_version: usize,
) -> Result<String, AppError> {
    let x_range = report.from_ms as f64..report.to_ms as f64;
    let top = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(_, y)| *y))
        .fold(0.0f64, f64::max);
    let y_range = 0.0..if top > 0.0 { top * 1.1 } else { 1.0 };
    let long = report.to_ms - report.from_ms > 24 * 3600 * 1000;
    let x_label = move |millis: &f64| clock(*millis as i64, long);
    let mut svg = String::new();
    let mut hover = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let mut chart = plane_with(
            &root,
            x_range,
            y_range.clone(),
            ("time (UTC)", unit),
            &x_label,
            &|value| format_value(*value),
        )?;
        for (at, label) in &report.changes {
            let x = *at as f64;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, y_range.start), (x, y_range.end)],
                    RGBColor(120, 126, 140).stroke_width(1),
                )))
                .map_err(chart_error)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (x, y_range.end),
                    ("sans-serif", 12).into_font().color(&RGBColor(70, 78, 92)),
                )))
                .map_err(chart_error)?;
        }
        for (index, (label, points)) in series.iter().enumerate() {
            let (version, within) = (index / per_version, index % per_version);
            let strength = (within + 1) as f64 / per_version as f64;
            let color = Palette99::pick(version)
                .to_rgba()
                .mix(0.35 + 0.65 * strength);
            let line = chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(chart_error)?;
            line.label(label.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
            for point in points {
                let (px, py) = chart.backend_coord(point);
                let _ = write!(
                    hover,
                    "<circle cx=\"{px}\" cy=\"{py}\" r=\"4\"><title>{} · {}: {} {}</title></circle>",
                    escape(label),
                    clock(point.0 as i64, true),
                    format_value(point.1),
                    escape(unit)
                );
            }
        }
        draw_legend(&mut chart)?;
        root.present().map_err(chart_error)?;
    }
    // The change marks' labels, hoverable too.
    let marks: String = report
        .changes
        .iter()
        .map(|(at, label)| format!("<title>{} at {}</title>", escape(label), clock(*at, true)))
        .collect();
    Ok(with_hover(
        svg,
        &format!("{hover}<g class=\"changes\">{marks}</g>"),
    ))
}

/// `HH:MM`, with the date (`MM-DD HH:MM`) for spans longer than a day.
fn clock(millis: i64, with_date: bool) -> String {
    let text = crate::time::format_millis(Some(millis));
    // "YYYY-MM-DD HH:MM UTC"
    match (with_date, text.get(5..16), text.get(11..16)) {
        (true, Some(dated), _) => dated.to_string(),
        (false, _, Some(time)) => time.to_string(),
        _ => text,
    }
}

fn sorted_unique<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut keys: Vec<&str> = keys.collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The numeric columns of the runs: `params.<key>` whose values all parse
/// as numbers, and `metrics.<key>`; with each run's value, where it has one.
fn numeric_columns(runs: &[RunRow]) -> Vec<(String, Vec<Option<f64>>)> {
    let mut columns: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    let param_keys = sorted_unique(
        runs.iter()
            .flat_map(|run| run.params.iter().map(|(key, _)| key.as_str())),
    );
    for key in param_keys {
        let values: Vec<Option<Option<f64>>> = runs
            .iter()
            .map(|run| {
                run.params
                    .iter()
                    .find(|(name, _)| name == key)
                    .map(|(_, value)| value.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
            })
            .collect();
        // A parameter is numeric when every value it has is a number.
        if values.iter().all(|value| !matches!(value, Some(None))) {
            columns.push((
                format!("params.{key}"),
                values.into_iter().map(Option::flatten).collect(),
            ));
        }
    }
    let metric_keys = sorted_unique(
        runs.iter()
            .flat_map(|run| run.metrics.iter().map(|(key, _)| key.as_str())),
    );
    for key in metric_keys {
        let values = runs
            .iter()
            .map(|run| {
                run.metrics
                    .iter()
                    .find(|(name, _)| name == key)
                    .map(|(_, value)| *value)
                    .filter(|value| value.is_finite())
            })
            .collect();
        columns.push((format!("metrics.{key}"), values));
    }
    columns
}

/// A scatter of `x` against `y` (default: the first numeric parameter
/// against the first metric) and the parallel coordinates of every numeric
/// column, one line per run.
pub fn compare_plots(
    runs: &[RunRow],
    x: Option<String>,
    y: Option<String>,
) -> Result<ComparePlots, AppError> {
    let columns = numeric_columns(runs);
    let names: Vec<String> = columns.iter().map(|(name, _)| name.clone()).collect();
    let known = |wanted: Option<String>| -> Result<Option<String>, AppError> {
        match wanted.filter(|name| !name.is_empty()) {
            Some(name) if names.contains(&name) => Ok(Some(name)),
            Some(name) => Err(AppError::InvalidInput(format!(
                "\"{name}\" is not a numeric parameter or metric of these runs"
            ))),
            None => Ok(None),
        }
    };
    // By default the first parameter that differs between the runs.
    let varies = |values: &[Option<f64>]| {
        let mut present = values.iter().flatten();
        present
            .next()
            .is_some_and(|first| present.any(|value| value != first))
    };
    let x = known(x)?
        .or_else(|| {
            columns
                .iter()
                .find(|(name, values)| name.starts_with("params.") && varies(values))
                .map(|(name, _)| name.clone())
        })
        .or_else(|| names.first().cloned());
    let y = known(y)?.or_else(|| {
        names
            .iter()
            .find(|name| name.starts_with("metrics.") && Some(*name) != x.as_ref())
            .cloned()
    });
    let column = |name: &Option<String>| {
        name.as_ref()
            .and_then(|name| columns.iter().find(|(column, _)| column == name))
    };
    let scatter = match (column(&x), column(&y)) {
        (Some((x_name, xs)), Some((y_name, ys))) => scatter_plot(runs, x_name, xs, y_name, ys)?,
        _ => String::new(),
    };
    let parallel = if columns.len() >= 2 {
        parallel_plot(runs, &columns)?
    } else {
        String::new()
    };
    Ok(ComparePlots {
        columns: names,
        x,
        y,
        scatter,
        parallel,
    })
}

fn scatter_plot(
    runs: &[RunRow],
    x_name: &str,
    xs: &[Option<f64>],
    y_name: &str,
    ys: &[Option<f64>],
) -> Result<String, AppError> {
    let points: Vec<(usize, (f64, f64))> = xs
        .iter()
        .zip(ys)
        .enumerate()
        .filter_map(|(index, (x, y))| Some((index, ((*x)?, (*y)?))))
        .collect();
    if points.is_empty() {
        return Ok(String::new());
    }
    let (x_range, y_range) = ranges(points.iter().map(|(_, point)| point));
    let mut svg = String::new();
    let mut hover = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let mut chart = plane(&root, x_range, y_range, (x_name, y_name), &|value| {
            format_value(*value)
        })?;
        for (index, point) in &points {
            let color = Palette99::pick(*index).to_rgba();
            chart
                .draw_series(std::iter::once(Circle::new(*point, 5, color.filled())))
                .map_err(chart_error)?;
            let (px, py) = chart.backend_coord(point);
            let _ = write!(
                hover,
                "<circle cx=\"{px}\" cy=\"{py}\" r=\"6\"><title>{}: {} {}, {} {}</title></circle>",
                escape(runs[*index].display_name()),
                escape(x_name),
                format_value(point.0),
                escape(y_name),
                format_value(point.1)
            );
        }
        root.present().map_err(chart_error)?;
    }
    Ok(with_hover(svg, &hover))
}

/// One vertical axis per column, each scaled to its own range (low at the
/// bottom), and a line per run through its values.
fn parallel_plot(
    runs: &[RunRow],
    columns: &[(String, Vec<Option<f64>>)],
) -> Result<String, AppError> {
    let scaled: Vec<Vec<Option<f64>>> = columns
        .iter()
        .map(|(_, values)| {
            let present = values.iter().flatten();
            let (low, high) = present.fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), v| {
                (low.min(*v), high.max(*v))
            });
            values
                .iter()
                .map(|value| {
                    value.map(|v| {
                        if high > low {
                            (v - low) / (high - low)
                        } else {
                            0.5
                        }
                    })
                })
                .collect()
        })
        .collect();
    let last = (columns.len() - 1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (SIZE.0, SIZE.1 + 40)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(16)
            .margin_left(40)
            .margin_right(40)
            .x_label_area_size(56)
            .build_cartesian_2d(-0.02..last + 0.02, -0.05..1.05)
            .map_err(chart_error)?;
        let axis_style = RGBColor(70, 78, 92);
        let label = ("sans-serif", 12).into_font().color(&RGBColor(70, 78, 92));
        for (index, (name, values)) in columns.iter().enumerate() {
            let x = index as f64;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, 1.0)],
                    axis_style,
                )))
                .map_err(chart_error)?;
            let present = values.iter().flatten();
            let (low, high) = present.fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), v| {
                (low.min(*v), high.max(*v))
            });
            let ends = if low.is_finite() {
                vec![(format_value(low), 0.0), (format_value(high), 1.0)]
            } else {
                Vec::new()
            };
            for (text, y) in ends {
                chart
                    .draw_series(std::iter::once(Text::new(text, (x, y), label.clone())))
                    .map_err(chart_error)?;
            }
            let name = name
                .strip_prefix("metrics.")
                .or_else(|| name.strip_prefix("params."))
                .unwrap_or(name);
            chart
                .draw_series(std::iter::once(Text::new(
                    name.to_string(),
                    (x, -0.05),
                    label.clone(),
                )))
                .map_err(chart_error)?;
        }
        for (run_index, run) in runs.iter().enumerate() {
            let color = Palette99::pick(run_index).to_rgba();
            let points: Vec<(f64, f64)> = scaled
                .iter()
                .enumerate()
                .filter_map(|(column, values)| values[run_index].map(|v| (column as f64, v)))
                .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(chart_error)?
                .label(run.display_name().to_string())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(214, 218, 226))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

type Plane<'c, 'b> = ChartContext<'c, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A white plane with a light grid over `x` × `y`, its axes described
/// (`descs`: x, y) and the y labels written by `y_label`.
fn plane<'c, 'b>(
    root: &'c DrawingArea<SVGBackend<'b>, Shift>,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    descs: (&str, &str),
    y_label: &dyn Fn(&f64) -> String,
) -> Result<Plane<'c, 'b>, AppError> {
    plane_with(root, x, y, descs, &|value| format_value(*value), y_label)
}

fn plane_with<'c, 'b>(
    root: &'c DrawingArea<SVGBackend<'b>, Shift>,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    descs: (&str, &str),
    x_label: &dyn Fn(&f64) -> String,
    y_label: &dyn Fn(&f64) -> String,
) -> Result<Plane<'c, 'b>, AppError> {
    root.fill(&WHITE).map_err(chart_error)?;
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_desc(descs.0)
        .y_desc(descs.1)
        .x_label_formatter(x_label)
        .y_label_formatter(y_label)
        .light_line_style(RGBColor(236, 238, 242))
        .bold_line_style(RGBColor(214, 218, 226))
        .label_style(("sans-serif", 13).into_font().color(&RGBColor(70, 78, 92)))
        .draw()
        .map_err(chart_error)?;
    Ok(chart)
}

/// The SVG with the invisible hover marks (`<circle><title>`) on top.
/// The labelled lines' legend, in the charts' style.
fn draw_legend<'c, 'b: 'c>(chart: &mut Plane<'c, 'b>) -> Result<(), AppError> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(214, 218, 226))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(chart_error)
}

fn with_hover(mut svg: String, hover: &str) -> String {
    let end = svg.rfind("</svg>").unwrap_or(svg.len());
    svg.insert_str(end, &format!("<g class=\"hover\">{hover}</g>\n"));
    svg
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

/// Names from MLflow (runs, parameters, metrics) go into SVG that the page
/// inserts as HTML: whatever MLflow lets through, they stay text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
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

    fn run(name: &str, params: &[(&str, &str)], metrics: &[(&str, f64)]) -> RunRow {
        RunRow {
            run_id: format!("id-{name}"),
            run_name: name.into(),
            status: "FINISHED".into(),
            user: "u".into(),
            start_time: None,
            end_time: None,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn compare_plots_a_parameter_against_a_metric_and_every_column_in_parallel() {
        let runs = [
            run(
                "a",
                &[("lr", "0.1"), ("optimizer", "adam")],
                &[("auc", 0.8), ("loss", 0.3)],
            ),
            run(
                "b",
                &[("lr", "0.01"), ("optimizer", "sgd")],
                &[("auc", 0.9), ("loss", 0.2)],
            ),
        ];
        let plots = compare_plots(&runs, None, None).unwrap();
        assert_eq!(
            plots.columns,
            ["params.lr", "metrics.auc", "metrics.loss"],
            "a text parameter is no axis"
        );
        assert_eq!(
            (plots.x.as_deref(), plots.y.as_deref()),
            (Some("params.lr"), Some("metrics.auc"))
        );
        assert!(
            plots
                .scatter
                .contains("<title>b: params.lr 0.01, metrics.auc 0.9</title>"),
            "{}",
            plots.scatter
        );
        assert_eq!(
            plots.parallel.matches("stroke-width=\"2\"").count(),
            4,
            "a line per run, and the legend"
        );
        let chosen = compare_plots(
            &runs,
            Some("metrics.loss".into()),
            Some("metrics.auc".into()),
        )
        .unwrap();
        assert!(chosen.scatter.contains("metrics.loss 0.3, metrics.auc 0.8"));
        assert_eq!(
            compare_plots(&runs, Some("params.optimizer".into()), None)
                .unwrap_err()
                .to_string(),
            "\"params.optimizer\" is not a numeric parameter or metric of these runs"
        );
    }

    #[test]
    fn names_from_mlflow_stay_text_in_the_drawn_svg() {
        let hostile = "x</title><script>alert(1)</script>";
        let runs = [
            run("<b>a</b>", &[(hostile, "0.1")], &[(hostile, 0.8)]),
            run("b\"", &[(hostile, "0.2")], &[(hostile, 0.9)]),
        ];
        let plots = compare_plots(&runs, None, None).unwrap();
        for svg in [&plots.scatter, &plots.parallel] {
            assert!(!svg.is_empty());
            assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
        }
        assert!(
            plots
                .scatter
                .contains("params.x&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt; 0.1"),
            "{}",
            plots.scatter
        );
        let histories = [history(hostile, hostile, &[1.0, 0.5])];
        let charts = metric_charts(&histories, ChartOptions::default()).unwrap();
        assert!(!charts[0].svg.contains("<script>"), "{}", charts[0].svg);
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
