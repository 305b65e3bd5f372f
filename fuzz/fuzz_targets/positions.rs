//! Where a stream starts and resumes: the profile id of its path, its
//! `Last-Event-ID` header (SSE) or `?last_position=`, read by the edge
//! into ids; and any text as a `Position`. Never a panic, and a position
//! that parses reads back as itself from what it prints.
//!
//! Input: lines of the profile, the `Last-Event-ID` header, the query
//! string; the whole input, when UTF-8, is also parsed as a position.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_domain::Position;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(position) = text.parse::<Position>() {
            round_trip(position);
        }
    }
    let mut lines = data.splitn(3, |b| *b == b'\n');
    let profile = text(lines.next()).unwrap_or("");
    let last_event_id = lines.next();
    let query = text(lines.next()).unwrap_or("");
    if let Ok((_, Some(position))) = rill_edge::fuzzing::stream_ids(profile, last_event_id, query) {
        round_trip(position);
    }
});

fn text(line: Option<&[u8]>) -> Option<&str> {
    line.and_then(|l| std::str::from_utf8(l).ok())
}

fn round_trip(position: Position) {
    let printed = position.to_string();
    assert_eq!(printed.parse::<Position>(), Ok(position), "{printed}");
}
