//! Which store to use and how to reach it: a `store` section in each
//! service's settings.

use std::path::PathBuf;

use rill_runtime::{Secret, SettingsError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// The SQLite database file, used when no Cassandra contact point is
    /// set. Default `rill.db` (the local stack puts it in its state dir).
    pub sqlite_path: PathBuf,
    pub cassandra: CassandraSettings,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            sqlite_path: PathBuf::from("rill.db"),
            cassandra: CassandraSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CassandraSettings {
    /// `host:port` contact points, a list or comma separated. Default: none,
    /// which selects SQLite.
    #[serde(deserialize_with = "rill_runtime::settings::one_or_many")]
    pub contact_points: Vec<String>,
    /// Keyspace, created if missing. Default `rill`.
    pub keyspace: String,
    /// Replication factor when the keyspace is created. Default 1.
    pub replication_factor: u32,
    /// The local datacenter for load balancing. Default: none (any).
    pub local_datacenter: Option<String>,
    /// Credentials, if the cluster requires them (Cassandra's
    /// PasswordAuthenticator: a role that may log in). Default: none.
    pub username: Option<String>,
    /// The password of `username`; never logged. Default: none.
    pub password: Option<Secret>,
    /// The CA certificates (PEM) that the nodes' TLS certificates are
    /// checked against; setting it turns TLS on (the nodes'
    /// `client_encryption_options`). The driver checks that a node's
    /// certificate names the IP address it connects to (the addresses the
    /// cluster announces, not the contact points' names). Default empty:
    /// no TLS.
    pub tls_ca_file: String,
}

impl Default for CassandraSettings {
    fn default() -> Self {
        Self {
            contact_points: Vec::new(),
            keyspace: "rill".into(),
            replication_factor: 1,
            local_datacenter: None,
            username: None,
            password: None,
            tls_ca_file: String::new(),
        }
    }
}

impl StoreSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.cassandra.contact_points.is_empty() && self.sqlite_path.as_os_str().is_empty() {
            return Err(SettingsError::invalid(
                "store.sqlite_path",
                "must not be empty",
            ));
        }
        let keyspace = &self.cassandra.keyspace;
        if keyspace.is_empty()
            || keyspace.len() > 48
            || !keyspace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(SettingsError::invalid(
                "store.cassandra.keyspace",
                "must be 1 to 48 letters, digits or underscores",
            ));
        }
        if self.cassandra.replication_factor == 0 {
            return Err(SettingsError::invalid(
                "store.cassandra.replication_factor",
                "must be at least 1",
            ));
        }
        if self.cassandra.password.is_some() != self.cassandra.username.is_some() {
            return Err(SettingsError::invalid(
                "store.cassandra.username",
                "username and password go together",
            ));
        }
        if !self.cassandra.tls_ca_file.is_empty() {
            rill_runtime::settings::security::readable_file(
                "store.cassandra.tls_ca_file",
                &self.cassandra.tls_ca_file,
            )?;
        }
        Ok(())
    }
}
