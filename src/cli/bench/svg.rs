//! Small hand-written SVG charts for the sweeps (no dependency).

use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn frame(out: &mut String, title: &str, xlabel: &str, ylabel: &str, ymax: f64) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>",
        W / 2.0,
        esc(title),
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 14.0,
        esc(xlabel),
        TOP + (H - TOP - BOTTOM) / 2.0,
        TOP + (H - TOP - BOTTOM) / 2.0,
        esc(ylabel)
    );
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        let y = H - BOTTOM - (H - TOP - BOTTOM) * i as f64 / 5.0;
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            human(v)
        );
    }
}

/// Lines over a log-scale x axis (connection counts), one per series.
pub fn line_chart(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[(&str, &[(f64, f64)])],
) -> String {
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut xmin, mut xmax, mut ymax) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in pts {
        xmin = xmin.min(x.max(1.0));
        xmax = xmax.max(x.max(1.0));
        ymax = ymax.max(y);
    }
    if xmin > xmax {
        (xmin, xmax) = (1.0, 10.0);
    }
    let (lx0, lx1) = (xmin.log10(), xmax.log10().max(xmin.log10() + 1e-9));
    let ymax = nice_max(ymax);
    let px = |x: f64| LEFT + (x.max(1.0).log10() - lx0) / (lx1 - lx0) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / ymax * (H - TOP - BOTTOM);
    let mut out = String::new();
    frame(&mut out, title, xlabel, ylabel, ymax);
    let mut xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for x in xs {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            px(x),
            H - BOTTOM + 18.0,
            x
        );
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for &(x, y) in pts.iter() {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{c}\"/>",
                px(x),
                py(y)
            );
        }
        let ly = TOP + 16.0 * i as f64 + 8.0;
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"{:.1}\" width=\"12\" height=\"3\" fill=\"{c}\"/><text x=\"{}\" y=\"{:.1}\">{}</text>",
            LEFT + 12.0,
            ly,
            LEFT + 30.0,
            ly + 5.0,
            esc(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// One bar per labelled value.
pub fn bar_chart(title: &str, ylabel: &str, bars: &[(String, f64)]) -> String {
    let ymax = nice_max(bars.iter().map(|b| b.1).fold(0.0, f64::max));
    let mut out = String::new();
    frame(&mut out, title, "", ylabel, ymax);
    let slot = (W - LEFT - RIGHT) / bars.len().max(1) as f64;
    for (i, (label, v)) in bars.iter().enumerate() {
        let h = v / ymax * (H - TOP - BOTTOM);
        let x = LEFT + slot * i as f64 + slot * 0.2;
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            H - BOTTOM - h,
            slot * 0.6,
            COLORS[i % COLORS.len()],
            x + slot * 0.3,
            H - BOTTOM + 18.0,
            esc(label),
            x + slot * 0.3,
            H - BOTTOM - h - 5.0,
            human(*v)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed() {
        let s = line_chart(
            "t<1>",
            "x",
            "y",
            &[("a", &[(1.0, 5.0), (64.0, 10.0)]), ("b", &[])],
        );
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("t&lt;1&gt;"));
        assert_eq!(s.matches("<circle").count(), 2);
        let b = bar_chart("b", "y", &[("one".into(), 1.0), ("two".into(), 2.5)]);
        assert_eq!(b.matches("<rect").count(), 3); // background + 2 bars
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(human(1_500_000.0), "1.5M");
    }
}
