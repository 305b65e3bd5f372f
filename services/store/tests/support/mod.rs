//! The Cassandra the store's tests use: the test run's, which
//! `scripts/test.sh` starts (`scripts/cassandra/run.sh`) and names in
//! `RILL_TEST_CASSANDRA`. Each test works in a keyspace of its own and
//! drops it when it passes (a failed test leaves its keyspace to look at).

use rill_store::CassandraSettings;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

/// A keyspace name no other test uses.
pub fn unique_keyspace() -> String {
    format!("rill_test_{}", uuid::Uuid::new_v4().simple())
}

/// A keyspace for one test, not created yet: the store creates it when it
/// connects.
#[derive(Debug)]
pub struct TestKeyspace {
    pub settings: CassandraSettings,
}

impl TestKeyspace {
    /// A fresh keyspace on the test run's Cassandra. Panics, rather than
    /// skipping the test, when `RILL_TEST_CASSANDRA` is not set: every run
    /// tests every backend.
    pub fn new() -> Self {
        Self::on(rill_testkit::store::cassandra_contact_point())
    }

    /// A fresh keyspace on the node at `contact_point`.
    pub fn on(contact_point: String) -> Self {
        Self {
            settings: CassandraSettings {
                contact_points: vec![contact_point],
                keyspace: unique_keyspace(),
                ..CassandraSettings::default()
            },
        }
    }

    /// A driver session of its own, for what the store does not offer.
    pub async fn session(&self) -> Session {
        SessionBuilder::new()
            .known_nodes(&self.settings.contact_points)
            .build()
            .await
            .expect("connect to Cassandra")
    }

    /// Drops the keyspace, so that a long run leaves the node no bigger.
    /// About a second: Cassandra flushes every table with data in the
    /// commit log, once per dropped table.
    pub async fn remove(self) {
        let cql = format!("DROP KEYSPACE IF EXISTS \"{}\"", self.settings.keyspace);
        self.session()
            .await
            .query_unpaged(cql, &[])
            .await
            .expect("drop the test keyspace");
    }
}
