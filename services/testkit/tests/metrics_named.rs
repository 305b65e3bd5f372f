//! Every metric the chart's Grafana dashboard and Prometheus alerts name is
//! exported by a running service: a whole stack is started, a little
//! traffic makes the labelled series (a login, a WebSocket session, a
//! send, directory writes), and each service's `/metrics` is scraped (the
//! edge's, the api's, the sequencer's, persist's). The
//! names are read from the chart's own files (helm/rill/dashboards/rill.json
//! and helm/rill/templates/prometheusrule.yaml), so a renamed metric or a
//! typo in a query fails here. helm/tests/validate.py checks the same
//! queries offline against the services' metrics.rs files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use rill_testkit::Stack;
use serde_json::{Value, json};

/// Where the chart is, from this crate.
fn chart_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../helm/rill")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `rill_<name>` token of `text` (a PromQL expression, a template).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("rill_") {
        // Not the tail of a longer identifier (`xrill_`).
        let before = rest[..at].chars().next_back();
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(name.clone());
        }
        rest = &rest[at + name.len()..];
    }
    out
}

/// The PromQL of the dashboard: each panel query's `expr` and each
/// variable's `query`.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().expect("a query's expr").to_owned());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(query) = variable["query"]["query"].as_str() {
            out.push(query.to_owned());
        }
    }
    out
}

/// What one `/metrics` page exports: the metric families (name -> type, from
/// `# TYPE`), the names of the samples present and the values of those
/// without labels.
#[derive(Debug, Default)]
struct Exported {
    families: BTreeMap<String, String>,
    samples: BTreeSet<String>,
    values: BTreeMap<String, f64>,
}

impl Exported {
    fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let mut parts = declared.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    out.families.insert(name.to_owned(), kind.to_owned());
                }
            } else if !line.starts_with('#') && !line.is_empty() {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                out.samples.insert(name.to_owned());
                if let Some((name, value)) = line.split_once(' ')
                    && let Ok(value) = value.trim().parse()
                {
                    out.values.insert(name.to_owned(), value);
                }
            }
        }
        out
    }

    /// Whether `name`, as a query writes it, is a series of this page: a
    /// sample, a family, or a family with the suffix its type adds
    /// (`_total` of a counter, `_bucket`/`_sum`/`_count` of a histogram).
    fn has(&self, name: &str) -> bool {
        if self.samples.contains(name) || self.families.contains_key(name) {
            return true;
        }
        let typed = |suffix: &str, kind: &str| {
            name.strip_suffix(suffix)
                .is_some_and(|base| self.families.get(base).is_some_and(|k| k == kind))
        };
        typed("_total", "counter")
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| typed(suffix, "histogram"))
    }

    /// The value of the sample `name` without labels; 0 when absent.
    fn value(&self, name: &str) -> f64 {
        self.values.get(name).copied().unwrap_or_default()
    }

    /// Whether a sample of `name` (or of its histogram's series) is present,
    /// not only its declaration.
    fn has_samples(&self, name: &str) -> bool {
        self.samples.contains(name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| self.samples.contains(&format!("{name}{s}")))
    }
}

async fn scrape(addr: std::net::SocketAddr) -> Exported {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    Exported::parse(&text)
}

/// Scrapes `addr` until `ready` holds for it (at most `within`).
async fn scrape_until(
    addr: std::net::SocketAddr,
    within: Duration,
    what: &str,
    ready: impl Fn(&Exported) -> bool,
) -> Exported {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let exported = scrape(addr).await;
        if ready(&exported) {
            return exported;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr}: still no {what} after {within:?}: {:?}",
            exported.samples
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn the_matcher_can_fail() {
    let page = Exported::parse(
        "# TYPE rill_edge_sends_accepted counter\n\
         rill_edge_sends_accepted_total 3\n\
         # TYPE rill_edge_send_ack_seconds histogram\n\
         # TYPE rill_edge_availability gauge\n\
         rill_edge_availability 0\n",
    );
    assert!(page.has("rill_edge_sends_accepted_total"));
    assert!(page.has("rill_edge_send_ack_seconds_bucket"));
    assert!(page.has("rill_edge_availability"));
    assert_eq!(page.value("rill_edge_sends_accepted_total"), 3.0);
    assert_eq!(page.value("rill_edge_no_such_metric"), 0.0);
    assert!(
        !page.has("rill_edge_sends_accepted_bucket"),
        "a counter has no buckets"
    );
    assert!(
        !page.has("rill_edge_availability_total"),
        "a gauge has no _total"
    );
    assert!(!page.has("rill_edge_no_such_metric"));
    assert_eq!(
        metric_names(r#"sum(rate(rill_edge_x_total{a="rill_b"}[5m])) / xrill_c"#),
        ["rill_b", "rill_edge_x_total"].map(String::from).into()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_dashboard_and_the_alerts_is_exported() {
    let dashboard: Value =
        serde_json::from_str(&chart_file("dashboards/rill.json")).expect("the dashboard is JSON");
    let mut wanted: BTreeSet<String> = dashboard_queries(&dashboard)
        .iter()
        .flat_map(|q| metric_names(q))
        .collect();
    let from_dashboard = wanted.len();
    wanted.extend(metric_names(&chart_file("templates/prometheusrule.yaml")));
    // Guards against a parser that finds nothing, so passes everything.
    assert!(
        from_dashboard >= 20,
        "only {from_dashboard} metrics in the dashboard: {wanted:?}"
    );
    assert!(wanted.contains("rill_persist_consumer_lag"), "{wanted:?}");
    assert!(
        wanted.contains("rill_sequencer_transaction_seconds_bucket"),
        "{wanted:?}"
    );

    let stack = Stack::start(1).await;
    // Traffic: directory writes through the api, a login, a live session,
    // a send that goes through Kafka, the sequencer and persist.
    let profile = stack.create_profile("Metrics").await;
    let user = stack.member_of(&[profile]).await;
    let client = stack.client();
    client.login(user).await;
    let mut ws = client.ws(profile).await;
    ws.next_of_type("ready").await;
    ws.send(&json!({"type": "send", "body": "counted", "ref": "m1"}))
        .await;
    let ack = ws.next_of_type("ack").await;
    assert_eq!(ack["ref"], "m1");
    ws.next_of_type("message").await;
    // Families with a reason label exist once a series does: a refused
    // send (an empty body), a refused session (not a member), an ended one.
    ws.send(&json!({"type": "send", "body": " ", "ref": "m2"}))
        .await;
    let refused = ws.next_of_type("error").await;
    assert_eq!(refused["ref"], "m2", "{refused}");
    let elsewhere = stack.create_profile("Not a member").await;
    let not_member = client.try_ws(&format!("/live/{elsewhere}/ws"), &[]).await;
    assert!(not_member.is_err(), "a non-member's session opened");
    drop(ws);

    let within = Duration::from_secs(30);
    let edge = scrape_until(stack.edges[0].addr, within, "labelled series", |e| {
        e.has_samples("rill_edge_delivered_events_total")
            && e.has_samples("rill_edge_send_ack_seconds")
            && e.has_samples("rill_edge_sends_refused_total")
            && e.has_samples("rill_edge_sessions_refused_total")
            && e.has_samples("rill_edge_sessions_ended_total")
    })
    .await;
    let api = scrape(stack.api).await;
    // The send above was copied by the sequencer (the edge delivered it
    // from the sequenced topic): its transaction is committed and counted.
    let sequencer = scrape_until(stack.sequencer, within, "a transaction", |e| {
        e.value("rill_sequencer_messages_sequenced_total") >= 1.0
            && e.value("rill_sequencer_transaction_seconds_count") >= 1.0
            && e.value("rill_sequencer_transaction_records_count") >= 1.0
    })
    .await;
    // Persist's lag is measured by a probe of its own: its first numbers
    // come once it has asked Kafka.
    let persist = scrape_until(stack.persist, within, "consumer lag", |e| {
        e.has_samples("rill_persist_consumer_lag")
            && e.has_samples("rill_persist_messages_written_total")
    })
    .await;

    let mut missing = Vec::new();
    for name in &wanted {
        let page = match name {
            n if n.starts_with("rill_edge_") => &edge,
            n if n.starts_with("rill_api_") => &api,
            n if n.starts_with("rill_persist_") => &persist,
            n if n.starts_with("rill_sequencer_") => &sequencer,
            other => {
                missing.push(format!("{other} (no service exports names of this prefix)"));
                continue;
            }
        };
        if !page.has(name) {
            missing.push(name.clone());
        }
    }
    // The Prometheus client leaves out a labelled family with no series
    // yet: the traffic above made one for each the chart names.
    assert!(
        missing.is_empty(),
        "named by the dashboard or the alerts but not exported: {missing:?}"
    );
    println!("{} metrics named by the chart, all exported", wanted.len());
}
