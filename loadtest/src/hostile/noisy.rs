//! The noisy kinds: send floods and connect/close loops. Both are answered
//! at once by a limit (a token bucket), so they count answers, not
//! deadlines.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::time::Instant;
use uuid::Uuid;

use super::raw::{self, OP_CLOSE};
use super::{Kind, Tally, Target, event_name, first_event, open, open_ready};

/// Frames written at once by a flood without a rate.
const FLOOD_BATCH: u64 = 32;
/// How long a flood reads answers after its last send.
const FLOOD_DRAIN: Duration = Duration::from_secs(2);
/// Opens of one connect/close loop under way at once.
const CHURN_IN_FLIGHT: usize = 64;
/// Wait after a refused or failed open before the next.
const RETRY: Duration = Duration::from_millis(250);

/// A flood's body of `bytes` bytes for send `key`: quotes and
/// backslashes, which JSON doubles, so that every event delivered of it is
/// as large as a body may make one.
pub fn flood_body(key: u64, bytes: usize) -> String {
    let mut body = format!("flood {key} ");
    let fill = bytes.saturating_sub(body.len());
    body.extend(std::iter::repeat_n(['"', '\\'], fill / 2).flatten());
    body
}

/// How a flood sends: `rate` per second (0: as fast as the socket takes
/// them), bodies of `body_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct FloodPlan {
    pub rate: f64,
    pub body_bytes: usize,
}

/// Flood session `n` of `user`: sends as the plan says until the run's
/// end, reading every answer; a session the edge ends is opened again.
/// Counts `sent`, `opened`, the answers by name (`ack`,
/// `error_rate_limited`, `message`, ...) and `ended_by_edge_*`.
pub async fn flood(target: &Target, tally: &Tally, n: usize, user: Uuid, plan: FloodPlan) {
    let FloodPlan { rate, body_bytes } = plan;
    let mut attempt = 0;
    while !target.over() {
        let url = target.url(n + attempt);
        attempt += 1;
        let path = target.ws_path(user, None);
        let opened = open_ready(target, Kind::Flood, url, &path, None, tally, RETRY).await;
        let Some((stream, mut frames)) = opened else {
            continue;
        };
        tally.one("opened");
        let (mut read_half, mut write_half) = stream.into_split();
        let deadline = target.deadline;
        let writer = async move {
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let per_tick = rate / 100.0;
            let mut owed = 0.0;
            while Instant::now() < deadline {
                let count = if rate > 0.0 {
                    tick.tick().await;
                    owed += per_tick;
                    let whole = owed.floor();
                    owed -= whole;
                    whole as u64
                } else {
                    FLOOD_BATCH
                };
                let mut batch = Vec::new();
                for key in sent..sent + count {
                    batch.extend(raw::text(&json!({
                        "type": "send", "body": flood_body(key, body_bytes), "ref": key.to_string(),
                    })));
                }
                if write_half.write_all(&batch).await.is_err() {
                    break;
                }
                sent += count;
                tally.add("sent", count);
                tokio::task::yield_now().await;
            }
            write_half
        };
        let reader = async {
            loop {
                match frames.next(&mut read_half).await {
                    Ok(Some(frame)) => {
                        if let Some(event) = frame.event() {
                            tally.one(event_name(&event));
                        } else if let Some((code, reason)) = frame.close() {
                            tally.one(format!(
                                "ended_by_edge_close_{}_{reason}",
                                code.unwrap_or(0)
                            ));
                            return;
                        }
                    }
                    Ok(None) => return tally.one("ended_by_edge_eof"),
                    Err(e) => return tally.one(format!("ended_by_edge_{:?}", e.kind())),
                }
            }
        };
        tokio::pin!(writer, reader);
        tokio::select! {
            mut write_half = &mut writer => {
                // The run is over: the answers still on their way, then a
                // close (not waited for).
                let _ = tokio::time::timeout(FLOOD_DRAIN, &mut reader).await;
                let _ = write_half.write_all(&raw::frame(true, OP_CLOSE, &1000u16.to_be_bytes())).await;
            }
            () = &mut reader => {}
        }
    }
}

/// Connect/close loop `n` of `user`: starts an open at `rate` attempts
/// per second, over the edges in turn, each without waiting for the ones
/// before (at most [`CHURN_IN_FLIGHT`] at once), and closes each session
/// as soon as it is ready, without waiting for anything. Counts `opened`
/// and every refusal by name (`http_429_rate_limited`,
/// `http_429_too_many_sessions`, `http_409_already_live`, ...).
pub async fn churn(target: &Target, tally: &Tally, n: usize, user: Uuid, rate: f64) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    let mut attempt = 0;
    while !target.over() {
        tokio::select! {
            _ = tick.tick(), if in_flight.len() < CHURN_IN_FLIGHT => {
                let url = target.url(n + attempt);
                attempt += 1;
                tally.one("attempts");
                in_flight.push(open_and_close(target, tally, url, user));
            }
            Some(()) = futures_util::StreamExt::next(&mut in_flight), if !in_flight.is_empty() => {}
        }
    }
    while futures_util::StreamExt::next(&mut in_flight)
        .await
        .is_some()
    {}
}

async fn open_and_close(target: &Target, tally: &Tally, url: &str, user: Uuid) {
    let opened = open(target, Kind::Churn, url, &target.ws_path(user, None), None).await;
    match opened {
        Ok((mut stream, mut frames)) => {
            match first_event(&mut stream, &mut frames).await {
                Ok(_) => tally.one("opened"),
                Err(why) => tally.one(why),
            }
            let close = raw::frame(true, OP_CLOSE, &1000u16.to_be_bytes());
            let _ = stream.write_all(&close).await;
        }
        Err(why) => tally.one(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_body_is_as_long_as_asked_and_doubles_in_json() {
        let body = flood_body(7, 4096);
        assert!(body.starts_with("flood 7 ") && body.len() >= 4094 && body.len() <= 4096);
        let escaped = serde_json::to_string(&body).expect("json");
        assert!(escaped.len() > 8000, "{}", escaped.len());
    }
}
