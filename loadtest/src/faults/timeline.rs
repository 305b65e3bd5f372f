//! The run second by second, and its plot: sends acknowledged and failed
//! (by send time), deliveries per client, clients connected, disconnects
//! and refused connects, with a vertical line at each fault mark.

use std::fmt::Write as _;

use serde::Serialize;

use crate::faults::log::{ClientLog, Mark, Outcome, SendLog};

/// Counts per second from the run's start.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    pub start_ms: u64,
    pub acked: Vec<u64>,
    /// Refused or unanswered.
    pub failed: Vec<u64>,
    /// Messages received, over all clients.
    pub delivered: Vec<u64>,
    /// Clients with a session open at the second's end.
    pub connected: Vec<u64>,
    /// Sessions that ended.
    pub disconnects: Vec<u64>,
    /// Connects refused or failed.
    pub refused_connects: Vec<u64>,
}

impl Timeline {
    pub fn build(start_ms: u64, end_ms: u64, clients: &[ClientLog], sends: &[SendLog]) -> Self {
        let seconds = (end_ms.saturating_sub(start_ms) / 1000 + 1) as usize;
        let bucket = |at: u64| (at.saturating_sub(start_ms) / 1000) as usize;
        let mut t = Self {
            start_ms,
            acked: vec![0; seconds],
            failed: vec![0; seconds],
            delivered: vec![0; seconds],
            connected: vec![0; seconds],
            disconnects: vec![0; seconds],
            refused_connects: vec![0; seconds],
        };
        let add = |series: &mut Vec<u64>, at: u64| {
            if let Some(n) = series.get_mut(bucket(at)) {
                *n += 1;
            }
        };
        for send in sends {
            match send.outcome {
                Outcome::Acked(_) => add(&mut t.acked, send.sent_ms),
                _ => add(&mut t.failed, send.sent_ms),
            }
        }
        for client in clients {
            for d in &client.deliveries {
                add(&mut t.delivered, d.at_ms);
            }
            for (at, _) in &client.connect_failures {
                add(&mut t.refused_connects, *at);
            }
            for session in &client.sessions {
                if let Some(closed) = session.closed_ms {
                    add(&mut t.disconnects, closed);
                }
                let second_end = |i: usize| start_ms + (i as u64 + 1) * 1000;
                for (i, n) in t.connected.iter_mut().enumerate() {
                    let at = second_end(i);
                    if session.opened_ms <= at && session.closed_ms.is_none_or(|c| c > at) {
                        *n += 1;
                    }
                }
            }
        }
        t
    }
}

const W: f64 = 900.0;
const PANEL: f64 = 300.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 70.0;
const GAP: f64 = 50.0;

/// The plot: messages per second above, clients below, the fault marks
/// across both.
pub fn plot(title: &str, timeline: &Timeline, marks: &[Mark], users_per_profile: u32) -> String {
    let seconds = timeline.acked.len().max(1) as f64;
    let x = |s: f64| LEFT + s / seconds * (W - LEFT - RIGHT);
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="20" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    let per_client: Vec<u64> = timeline
        .delivered
        .iter()
        .map(|d| d / u64::from(users_per_profile.max(1)))
        .collect();
    let top_panel: [(&str, &str, &[u64]); 3] = [
        ("sends acknowledged /s", "#2ca02c", &timeline.acked),
        (
            "sends refused or unanswered /s",
            "#d62728",
            &timeline.failed,
        ),
        ("deliveries /s ÷ users per profile", "#1f77b4", &per_client),
    ];
    panel(&mut svg, TOP, "messages per second", &top_panel, &x);
    let bottom_panel: [(&str, &str, &[u64]); 3] = [
        ("clients connected", "#1f77b4", &timeline.connected),
        ("disconnects /s", "#d62728", &timeline.disconnects),
        ("refused connects /s", "#ff7f0e", &timeline.refused_connects),
    ];
    panel(&mut svg, TOP + PANEL + GAP, "clients", &bottom_panel, &x);
    for (i, mark) in marks.iter().enumerate() {
        let s = mark.at_ms.saturating_sub(timeline.start_ms) as f64 / 1000.0;
        if s > seconds {
            continue;
        }
        let (x, y) = (x(s), 36.0 + 12.0 * (i % 3) as f64);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{:.1}" stroke="#555" stroke-dasharray="4 3"/><text x="{:.1}" y="{y:.1}" font-size="10">{}</text>"##,
            TOP + 2.0 * PANEL + GAP,
            x + 2.0,
            escape(&mark.label)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds from the first send</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        height - 10.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// One panel from `top`: a line per series, a y grid, a legend.
fn panel(
    svg: &mut String,
    top: f64,
    name: &str,
    series: &[(&str, &str, &[u64])],
    x: &dyn Fn(f64) -> f64,
) {
    let max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let y = |v: f64| top + PANEL - v / max * PANEL;
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            y(v),
            W - RIGHT,
            y(v),
            LEFT - 6.0,
            y(v) + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">{}</text>"#,
        top - 6.0,
        escape(name)
    );
    for (i, (label, colour, values)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(s, v)| format!("{:.1},{:.1}", x(s as f64 + 0.5), y(*v as f64)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/><text x="{:.1}" y="{:.1}" fill="{colour}">{}</text>"#,
            points.join(" "),
            W - RIGHT - 230.0,
            top + 14.0 + 14.0 * i as f64,
            escape(label)
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::log::{Delivery, SessionLog};

    #[test]
    fn seconds_are_counted_and_marks_drawn() {
        let start = 1_000_000;
        let mut client = ClientLog::new(0, uuid::Uuid::nil(), uuid::Uuid::nil(), "ws");
        client.sessions.push(SessionLog {
            opened_ms: start,
            edge: "edge-1".into(),
            resumed: false,
            closed_ms: Some(start + 1_500),
            end: Some("closed".into()),
        });
        client.deliveries.push(Delivery {
            at_ms: start + 200,
            key: 1,
            offset: 0,
        });
        let send = SendLog {
            key: 1,
            profile: uuid::Uuid::nil(),
            client: 0,
            sent_ms: start + 100,
            answered_ms: None,
            outcome: Outcome::Acked("id".into()),
        };
        let t = Timeline::build(start, start + 2_500, &[client], &[send]);
        assert_eq!(t.acked, [1, 0, 0]);
        assert_eq!(t.delivered, [1, 0, 0]);
        assert_eq!(t.connected, [1, 0, 0]);
        assert_eq!(t.disconnects, [0, 1, 0]);
        let marks = [Mark {
            at_ms: start + 1_000,
            label: "kill -9 <edge-2>".into(),
        }];
        let svg = plot("run", &t, &marks, 8);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("kill -9 &lt;edge-2&gt;"), "the mark, escaped");
    }
}
