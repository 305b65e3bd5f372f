//! The edges' own view of a run, from their `/metrics` at its end: how long
//! Kafka took to acknowledge their sends (`rill_edge_send_ack_seconds`),
//! so that the edge's share of the send-to-ack latency shows apart from the
//! sockets' and the generator's. Servers without that metric (the
//! Socket.IO peer) have no edge view.

use serde::Serialize;

const SEND_ACK_BUCKET: &str = "rill_edge_send_ack_seconds_bucket{le=\"";

/// Quantiles from the edges' histogram: each is the upper bound of the
/// bucket it falls in (the buckets double from 0.5 ms), so "at most".
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EdgeView {
    pub send_ack_count: u64,
    pub send_ack_p50_ms_at_most: Option<f64>,
    pub send_ack_p90_ms_at_most: Option<f64>,
    pub send_ack_p99_ms_at_most: Option<f64>,
}

/// Scrapes every edge in `urls`; `None` when none has the histogram.
pub async fn scrape(urls: &[String]) -> Option<EdgeView> {
    // A server without /metrics may never answer (the Socket.IO peer).
    let Ok(http) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
    else {
        return None;
    };
    let mut buckets = Vec::new();
    for url in urls {
        let text = match http.get(format!("{url}/metrics")).send().await {
            Ok(response) if response.status().is_success() => response.text().await.ok(),
            _ => None,
        };
        if let Some(text) = text {
            add_buckets(&text, &mut buckets);
        }
    }
    view(&buckets)
}

/// Adds the cumulative `(le seconds, count)` buckets of the send-ack
/// histogram in `text` (Prometheus text format) to `into`, edge by edge.
fn add_buckets(text: &str, into: &mut Vec<(f64, u64)>) {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(SEND_ACK_BUCKET) else {
            continue;
        };
        let Some((le, count)) = rest.split_once("\"}") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        let Ok(count) = count.trim().parse::<u64>() else {
            continue;
        };
        if le.is_nan() {
            continue;
        }
        match into.iter_mut().find(|(l, _)| *l == le) {
            Some((_, c)) => *c += count,
            None => into.push((le, count)),
        }
    }
    into.sort_by(|a, b| a.0.total_cmp(&b.0));
}

fn view(buckets: &[(f64, u64)]) -> Option<EdgeView> {
    let count = buckets.last()?.1;
    let at = |q: f64| {
        let rank = (q * count as f64).ceil() as u64;
        buckets
            .iter()
            .find(|(_, c)| *c >= rank.max(1))
            .map(|(le, _)| le * 1000.0)
            .filter(|ms| ms.is_finite())
    };
    Some(EdgeView {
        send_ack_count: count,
        send_ack_p50_ms_at_most: at(0.50),
        send_ack_p90_ms_at_most: at(0.90),
        send_ack_p99_ms_at_most: at(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGE: &str = "\
# HELP rill_edge_send_ack_seconds x
rill_edge_send_ack_seconds_sum 1.5
rill_edge_send_ack_seconds_count 100
rill_edge_send_ack_seconds_bucket{le=\"0.0005\"} 0
rill_edge_send_ack_seconds_bucket{le=\"0.001\"} 40
rill_edge_send_ack_seconds_bucket{le=\"0.002\"} 95
rill_edge_send_ack_seconds_bucket{le=\"0.004\"} 99
rill_edge_send_ack_seconds_bucket{le=\"+Inf\"} 100
rill_edge_delivered_events_total 7
";

    #[test]
    fn quantiles_are_bucket_bounds_summed_over_edges() {
        let mut buckets = Vec::new();
        add_buckets(EDGE, &mut buckets);
        add_buckets(EDGE, &mut buckets);
        let view = view(&buckets).expect("a view");
        assert_eq!(view.send_ack_count, 200);
        assert_eq!(view.send_ack_p50_ms_at_most, Some(2.0));
        assert_eq!(view.send_ack_p90_ms_at_most, Some(2.0));
        assert_eq!(view.send_ack_p99_ms_at_most, Some(4.0));
    }

    #[test]
    fn a_quantile_past_the_last_finite_bucket_is_unknown() {
        let mut buckets = Vec::new();
        add_buckets(
            "rill_edge_send_ack_seconds_bucket{le=\"0.001\"} 1\nrill_edge_send_ack_seconds_bucket{le=\"+Inf\"} 10\n",
            &mut buckets,
        );
        let view = view(&buckets).expect("a view");
        assert_eq!(view.send_ack_p50_ms_at_most, None);
    }

    #[test]
    fn servers_without_the_histogram_have_no_view() {
        let mut buckets = Vec::new();
        add_buckets("socket_io_connected 3\n", &mut buckets);
        assert_eq!(view(&buckets), None);
    }
}
