//! What every api handler shares.

use rill_store::Store;

use crate::directory::Directory;
use crate::settings::ApiSettings;

#[derive(Debug)]
pub struct ApiState {
    pub settings: ApiSettings,
    pub directory: Directory,
}

impl ApiState {
    pub fn store(&self) -> &dyn Store {
        self.directory.store()
    }
}
