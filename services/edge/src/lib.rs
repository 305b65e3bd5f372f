//! The edge node: holds live sessions over WebSocket and SSE, sends what
//! clients say to Kafka, and delivers what comes back from Kafka to its
//! local sessions.
//!
//! A message's path through the edge, by module:
//! - [`transport`]: where it enters (a WebSocket frame or an HTTP POST) and
//!   where it leaves (a WebSocket frame or an SSE event);
//! - [`to_kafka`]: where it gets its id and goes to Kafka;
//! - [`from_kafka`]: where it comes back, on every edge;
//! - [`hub`]: which local sessions get it;
//! - [`membership`]: who may open a stream on, or send to, a profile.
//!
//! A live session's life: [`session`] opens it (checks, the Redis lock,
//! presence, replay of what a reconnecting client missed, from
//! [`recovery`]) and says when it ends.
//!
//! Around them: [`app`] builds, serves and drains an edge from what
//! [`state`] holds, [`server`] serves HTTP with its read deadlines,
//! [`routes`] lists its routes, [`events`] defines the
//! JSON frames, [`error`] maps failures to HTTP statuses and error events
//! (at the transport boundary: the layers below have errors of their own),
//! [`disconnect`] says why a session ends, with its close code and last
//! event, [`capacity`] counts sessions, [`availability`] says whether the
//! edge takes more, [`metrics`], [`settings`]; [`client_files`] serves the
//! browser client (`services/edge/client/`).
//!
//! Only [`Edge`] and [`settings`] are public (the binary and the tests
//! need no more; `bench` and `fuzzing`, hidden, hand the benchmark and the
//! fuzz targets what they drive); the modules form a tree: `app` builds
//! `state`, `routes` hands the transports their [`transport::Context`], and
//! nothing below imports what is above it.

mod app;
mod auth;
mod availability;
mod capacity;
mod client_files;
mod disconnect;
mod error;
mod events;
mod from_kafka;
mod hub;
mod kafka_link;
mod membership;
mod metrics;
mod recovery;
mod routes;
mod server;
mod session;
pub mod settings;
mod state;
mod to_kafka;
mod transport;

pub use app::{Edge, StartError};
pub use settings::EdgeSettings;

#[doc(hidden)]
pub mod fuzzing;

/// What the hub's benchmark (`benches/hub.rs`) drives; not an API.
#[doc(hidden)]
pub mod bench {
    use std::sync::Arc;
    use std::time::Duration;

    use rill_domain::{ProfileId, UserId};

    pub use crate::events::Outbound;
    pub use crate::hub::{Hub, Subscription};

    /// A hub as an edge makes it.
    pub fn hub() -> Arc<Hub> {
        Hub::new(
            Duration::from_secs(10),
            Arc::new(crate::metrics::EdgeMetrics::default()),
        )
    }

    /// A small event, as a chat message's would be.
    pub fn event() -> Arc<Outbound> {
        crate::events::ServerEvent::Pong.to_outbound()
    }

    /// Ends `user`'s sessions on `profile`; how many.
    pub fn evict(hub: &Hub, user: UserId, profile: ProfileId) -> usize {
        hub.evict_member(user, profile)
    }
}
