//! Where a test's services keep users, profiles and history: a SQLite file
//! of the test's own, or a keyspace of its own on the test run's Apache
//! Cassandra (`scripts/test.sh` starts one and names it in
//! `RILL_TEST_CASSANDRA`).

use std::path::PathBuf;

use rill_store::{CassandraSettings, StoreSettings};
use uuid::Uuid;

/// A test's store.
#[derive(Debug)]
pub enum TestStore {
    Sqlite(TempDb),
    /// A keyspace that the services create when they first open the store.
    Cassandra {
        contact_point: String,
        keyspace: String,
    },
}

impl TestStore {
    /// A SQLite database file of the test's own.
    pub fn sqlite() -> Self {
        Self::Sqlite(TempDb::new())
    }

    /// A keyspace of the test's own on the test run's Cassandra.
    pub fn cassandra() -> Self {
        Self::Cassandra {
            contact_point: cassandra_contact_point(),
            keyspace: format!("rill_test_{}", Uuid::new_v4().simple()),
        }
    }

    /// The services' store settings.
    pub fn settings(&self) -> StoreSettings {
        match self {
            Self::Sqlite(db) => db.settings(),
            Self::Cassandra {
                contact_point,
                keyspace,
            } => StoreSettings {
                cassandra: CassandraSettings {
                    contact_points: vec![contact_point.clone()],
                    keyspace: keyspace.clone(),
                    ..CassandraSettings::default()
                },
                ..StoreSettings::default()
            },
        }
    }

    /// The same settings as environment variables, for service processes.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Sqlite(db) => vec![("RILL_STORE__SQLITE_PATH", db.path.display().to_string())],
            Self::Cassandra {
                contact_point,
                keyspace,
            } => vec![
                (
                    "RILL_STORE__CASSANDRA__CONTACT_POINTS",
                    format!("[{contact_point}]"),
                ),
                ("RILL_STORE__CASSANDRA__KEYSPACE", keyspace.clone()),
            ],
        }
    }
}

/// The test run's Cassandra, `host:port`.
pub fn cassandra_contact_point() -> String {
    std::env::var("RILL_TEST_CASSANDRA").expect(
        "RILL_TEST_CASSANDRA must name the test run's Cassandra (127.0.0.1:PORT): \
         run the tests with scripts/test.sh, which starts one",
    )
}

/// A SQLite database file of its own, removed when dropped.
#[derive(Debug)]
pub struct TempDb {
    pub path: PathBuf,
}

impl TempDb {
    pub fn new() -> Self {
        Self {
            path: std::env::temp_dir().join(format!("rill-test-{}.db", Uuid::new_v4())),
        }
    }

    pub fn settings(&self) -> StoreSettings {
        StoreSettings {
            sqlite_path: self.path.clone(),
            ..StoreSettings::default()
        }
    }
}

impl Default for TempDb {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}
