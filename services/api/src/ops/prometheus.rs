//! Just enough of the Prometheus text format to read the few samples the
//! operations page shows: `name{label="value",...} value [timestamp]`.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Every sample of `text`; comments and lines it cannot read are skipped
/// (a scrape shows what it can).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(sample)
        .collect()
}

fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(after) => labels(after)?,
        None => (Vec::new(), &line[name_end..]),
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The labels after `{`, and the rest of the line after `}`.
fn labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = text.find('=')?;
        let name = text[..eq].trim().to_owned();
        let mut chars = text[eq + 1..].strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name, value));
        text = &text[eq + 1..][1 + end + 1..];
    }
}

/// The sum of every sample called `name`; none if there is none.
pub fn sum(samples: &[Sample], name: &str) -> Option<f64> {
    let mut found = samples.iter().filter(|s| s.name == name).peekable();
    found.peek()?;
    Some(found.map(|s| s.value).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP rill_edge_live_sessions Live sessions on this edge.
# TYPE rill_edge_live_sessions gauge
rill_edge_live_sessions{transport="websocket"} 3
rill_edge_live_sessions{transport="sse"} 2
rill_edge_sends_accepted_total 17 1700000000000
rill_persist_consumer_lag{topic="rill.a \"b\", c",group="g"} 4.5
broken{label=} 1
# EOF
"#;

    #[test]
    fn samples_are_read_with_their_labels() {
        let samples = parse(TEXT);
        assert_eq!(sum(&samples, "rill_edge_live_sessions"), Some(5.0));
        assert_eq!(sum(&samples, "rill_edge_sends_accepted_total"), Some(17.0));
        assert_eq!(sum(&samples, "rill_edge_availability"), None);
        let lag = samples
            .iter()
            .find(|s| s.name == "rill_persist_consumer_lag")
            .expect("the lag sample");
        assert_eq!(
            lag.labels,
            [
                ("topic".to_owned(), "rill.a \"b\", c".to_owned()),
                ("group".to_owned(), "g".to_owned())
            ]
        );
        assert_eq!(lag.value, 4.5);
        assert!(samples.iter().all(|s| s.name != "broken"));
    }
}
