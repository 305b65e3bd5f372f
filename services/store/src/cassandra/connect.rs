//! The driver session, configured from [`CassandraSettings`].

use std::sync::Arc;

use scylla::client::session::OpenSsl010Config;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;

use openssl::ssl::{SslConnector, SslMethod};
use openssl::x509::store::X509StoreBuilder;

use super::errors::driver;
use crate::{CassandraSettings, StoreError};

/// The session builder for `settings`: contact points, credentials, TLS and
/// the preferred datacenter when they are set.
///
/// Write timestamps come from this process, strictly increasing: the
/// events of one `apply` call are written in order, and a delete followed
/// by a re-insert of the same row must never tie (in a tie the delete
/// wins), which server-side timestamps from different coordinators do not
/// guarantee.
///
/// After each schema change the driver still waits for the nodes to agree
/// on the schema, but does not read the whole schema again each time (by
/// default it does: on a single node that took longer than the change
/// itself, and a new keyspace is a dozen changes). `CassandraStore::connect`
/// reads it once, after the migrations.
pub(super) fn builder(settings: &CassandraSettings) -> Result<SessionBuilder, StoreError> {
    if settings.contact_points.is_empty() {
        return Err(StoreError::Cassandra(
            "store.cassandra.contact_points is empty".into(),
        ));
    }
    let mut builder = SessionBuilder::new()
        .known_nodes(&settings.contact_points)
        .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
        .refresh_metadata_on_auto_schema_agreement(false)
        // Only this keyspace's metadata is needed (for token-aware routing).
        .keyspaces_to_fetch([settings.keyspace.to_ascii_lowercase()]);
    if let Some(datacenter) = settings
        .local_datacenter
        .as_ref()
        .filter(|dc| !dc.is_empty())
    {
        builder = builder.prefer_datacenter(datacenter.clone());
    }
    match (&settings.username, &settings.password) {
        (Some(username), Some(password)) => builder = builder.user(username, password.expose()),
        (None, None) => {}
        _ => {
            return Err(StoreError::Cassandra(
                "store.cassandra.username and store.cassandra.password go together".into(),
            ));
        }
    }
    if !settings.tls_ca_file.is_empty() {
        builder = builder.tls_context(Some(tls(&settings.tls_ca_file)?));
    }
    Ok(builder)
}

/// TLS that trusts the CAs of `ca_file` (PEM) only: OpenSSL's client
/// defaults (peer verification on), and the driver checks each node's
/// certificate against the node's IP address.
fn tls(ca_file: &str) -> Result<OpenSsl010Config, StoreError> {
    let error = |err: openssl::error::ErrorStack| {
        StoreError::Cassandra(format!("store.cassandra.tls_ca_file {ca_file}: {err}"))
    };
    let mut connector = SslConnector::builder(SslMethod::tls_client()).map_err(error)?;
    // Only the given CAs: SslConnector starts from the system's default
    // paths, which set_ca_file adds to; a fresh store keeps them out.
    connector.set_cert_store(X509StoreBuilder::new().map_err(error)?.build());
    connector.set_ca_file(ca_file).map_err(error)?;
    Ok(OpenSsl010Config::new(connector))
}

/// Connects to the cluster as `settings` say (contact points, credentials,
/// TLS), without touching the schema.
pub async fn session(settings: &CassandraSettings) -> Result<Session, StoreError> {
    builder(settings)?.build().await.map_err(driver("connect"))
}

#[cfg(test)]
mod tests {
    use rill_runtime::Secret;
    use scylla::routing::NodeLocationPreference;

    use super::*;

    fn settings() -> CassandraSettings {
        CassandraSettings {
            contact_points: vec!["10.0.0.1:9042".into(), "10.0.0.2:9042".into()],
            ..Default::default()
        }
    }

    #[test]
    fn contact_points_and_client_timestamps_are_set() {
        let config = builder(&settings()).expect("builder").config;
        assert_eq!(config.known_nodes.len(), 2);
        assert!(config.timestamp_generator.is_some());
        assert!(
            config.schema_agreement_automatic_waiting,
            "schema changes still wait for agreement"
        );
        assert!(!config.refresh_metadata_on_auto_schema_agreement);
        assert_eq!(config.keyspaces_to_fetch, vec!["rill".to_owned()]);
        assert!(config.authenticator.is_none(), "no credentials unless set");
        assert!(matches!(
            config.node_location_preference,
            NodeLocationPreference::Any
        ));
    }

    #[test]
    fn credentials_and_datacenter_come_from_the_settings() {
        let mut settings = settings();
        settings.username = Some("rill".into());
        settings.password = Some(Secret::new("hunter2"));
        settings.local_datacenter = Some("eu-west".into());
        let config = builder(&settings).expect("builder").config;
        assert!(config.authenticator.is_some());
        assert!(
            matches!(&config.node_location_preference, NodeLocationPreference::Datacenter(dc) if dc == "eu-west")
        );
    }

    #[test]
    fn a_ca_file_turns_tls_on() {
        assert!(
            builder(&settings())
                .expect("builder")
                .config
                .tls_context
                .is_none()
        );
        let mut settings = settings();
        settings.tls_ca_file = "/nonexistent/ca.pem".into();
        assert!(
            matches!(builder(&settings), Err(StoreError::Cassandra(m)) if m.contains("tls_ca_file")),
            "an unreadable CA file is an error that names the setting"
        );
    }

    #[test]
    fn half_credentials_and_no_contact_points_are_errors() {
        let mut half = settings();
        half.username = Some("rill".into());
        assert!(
            matches!(builder(&half), Err(StoreError::Cassandra(m)) if m.contains("go together"))
        );
        let none = CassandraSettings::default();
        assert!(
            matches!(builder(&none), Err(StoreError::Cassandra(m)) if m.contains("contact_points"))
        );
    }
}
