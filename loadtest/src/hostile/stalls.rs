//! The stalling kinds: clients that hold something of the edge's and stop
//! (a reader that reads no more, a message begun and never finished, a
//! request whose headers never end). Each is answered by a deadline, so
//! each counts how it ended and how long after it stalled.
//!
//! A client still waiting when the run ends is `open_at_end`, not judged:
//! its deadline may simply not have come.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;
use uuid::Uuid;

use super::raw::{self, OP_PING, OP_PONG, OP_TEXT};
use super::{Kind, Tally, Target, event_name, open_ready};

/// A slow reader's receive buffer: a small window fills at once.
const READER_RECV_BUFFER: u32 = 4096;
/// How long a slow reader reads its opening events before it stops.
const OPENING: Duration = Duration::from_secs(3);
/// Frames of the opening a slow reader reads at most.
const OPENING_FRAMES: usize = 8;
/// How often a stalled client looks whether the edge cut it.
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// A slow reader's unsolicited pong, so that its heartbeat does not end it
/// before its slowness does.
const PONG_EVERY: Duration = Duration::from_secs(5);
/// Past the run's end, how long a stalled client still waits to be cut.
const GRACE: Duration = Duration::from_secs(5);
/// Wait after a refused or failed open before the next.
const RETRY: Duration = Duration::from_millis(500);

/// The wait for a client stalled now: `wait`, but not past the run's end
/// and [`GRACE`]; and whether it was shortened (then running out is
/// `open_at_end`, not a failure).
fn wait_for(target: &Target, wait: f64) -> (Duration, bool) {
    let wait = Duration::from_secs_f64(wait);
    let left = (target.deadline + GRACE).saturating_duration_since(Instant::now());
    (wait.min(left), left < wait)
}

/// Slow reader `n` of `user`: resumes from a made-up position, then (every
/// other time) from the oldest real one it saw, so from ever further back;
/// reads the opening (`ready`, `presence`, the `gap` or the replay, a few
/// messages), then reads nothing, with a receive window of 4 KiB, until
/// the edge cuts it. Counts `resumed_*`, the opening's events by name
/// (`gap_too_old`, `gap_unknown_position`, `gap_too_many`, ...), `cut` (and
/// how long after it stopped reading), `not_cut`, and what the edge last
/// wrote (`closed_1008_...`, `eof`).
pub async fn slow_reader(target: &Target, tally: &Tally, n: usize, user: Uuid, hold: f64) {
    tokio::time::sleep(Duration::from_millis(200 * n as u64)).await;
    let mut oldest: Option<String> = None;
    let mut cycle = 0usize;
    while !target.over() {
        cycle += 1;
        let position = match &oldest {
            Some(real) if cycle.is_multiple_of(2) => {
                tally.one("resumed_from_the_past");
                real.clone()
            }
            _ => {
                tally.one("resumed_made_up");
                format!("{cycle}-0badf00d")
            }
        };
        let path = target.ws_path(user, Some(&position));
        let url = target.url(n + cycle);
        let buffer = Some(READER_RECV_BUFFER);
        let opened = open_ready(target, Kind::Reader, url, &path, buffer, tally, RETRY).await;
        let Some((mut stream, mut frames)) = opened else {
            continue;
        };
        let _ = tokio::time::timeout(OPENING, async {
            for _ in 0..OPENING_FRAMES {
                let Ok(Some(frame)) = frames.next(&mut stream).await else {
                    return;
                };
                let Some(event) = frame.event() else { continue };
                tally.one(event_name(&event));
                if event["type"] == "message" && oldest.is_none() {
                    oldest = event["position"].as_str().map(str::to_owned);
                }
            }
        })
        .await;
        // From here on, nothing is read.
        let (wait, shortened) = wait_for(target, hold);
        match cut_within(&mut stream, wait, true).await {
            Some(secs) => {
                tally.one("cut");
                tally.cut_after(secs);
            }
            None if shortened => tally.one("open_at_end"),
            None => tally.one("not_cut"),
        }
        tally.one(last_words(&mut stream, &mut frames).await);
    }
}

/// Waits up to `wait` for the edge to cut `stream` without reading it;
/// the seconds it took. With `pong`, writes an unsolicited pong now and
/// then (a write that fails is a cut too).
async fn cut_within(stream: &mut TcpStream, wait: Duration, pong: bool) -> Option<f64> {
    let start = Instant::now();
    let mut last_pong = start;
    while start.elapsed() < wait {
        tokio::time::sleep(LOOK_EVERY).await;
        let ready = tokio::time::timeout(Duration::ZERO, stream.ready(Interest::READABLE)).await;
        if let Ok(Ok(ready)) = ready
            && (ready.is_read_closed() || ready.is_error())
        {
            return Some(start.elapsed().as_secs_f64());
        }
        if pong && last_pong.elapsed() >= PONG_EVERY {
            last_pong = Instant::now();
            let frame = raw::frame(true, OP_PONG, b"");
            if stream.write_all(&frame).await.is_err() {
                return Some(start.elapsed().as_secs_f64());
            }
        }
    }
    None
}

/// What the edge wrote last before the end: its close frame's code and
/// reason, or how the connection ended; a `gap_slow_client` on the way is
/// counted by the caller's name too (read for a second at most).
async fn last_words(stream: &mut TcpStream, frames: &mut raw::FrameReader) -> String {
    let mut slow_gap = false;
    let words = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match frames.next(stream).await {
                Ok(Some(frame)) => {
                    if let Some((code, reason)) = frame.close() {
                        return format!("closed_{}_{}", code.unwrap_or(0), name(&reason));
                    }
                    if frame.event().is_some_and(|e| e["reason"] == "slow_client") {
                        slow_gap = true;
                    }
                }
                Ok(None) => return "eof".to_owned(),
                Err(e) => return format!("read_{:?}", e.kind()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| "still_writing".to_owned());
    match slow_gap {
        true => format!("last_{words}_after_gap_slow_client"),
        false => format!("last_{words}"),
    }
}

/// `text` as a name to count: words joined by `_`.
fn name(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join("_")
}

/// Parked connection `n` of `user`: opens a session, then begins a
/// message and never ends it: every other time a frame cut short (10 of
/// the 1,000 bytes its header announces: no pong can follow), else the
/// first frame of a fragmented message (pings still answered). Reads
/// until the edge closes; counts `closed_<code>_<reason>` and how long
/// after the message began.
pub async fn parked(target: &Target, tally: &Tally, n: usize, user: Uuid, wait: f64) {
    tokio::time::sleep(Duration::from_millis(150 * n as u64)).await;
    let mut attempt = 0;
    while !target.over() {
        let url = target.url(n + attempt);
        let partial = (n + attempt).is_multiple_of(2);
        attempt += 1;
        let path = target.ws_path(user, None);
        let opened = open_ready(target, Kind::Parked, url, &path, None, tally, RETRY).await;
        let Some((mut stream, mut frames)) = opened else {
            continue;
        };
        let begun = match partial {
            true => raw::partial_frame(1000, 10),
            false => raw::frame(false, OP_TEXT, br#"{"type":"send","body":"never fin"#),
        };
        tally.one(match partial {
            true => "parked_partial_frame",
            false => "parked_unfinished_message",
        });
        if stream.write_all(&begun).await.is_err() {
            tally.one("write_failed");
            continue;
        }
        let parked_at = Instant::now();
        let (wait, shortened) = wait_for(target, wait);
        let end = tokio::time::timeout(wait, async {
            loop {
                match frames.next(&mut stream).await {
                    Ok(Some(frame)) if frame.opcode == OP_PING => {
                        if !partial {
                            let pong = raw::frame(true, OP_PONG, &frame.payload);
                            let _ = stream.write_all(&pong).await;
                        }
                    }
                    Ok(Some(frame)) => {
                        if let Some((code, reason)) = frame.close() {
                            return format!("closed_{}_{}", code.unwrap_or(0), name(&reason));
                        }
                    }
                    Ok(None) => return "closed_eof".to_owned(),
                    Err(e) => return format!("closed_{:?}", e.kind()),
                }
            }
        })
        .await;
        match end {
            Ok(how) => {
                tally.one(how);
                tally.cut_after(parked_at.elapsed().as_secs_f64());
            }
            Err(_) if shortened => tally.one("open_at_end"),
            Err(_) => tally.one("not_closed"),
        }
    }
}

/// Slowloris connection `n`: a request line and a header begun, then a
/// byte every `trickle` seconds, never the header's end. Counts how the
/// edge ended it (`closed_eof`, `closed_answered_<status>`, ...) and how
/// long after the first byte.
pub async fn slowloris(target: &Target, tally: &Tally, n: usize, trickle: f64, wait: f64) {
    tokio::time::sleep(Duration::from_millis(20 * n as u64)).await;
    let mut attempt = 0;
    while !target.over() {
        let url = target.url(n + attempt);
        attempt += 1;
        let stream = match raw::connect(url, target.source(Kind::Slowloris), None).await {
            Ok(stream) => stream,
            Err(why) => {
                tally.one(why);
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let host = url.split_once("://").map_or(url, |(_, a)| a);
        let head = format!(
            "GET /live/{}/ws HTTP/1.1\r\nHost: {host}\r\nX-Slow: ",
            target.profile
        );
        let (mut read_half, mut write_half) = stream.into_split();
        let started = Instant::now();
        if write_half.write_all(head.as_bytes()).await.is_err() {
            tally.one("write_failed");
            continue;
        }
        tally.one("started");
        let writer = async {
            loop {
                tokio::time::sleep(Duration::from_secs_f64(trickle)).await;
                if write_half.write_all(b"a").await.is_err() {
                    return "closed_write_failed".to_owned();
                }
            }
        };
        let reader = async {
            let mut answer = Vec::new();
            let mut chunk = [0u8; 1024];
            loop {
                match read_half.read(&mut chunk).await {
                    Ok(0) => break,
                    Ok(n) => answer.extend_from_slice(&chunk[..n]),
                    Err(e) => return format!("closed_{:?}", e.kind()),
                }
            }
            let status = std::str::from_utf8(&answer)
                .ok()
                .and_then(|a| a.split(' ').nth(1).map(str::to_owned));
            match status {
                Some(status) => format!("closed_answered_{status}"),
                None => "closed_eof".to_owned(),
            }
        };
        let (wait, shortened) = wait_for(target, wait);
        let end = tokio::time::timeout(wait, async {
            tokio::select! {
                how = writer => how,
                how = reader => how,
            }
        })
        .await;
        match end {
            Ok(how) => {
                tally.one(how);
                tally.cut_after(started.elapsed().as_secs_f64());
            }
            Err(_) if shortened => tally.one("open_at_end"),
            Err(_) => tally.one("not_closed"),
        }
    }
}
