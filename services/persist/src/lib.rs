//! The persist service: The persistence consumer (issue 3); for now its settings, operations endpoints and shutdown.
//!
//! - [`settings`]: the service's settings.

pub mod settings;

use std::sync::Arc;

use prometheus_client::registry::Registry;
use rill_runtime::shutdown::CancellationToken;
use tokio::net::TcpListener;
use warp::Filter;

pub use settings::PersistSettings;

/// Serves the persist on `listener` until `shutdown` is cancelled.
pub async fn serve(_settings: PersistSettings, listener: TcpListener, shutdown: CancellationToken) {
    let registry = Arc::new(Registry::default());
    let ready_token = shutdown.clone();
    let ready = Arc::new(move || !ready_token.is_cancelled());
    let routes = rill_runtime::ops::routes(registry, ready).recover(rill_runtime::ops::not_found);
    rill_runtime::ops::serve(routes, listener, shutdown).await;
}
