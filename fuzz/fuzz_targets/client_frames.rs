//! The client's JSON: a WebSocket text frame, and the body of a POST send,
//! through the edge's checks. Never a panic; what passes has a `ref` and
//! an idempotency key within their limits; what is refused gets an error
//! event that is JSON and never echoes a `ref` past its limit.
//!
//! Input: the frame (when UTF-8, as the frame decoder guarantees a text
//! frame is), and the same bytes as a POST body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_edge::fuzzing::{MAX_IDEMPOTENCY_KEY_LEN, MAX_REF_LEN, Refused, Send};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match rill_edge::fuzzing::websocket_text(text) {
            Ok(Some(send)) => check_send(&send),
            Ok(None) => {}
            Err(refused) => check_refused(&refused),
        }
    }
    match rill_edge::fuzzing::post_send(Some("application/json"), data) {
        Ok(send) => check_send(&send),
        Err(refused) => check_refused(&refused),
    }
});

fn check_send(send: &Send) {
    if let Some(reference) = &send.reference {
        assert!(
            reference.chars().count() <= MAX_REF_LEN,
            "ref {reference:?}"
        );
    }
    if let Some(key) = &send.idempotency_key {
        let len = key.chars().count();
        assert!((1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&len), "key {key:?}");
        assert!(
            !key.chars().any(|c| c.is_control() || c.is_whitespace()),
            "key {key:?}"
        );
    }
}

fn check_refused(refused: &Refused) {
    let event: serde_json::Value =
        serde_json::from_str(&refused.event_json).expect("the error event is JSON");
    assert_eq!(event["type"], "error", "{event}");
    assert_eq!(event["code"], refused.code, "{event}");
    if let Some(reference) = event.get("ref") {
        let reference = reference.as_str().expect("a ref is a string");
        assert!(
            reference.chars().count() <= MAX_REF_LEN,
            "ref {reference:?}"
        );
    }
}
