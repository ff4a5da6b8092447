//! Charts of the benchmarks, drawn with `plotters` into SVG files: a line
//! chart for sweeps (one line per side, connections on a log axis) and a
//! bar chart for side-by-side figures.

use std::path::Path;

use plotters::prelude::*;

use bypass::{Error, Result};

const SIZE: (u32, u32) = (800, 480);
const COLORS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
];

fn err(e: impl std::fmt::Display) -> Error {
    Error::Config(format!("drawing the chart: {e}"))
}

/// One line: its legend and its (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

/// Upper end of an axis holding `v` (with room above).
fn top(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v * 1.1
    } else {
        1.0
    }
}

/// A line chart of `series` (x on a log scale) written to `path` as SVG.
pub fn line_chart(
    path: &Path,
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[Series],
) -> Result<()> {
    let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let (mut x0, mut x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    if x0 > x1 || x0 <= 0.0 {
        (x0, x1) = (1.0, 10.0);
    }
    if x0 == x1 {
        (x0, x1) = (x0 / 2.0, x1 * 2.0);
    }
    let ymax = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((x0..x1).log_scale(), 0.0..top(ymax))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(xlabel)
        .y_desc(ylabel)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// A bar chart, one bar per `(label, value)`, written to `path` as SVG.
pub fn bar_chart(path: &Path, title: &str, ylabel: &str, bars: &[(String, f64)]) -> Result<()> {
    let ymax = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let n = bars.len().max(1) as u32;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((0u32..n).into_segmented(), 0.0..top(ymax))
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(ylabel)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_labels(bars.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => {
                bars.get(*i as usize).map_or(String::new(), |b| b.0.clone())
            }
            _ => String::new(),
        })
        .draw()
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let color = COLORS[i % COLORS.len()];
            let i = i as u32;
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *v),
                ],
                color.filled(),
            );
            r.set_margin(0, 0, 20, 20);
            r
        }))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("bypass-chart-{}-{name}.svg", std::process::id()))
    }

    #[test]
    fn line_chart_draws_every_series() {
        let p = tmp("line");
        let s = vec![
            ("ours".to_string(), vec![(1.0, 10.0), (64.0, 100.0)]),
            ("kernel-epoll".to_string(), vec![(1.0, 5.0), (64.0, 20.0)]),
        ];
        line_chart(&p, "t", "connections", "tx/s", &s).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("kernel-epoll") && svg.contains("ours"));
        assert!(svg.matches("<polyline").count() >= 2, "{svg}");
    }

    #[test]
    fn bar_chart_labels_every_bar_and_survives_one_point() {
        let p = tmp("bar");
        let b = vec![("1 core".to_string(), 10.0), ("2 cores".to_string(), 19.0)];
        bar_chart(&p, "scale", "tx/s", &b).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.contains("1 core") && svg.contains("2 cores"), "{svg}");
        line_chart(&p, "one", "x", "y", &[("a".into(), vec![(1.0, 0.0)])]).unwrap();
        let _ = std::fs::remove_file(&p);
    }
}
