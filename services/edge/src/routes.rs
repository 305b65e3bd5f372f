//! Every route of the edge, in one table.
//!
//! | route                            | what                                  |
//! |----------------------------------|---------------------------------------|
//! | `POST /login`                    | session cookie for a user id          |
//! | `POST /logout`                   | clears the session cookie             |
//! | `GET /live/{profile}/ws`         | WebSocket live session                |
//! | `GET /live/{profile}/sse`        | Server-Sent Events live session       |
//! | `POST /live/{profile}/messages`  | send a message (for SSE clients)      |
//! | `GET /healthz` `/readyz` `/metrics` | operations                         |
//! | `GET /`, `GET /client/{file}`    | the browser client ([`client_files`]) |
//!
//! [`client_files`]: crate::client_files

use std::sync::Arc;

use prometheus_client::registry::Registry;
use warp::Filter;

use crate::client_files;
use crate::state::EdgeState;
use crate::transport::{http, sse, websocket};

/// The edge's routes; every response names the edge in `x-rill-edge`.
pub fn all(
    state: Arc<EdgeState>,
    registry: Arc<Registry>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let ready_state = state.clone();
    let ready = Arc::new(move || ready_state.is_ready());
    let ops = rill_runtime::ops::routes(registry, ready);
    let edge_id = warp::http::HeaderValue::from_str(&state.edge_id)
        .unwrap_or_else(|_| warp::http::HeaderValue::from_static("edge"));
    let transport = &state.transport;
    ops.or(http::routes(transport.clone()))
        .unify()
        .or(sse::routes(transport.clone()))
        .unify()
        .or(websocket::routes(transport.clone()))
        .unify()
        .or(client_files::routes())
        .unify()
        .recover(rill_runtime::ops::recover)
        .unify()
        .with(warp::reply::with::header("x-rill-edge", edge_id))
}
