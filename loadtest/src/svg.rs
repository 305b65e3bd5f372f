//! The latency plot: percentile curves (x: 50% .. 99.99% on a log scale of
//! 1/(1-q), y: ms), one per series, as a small hand-written SVG.

use std::fmt::Write as _;

use crate::stats::Latency;

const W: f64 = 760.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// x runs from log10(1/(1-0.5)) to log10(1/(1-0.9999)).
const X_MIN: f64 = std::f64::consts::LOG10_2;
const X_MAX: f64 = 4.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An SVG of the series' latency percentiles, titled `title`.
pub fn plot(title: &str, series: &[(String, &Latency)]) -> String {
    let series: Vec<&(String, &Latency)> = series.iter().filter(|(_, h)| !h.is_empty()).collect();
    let y_max_ms = series
        .iter()
        .map(|(_, h)| h.quantile_us(0.9999) as f64 / 1000.0)
        .fold(1.0_f64, f64::max)
        * 1.1;
    let px = |x: f64| LEFT + (x - X_MIN) / (X_MAX - X_MIN) * (W - LEFT - RIGHT);
    let py = |ms: f64| TOP + (1.0 - ms / y_max_ms) * (H - TOP - BOTTOM);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
"#,
        W / 2.0,
        escape(title)
    );
    // Axes and grid.
    for (q, label) in [
        (0.5_f64, "50%"),
        (0.9, "90%"),
        (0.99, "99%"),
        (0.999, "99.9%"),
        (0.9999, "99.99%"),
    ] {
        let x = px((1.0 / (1.0 - q)).log10());
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 16.0
        );
    }
    for i in 0..=5 {
        let ms = y_max_ms * f64::from(i) / 5.0;
        let y = py(ms);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{ms:.1}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text><text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">latency (ms)</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 20.0,
        H / 2.0,
        H / 2.0
    );
    for (i, (name, histogram)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = (0..=200)
            .map(|step| {
                let x = X_MIN + (X_MAX - X_MIN) * f64::from(step) / 200.0;
                let q = 1.0 - 10f64.powf(-x);
                let ms = histogram.quantile_us(q) as f64 / 1000.0;
                format!("{:.1},{:.1}", px(x), py(ms))
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let s = histogram.summary();
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" fill="{color}">{}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})</text>"#,
            LEFT + 10.0,
            TOP + 16.0 + 16.0 * i as f64,
            escape(name),
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            s.count
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_is_an_svg_with_one_curve_per_series() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for us in 1..1000 {
            a.record_us(us * 10);
            b.record_us(us * 20);
        }
        let svg = plot("t <1>", &[("rill".into(), &a), ("broker".into(), &b)]);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("t &lt;1&gt;"));
    }
}
