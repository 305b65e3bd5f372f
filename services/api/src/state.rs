//! What every api handler shares.

use std::sync::Arc;

use rdkafka::producer::FutureProducer;
use rill_sessions::LiveSessions;
use rill_store::Store;

use crate::directory::Directory;
use crate::metrics::ApiMetrics;
use crate::settings::ApiSettings;

pub struct ApiState {
    pub settings: ApiSettings,
    pub directory: Directory,
    /// Who is live where, across the cluster (Redis).
    pub live: LiveSessions,
    /// Producer of the push topic.
    pub producer: FutureProducer,
    pub metrics: Arc<ApiMetrics>,
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
