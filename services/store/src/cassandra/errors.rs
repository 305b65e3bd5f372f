//! How driver failures become [`StoreError`]s: the whole error chain, with
//! what the store was doing, so that one log line tells the story.

use std::error::Error;

use crate::StoreError;

/// The error and its sources, outermost first, joined with ": ".
pub(super) fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Errors that print their source themselves would repeat it.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A failure to reach or use the cluster while doing `context`.
pub(super) fn driver<E: Error>(context: &'static str) -> impl FnOnce(E) -> StoreError {
    move |error| StoreError::Cassandra(format!("{context}: {}", chain(&error)))
}

/// Stored data that does not decode into the type `context` names.
pub(super) fn corrupt<E: Error>(context: &'static str) -> impl FnOnce(E) -> StoreError {
    move |error| StoreError::Corrupt(format!("{context}: {}", chain(&error)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    /// Prints its source itself, as `#[error(transparent)]`-like wrappers do.
    #[derive(Debug, thiserror::Error)]
    #[error("wrapper: {0}")]
    struct Wrapper(#[source] std::io::Error);

    fn io() -> std::io::Error {
        std::io::Error::other("connection refused")
    }

    #[test]
    fn the_chain_names_every_cause_in_order() {
        assert_eq!(
            chain(&Outer(Middle(io()))),
            "outer: middle: connection refused"
        );
    }

    #[test]
    fn a_cause_already_printed_is_not_repeated() {
        assert_eq!(chain(&Wrapper(io())), "wrapper: connection refused");
    }

    #[test]
    fn driver_and_corrupt_errors_keep_the_context_and_chain() {
        let err = driver("read user")(Outer(Middle(io())));
        assert!(
            matches!(&err, StoreError::Cassandra(m) if m == "read user: outer: middle: connection refused"),
            "{err:?}"
        );
        let err = corrupt("user row")(io());
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m == "user row: connection refused"),
            "{err:?}"
        );
    }
}
