//! The latency plot, a small hand-written SVG of one or two panels:
//! percentile curves (x: 50% .. 99.99% on a log scale of 1/(1-q), y: ms),
//! one per series; below them, when there is a latency series over time,
//! p50 (dashed) and p99 (solid) per interval of the sending phase (x: s
//! from its start, by send time), one colour per series as above.

use std::fmt::Write as _;

use crate::intervals::Intervals;
use crate::stats::Latency;

const W: f64 = 760.0;
/// Each panel's height.
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

/// An SVG titled `title`: the percentiles of each of `series`, and the
/// p50 and p99 per interval of each of `over_time` (a second panel, left
/// out when no series has a delivery).
pub fn plot(
    title: &str,
    series: &[(String, &Latency)],
    over_time: &[(String, &Intervals)],
) -> String {
    let over_time: Vec<&(String, &Intervals)> =
        over_time.iter().filter(|(_, i)| !i.is_empty()).collect();
    let height = if over_time.is_empty() { H } else { 2.0 * H };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
"#,
        W / 2.0,
        escape(title)
    );
    percentiles(&mut svg, series);
    if !over_time.is_empty() {
        intervals(&mut svg, H, &over_time);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Horizontal grid lines and their labels in ms, for a panel from `top`.
fn y_grid(svg: &mut String, top: f64, y_max_ms: f64) {
    for i in 0..=5 {
        let ms = y_max_ms * f64::from(i) / 5.0;
        let y = top + TOP + (1.0 - ms / y_max_ms) * (H - TOP - BOTTOM);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{ms:.1}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
}

/// The axes' names, for a panel from `top`.
fn axis_names(svg: &mut String, top: f64, x_name: &str) {
    let mid = top + H / 2.0;
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{x_name}</text><text x="16" y="{mid:.1}" transform="rotate(-90 16 {mid:.1})" text-anchor="middle">latency (ms)</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        top + H - 20.0,
    );
}

/// The first panel: each series' latency by percentile.
fn percentiles(svg: &mut String, series: &[(String, &Latency)]) {
    let series: Vec<&(String, &Latency)> = series.iter().filter(|(_, h)| !h.is_empty()).collect();
    let y_max_ms = series
        .iter()
        .map(|(_, h)| h.quantile_us(0.9999) as f64 / 1000.0)
        .fold(1.0_f64, f64::max)
        * 1.1;
    let px = |x: f64| LEFT + (x - X_MIN) / (X_MAX - X_MIN) * (W - LEFT - RIGHT);
    let py = |ms: f64| TOP + (1.0 - ms / y_max_ms) * (H - TOP - BOTTOM);
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
    y_grid(svg, 0.0, y_max_ms);
    axis_names(svg, 0.0, "percentile");
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
}

/// The second panel, from `top`: p50 (dashed) and p99 (solid) of each
/// series per interval, a point at each interval's middle; an interval
/// without deliveries breaks the line.
fn intervals(svg: &mut String, top: f64, series: &[&(String, &Intervals)]) {
    let x_max = series
        .iter()
        .flat_map(|(_, i)| i.histograms().map(|(_, end, _)| end))
        .fold(0.0_f64, f64::max)
        .max(1e-3);
    let y_max_ms = series
        .iter()
        .flat_map(|(_, i)| i.histograms().filter_map(|(_, _, h)| h))
        .map(|h| h.quantile_us(0.99) as f64 / 1000.0)
        .fold(1.0_f64, f64::max)
        // Room above the highest line for the legend.
        * 1.35;
    let px = |secs: f64| LEFT + secs / x_max * (W - LEFT - RIGHT);
    let py = |ms: f64| top + TOP + (1.0 - ms / y_max_ms) * (H - TOP - BOTTOM);
    for i in 0..=5 {
        let secs = x_max * f64::from(i) / 5.0;
        let x = px(secs);
        let label = if x_max >= 10.0 {
            format!("{secs:.0}")
        } else {
            format!("{secs:.1}")
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            top + TOP,
            top + H - BOTTOM,
            top + H - BOTTOM + 16.0
        );
    }
    y_grid(svg, top, y_max_ms);
    axis_names(svg, top, "seconds into the sending, by send time");
    let width_secs = series
        .first()
        .map_or(0.0, |(_, i)| i.plan().width_us as f64 / 1e6);
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="14">p99 (solid) and p50 (dashed) per {width_secs} s interval</text>"#,
        W / 2.0,
        top + 22.0
    );
    for (n, (name, intervals)) in series.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        for (q, dash) in [(0.99, ""), (0.5, r#" stroke-dasharray="6,4""#)] {
            // Runs of intervals with deliveries, each its own line.
            let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for (start, end, h) in intervals.histograms() {
                match h {
                    Some(h) => runs.last_mut().expect("a run").push((
                        px((start + end) / 2.0),
                        py(h.quantile_us(q) as f64 / 1000.0),
                    )),
                    None => runs.push(Vec::new()),
                }
            }
            for run in runs.iter().filter(|r| !r.is_empty()) {
                let points: Vec<String> =
                    run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let _ = writeln!(
                    svg,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
                    points.join(" ")
                );
                for (x, y) in run {
                    let _ = writeln!(
                        svg,
                        r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{color}"/>"#
                    );
                }
            }
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" fill="{color}">{}</text>"#,
            LEFT + 10.0,
            top + TOP + 16.0 + 16.0 * n as f64,
            escape(name),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intervals::IntervalPlan;

    #[test]
    fn the_plot_is_an_svg_with_one_curve_per_series() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for us in 1..1000 {
            a.record_us(us * 10);
            b.record_us(us * 20);
        }
        let svg = plot("t <1>", &[("rill".into(), &a), ("broker".into(), &b)], &[]);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("t &lt;1&gt;"));
        assert!(svg.contains(r#"height="420""#), "one panel");
    }

    #[test]
    fn the_series_over_time_is_a_second_panel_with_p50_and_p99() {
        let t0 = 1_700_000_000_000_000;
        let mut over_time = Intervals::new(IntervalPlan::new(t0, 4.0, 1.0));
        let mut whole = Latency::default();
        // Intervals 0, 1 and 3 have deliveries; 2 has none.
        for second in [0, 1, 3] {
            for n in 1..=100 {
                over_time.record(t0 + second * 1_000_000 + n, n * 100);
                whole.record_us(n * 100);
            }
        }
        let empty = Intervals::new(IntervalPlan::new(t0, 4.0, 1.0));
        let svg = plot(
            "t",
            &[("rill".into(), &whole)],
            &[("rill".into(), &over_time), ("nothing".into(), &empty)],
        );
        assert!(svg.contains(r#"height="840""#), "two panels");
        // One percentile curve; p99 and p50 each broken by the empty
        // interval into two runs.
        assert_eq!(svg.matches("<polyline").count(), 1 + 2 * 2);
        assert_eq!(svg.matches("<circle").count(), 2 * 3);
        assert!(!svg.contains(">nothing<"), "an empty series is left out");
    }
}
