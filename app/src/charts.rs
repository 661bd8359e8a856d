//! Metric charts, drawn on the server with plotters' SVG backend. The page
//! embeds the SVG text, so server-rendered and hydrated pages show the same
//! chart and the wasm bundle carries no plotting code. Plotters computes the
//! scales, ticks and axes.

use plotters::prelude::*;

use crate::error::AppError;
use crate::model::{ChartAxis, MetricChart, MetricHistory};

const SIZE: (u32, u32) = (640, 320);

/// One chart per metric key, each run a line on it, in the order of `histories`.
pub fn metric_charts(
    histories: &[MetricHistory],
    axis: ChartAxis,
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
            Ok(MetricChart {
                metric: key.to_string(),
                svg: line_chart(&lines, axis)?,
            })
        })
        .collect()
}

fn line_chart(lines: &[&MetricHistory], axis: ChartAxis) -> Result<String, AppError> {
    let series: Vec<(String, Vec<(f64, f64)>)> = lines
        .iter()
        .map(|history| (history.run_name.clone(), points(history, axis)))
        .collect();
    let all = series.iter().flat_map(|(_, points)| points.iter());
    let (x_range, y_range) = ranges(all);
    let x_label = match axis {
        ChartAxis::Step => "step",
        ChartAxis::Time => "seconds since the first value",
    };

    let mut svg = String::new();
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
            .light_line_style(RGBColor(236, 238, 242))
            .bold_line_style(RGBColor(214, 218, 226))
            .label_style(("sans-serif", 13).into_font().color(&RGBColor(70, 78, 92)))
            .draw()
            .map_err(chart_error)?;
        for (index, (label, points)) in series.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let line = chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(chart_error)?;
            if series.len() > 1 {
                line.label(label.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
            // A lone value has no line to draw: mark it.
            if points.len() == 1 {
                chart
                    .draw_series(
                        points
                            .iter()
                            .map(|point| Circle::new(*point, 4, color.filled())),
                    )
                    .map_err(chart_error)?;
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
    Ok(svg)
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
        let charts = metric_charts(&histories, ChartAxis::Step).unwrap();
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
        assert!(
            charts[0].svg.contains("<circle"),
            "a single value is marked"
        );
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
        let svg = &metric_charts(&[run], ChartAxis::Time).unwrap()[0].svg;
        assert!(svg.contains("seconds since the first value"));
    }
}
