//! What every api handler shares.

use std::sync::Arc;

use rdkafka::producer::FutureProducer;
use rill_auth::api_key::ApiKeys;
use rill_auth::password::Passwords;
use rill_runtime::session_cookie::SessionCookies;
use rill_sessions::{LiveSessions, Logins};
use rill_store::Store;

use crate::directory::Directory;
use crate::metrics::ApiMetrics;
use crate::settings::ApiSettings;

pub struct ApiState {
    pub settings: ApiSettings,
    pub directory: Directory,
    /// Who is live where, across the cluster (Redis).
    pub live: LiveSessions,
    /// Logins (Redis): what session cookies stand for.
    pub logins: Logins,
    pub cookies: SessionCookies,
    pub api_keys: ApiKeys,
    /// Calls per API key name (`limits.calls_per_api_key`).
    pub api_key_calls: rill_runtime::rate_limit::KeyedLimiter<String>,
    /// Sign-ups per client address (`limits.signups_per_address`).
    pub signups: rill_runtime::rate_limit::KeyedLimiter<String>,
    pub passwords: Passwords,
    /// Producer of the push topic.
    pub producer: FutureProducer,
    pub metrics: Arc<ApiMetrics>,
    /// The operations stream's snapshots.
    pub ops: crate::ops::Collector,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    pub fn store(&self) -> &dyn Store {
        self.directory.store()
    }
}
