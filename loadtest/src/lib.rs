//! `rill-load`: a load generator for Rill (WebSocket, SSE) and for a
//! Socket.IO peer, run as one coordinator and several worker processes.
//!
//! The coordinator ([`coordinator`]) creates users and profiles through the
//! api ([`setup`]), splits the sessions over worker processes (itself,
//! re-executed as `rill-load worker`), shows a progress bar, samples the
//! edges' memory and CPU ([`procfs`]), runs the broker probe ([`probe`]),
//! and writes the JSON report ([`report`]), a summary on stderr
//! ([`summary`]) and a latency plot ([`svg`]).
//! A worker ([`worker`]) opens its sessions from several 127.0.0.x source
//! addresses ([`transport`]), sends at its share of the rate, and measures
//! send-to-receive latency and deliveries ([`stats`]), over the whole run
//! and per interval of it by send time ([`intervals`]).
//!
//! At the end it reads the edges' own send-to-Kafka-ack histogram
//! ([`edge_view`]).
//!
//! `rill-load faults` ([`faults`]) is another kind of run: few clients that
//! come back after every disconnect while a scenario injects faults, and a
//! verdict on what each saw.
//!
//! `rill-load hostile` ([`hostile`]) runs clients that break the rules
//! (floods, connect/close loops, slow readers, parked fragments,
//! slowloris) beside an honest `run`, and counts what the edges answered.
//!
//! - [`cli`]: the command line.
//! - [`login`]: a session's user logged in at an edge with a connection
//!   token, for the session cookie.
//! - [`plan`]: what the coordinator tells a worker and what it answers.

pub mod cli;
pub mod coordinator;
pub mod edge_view;
pub mod faults;
pub mod hostile;
pub mod intervals;
pub mod login;
pub mod plan;
pub mod probe;
pub mod procfs;
pub mod report;
pub mod setup;
pub mod stats;
pub mod summary;
pub mod svg;
pub mod transport;
pub mod worker;
