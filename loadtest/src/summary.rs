//! The coordinator's summary on stderr: one line for the run, one per
//! interval of the latency series (the probe's beside the sessions'), and
//! the broker probe's and the edges' own latency.

use crate::intervals::IntervalSummary;
use crate::report::Report;

/// The run in a few lines on stderr: totals, then the latency per
/// interval, then the broker probe and the edges' own view.
pub fn print(report: &Report) {
    let l = report.latency.as_ref();
    eprintln!(
        "rill-load: {}: connected {}/{} (failed {}), sent {} acked {}, deliveries {} of {} expected (lost {}, dup {}), p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms; edge {:?} B/session ({:?} marginal, {:?} held), {:.2} CPU-s, {:?} deliveries/CPU-s",
        report.label,
        report.connect.connected,
        report.connect.attempted,
        report.connect.failed,
        report.messages.sent,
        report.messages.acked,
        report.deliveries.unique,
        report.deliveries.expected,
        report.deliveries.lost,
        report.deliveries.duplicated,
        l.map_or(0.0, |l| l.p50_ms),
        l.map_or(0.0, |l| l.p99_ms),
        l.map_or(0.0, |l| l.p999_ms),
        l.map_or(0.0, |l| l.max_ms),
        report.edges.bytes_per_session.map(|b| b.round()),
        report.edges.marginal_bytes_per_session.map(|b| b.round()),
        report.edges.bytes_per_session_held.map(|b| b.round()),
        report.edges.cpu_secs_sending,
        report.edges.deliveries_per_cpu_sec.map(|d| d.round()),
    );
    print_intervals(report);
    if let Some(probe) = &report.broker_probe
        && let Some(e) = &probe.end_to_end
    {
        eprintln!(
            "rill-load: broker probe: {} sent, {} received, p50 {:.2} ms p99 {:.2} ms",
            probe.sent, probe.received, e.p50_ms, e.p99_ms
        );
    }
    if let Some(v) = &report.edge_view {
        eprintln!(
            "rill-load: the edges' send to Kafka ack: {} sends, p50 <= {:?} ms, p90 <= {:?} ms, p99 <= {:?} ms",
            v.send_ack_count,
            v.send_ack_p50_ms_at_most,
            v.send_ack_p90_ms_at_most,
            v.send_ack_p99_ms_at_most
        );
    }
}

/// One line per interval: the sessions' send-to-receive latency, and the
/// broker probe's in the interval at the same offset of its own run.
fn print_intervals(report: &Report) {
    let probe = report
        .broker_probe
        .as_ref()
        .map_or(&[][..], |p| &p.end_to_end_by_interval[..]);
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    for (i, s) in report.latency_by_interval.iter().enumerate() {
        let broker = probe
            .get(i)
            .map_or_else(String::new, |p: &IntervalSummary| {
                format!(
                    "; broker probe {} received, p50 {} ms p99 {} ms",
                    p.deliveries,
                    ms(p.p50_ms),
                    ms(p.p99_ms)
                )
            });
        eprintln!(
            "rill-load: sent {}-{} s: {} deliveries, p50 {} ms p99 {} ms p99.9 {} ms max {} ms{broker}",
            s.start_secs,
            s.end_secs,
            s.deliveries,
            ms(s.p50_ms),
            ms(s.p99_ms),
            ms(s.p999_ms),
            ms(s.max_ms),
        );
    }
}
