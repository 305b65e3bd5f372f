//! WebSocket frames: arbitrary client bytes through the edge's frame
//! decoder, fed as its socket feeds it (a read of at most `READ_CHUNK`
//! bytes whenever it has no whole message). Never a panic, every message
//! within the frame limit, and the decoder's heap bounded by the limit,
//! whatever a header claims: the allocator refuses (and the process
//! aborts, a crash for libFuzzer) past the budget.
//!
//! Input: two bytes of the limit (little-endian, up to 64 KiB, the
//! default `limits.max_frame_bytes`), one byte of the read size, then the
//! client's bytes.

#![no_main]

use cap::Cap;
use libfuzzer_sys::fuzz_target;
use rill_edge::fuzzing::{Decoder, Message, READ_CHUNK};

#[global_allocator]
static HEAP: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEADER: usize = 14;

/// The most the decoder may hold under `max`: the bytes not yet decoded
/// (an unfinished frame and one read), the payload being unmasked, and a
/// fragmented message so far, each up to twice its length as a `Vec`
/// grows by doubling; and a little for the boxes around them.
fn budget(max: usize) -> usize {
    2 * (max + MAX_HEADER + READ_CHUNK) + max + 2 * max + 1024
}

fuzz_target!(|data: &[u8]| {
    let [lo, hi, read, stream @ ..] = data else {
        return;
    };
    let max = usize::from(u16::from_le_bytes([*lo, *hi]));
    let read = (usize::from(*read) << 4).clamp(1, READ_CHUNK);
    let before = HEAP.allocated();
    HEAP.set_limit(before + budget(max))
        .expect("the limit is above what is allocated");
    decode(stream, max, read);
    HEAP.set_limit(usize::MAX).expect("no limit");
    assert_eq!(HEAP.allocated(), before, "the decoder leaked");
});

fn decode(mut stream: &[u8], max: usize, read: usize) {
    let mut decoder = Decoder::default();
    loop {
        match decoder.next(max) {
            Ok(Some(message)) => check(&message, max),
            Ok(None) if stream.is_empty() => return,
            Ok(None) => {
                let (chunk, rest) = stream.split_at(read.min(stream.len()));
                decoder.extend(chunk);
                stream = rest;
            }
            // The socket closes with the error's close code.
            Err(_) => return,
        }
    }
}

fn check(message: &Message, max: usize) {
    match message {
        Message::Text(text) => assert!(text.len() <= max, "a text of {} > {max}", text.len()),
        Message::Ping(payload) => assert!(payload.len() <= 125, "a ping of {}", payload.len()),
        Message::Close(Some(code)) => assert!((1000..5000).contains(code), "close code {code}"),
        Message::Binary | Message::Pong | Message::Close(None) => {}
    }
}
