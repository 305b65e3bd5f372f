//! An Apache Cassandra node of a test's own, for the tests that kill or
//! restart it (the others share the test run's node, `RILL_TEST_CASSANDRA`).
//! It keeps what it acknowledged across a SIGKILL: the run's node is
//! ephemeral, this one is not.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::{ChildGuard, free_addr};
use crate::tools;

/// How long a node may take to answer CQL on a busy machine.
pub const NODE_START: Duration = Duration::from_secs(240);

/// A Cassandra node of the test's own, run by `scripts/cassandra/run.sh`.
/// Its data directory is removed when it drops, unless the test failed.
#[derive(Debug)]
pub struct CassandraNode {
    process: Option<ChildGuard>,
    dir: PathBuf,
    cql: SocketAddr,
    storage: SocketAddr,
}

impl CassandraNode {
    /// Starts a node on free ports and waits until it answers CQL.
    pub fn start() -> Self {
        let cql = free_addr();
        let storage = loop {
            let addr = free_addr();
            if addr != cql {
                break addr;
            }
        };
        let dir =
            std::env::temp_dir().join(format!("rill-test-cassandra-{}", uuid::Uuid::new_v4()));
        let mut node = Self {
            process: None,
            dir,
            cql,
            storage,
        };
        node.restart();
        node
    }

    /// Starts the node (again, on the same directory and ports) and waits
    /// until it answers CQL: the native transport opens its port only
    /// when the node is ready for queries.
    pub fn restart(&mut self) {
        let script = tools::repo_root().join("scripts/cassandra/run.sh");
        let mut command = Command::new("bash");
        command
            .arg(script)
            .arg(&self.dir)
            .arg(self.cql.port().to_string())
            .arg(self.storage.port().to_string())
            // This test is about a node that keeps what it acknowledged.
            .env_remove("RILL_CASSANDRA_EPHEMERAL");
        let mut process = ChildGuard::spawn("cassandra", &mut command);
        process.wait_for_port(self.cql, NODE_START);
        self.process = Some(process);
    }

    pub fn process(&mut self) -> &mut ChildGuard {
        self.process.as_mut().expect("the node is running")
    }

    pub fn contact_point(&self) -> String {
        self.cql.to_string()
    }
}

impl Drop for CassandraNode {
    fn drop(&mut self) {
        drop(self.process.take()); // killed
        if std::thread::panicking() {
            eprintln!(
                "the test node's data and logs are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
