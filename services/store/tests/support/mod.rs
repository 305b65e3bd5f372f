//! The Cassandra the store's tests use: `RILL_TEST_CASSANDRA` names it
//! (`host:port`). `scripts/test.sh` starts one (`scripts/cassandra/run.sh`)
//! and sets the variable; each test works in a keyspace of its own and
//! drops it when it passes (a failed test leaves its keyspace to look at).

use rill_store::CassandraSettings;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

/// The contact point of the tests' Cassandra. Panics, rather than
/// skipping, when none is set: every run tests every backend.
pub fn contact_point() -> String {
    match std::env::var("RILL_TEST_CASSANDRA") {
        Ok(point) if !point.trim().is_empty() => point,
        _ => panic!(
            "RILL_TEST_CASSANDRA is not set: the Cassandra tests need a Cassandra node. \
             Run the tests through scripts/test.sh, which starts one and sets it; or start one \
             yourself (scripts/cassandra/run.sh DIR 9042 & scripts/cassandra/wait.sh 9042) \
             and set RILL_TEST_CASSANDRA=127.0.0.1:9042"
        ),
    }
}

/// A keyspace name no other test uses.
pub fn unique_keyspace(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A keyspace of the tests' Cassandra for one test, not created yet (the
/// store creates it when it connects).
#[derive(Debug)]
pub struct TestKeyspace {
    pub settings: CassandraSettings,
}

impl TestKeyspace {
    pub fn new() -> Self {
        Self::on(contact_point())
    }

    /// A fresh keyspace on the node at `contact_point`.
    pub fn on(contact_point: String) -> Self {
        Self {
            settings: CassandraSettings {
                contact_points: vec![contact_point],
                keyspace: unique_keyspace("rill_test"),
                ..CassandraSettings::default()
            },
        }
    }

    /// A session of its own, for what the store does not offer.
    pub async fn session(&self) -> Session {
        SessionBuilder::new()
            .known_nodes(&self.settings.contact_points)
            .build()
            .await
            .expect("connect to the tests' Cassandra")
    }

    /// Drops the keyspace, so that a long run leaves the node no bigger.
    pub async fn remove(self) {
        let cql = format!("DROP KEYSPACE IF EXISTS \"{}\"", self.settings.keyspace);
        self.session()
            .await
            .query_unpaged(cql, &[])
            .await
            .expect("drop the test keyspace");
    }
}
