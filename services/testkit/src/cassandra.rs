//! An Apache Cassandra node of a test's own, for the tests that kill or
//! restart it (the others share the test run's node, `RILL_TEST_CASSANDRA`).
//! It keeps what it acknowledged across a SIGKILL: the run's node is
//! ephemeral, this one is not.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::certs::{KEYSTORE_PASSWORD, TestCerts};
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
    /// Settings appended to the node's cassandra.yaml, and JVM options.
    extra: Option<(PathBuf, String)>,
}

/// The superuser a node with the password authenticator starts with.
pub const DEFAULT_SUPERUSER: (&str, &str) = ("cassandra", "cassandra");

impl CassandraNode {
    /// Starts a node on free ports and waits until it answers CQL.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A node that takes only TLS clients (`client_encryption_options`,
    /// with the server certificate of `certs`) and checks passwords
    /// (`PasswordAuthenticator`; it starts with the superuser
    /// [`DEFAULT_SUPERUSER`], made at once rather than after 10 s). A small
    /// heap (512 MiB), and ephemeral: this node is thrown away after one
    /// test. Started and waited for as [`CassandraNode::start`].
    pub fn start_secured(certs: &TestCerts) -> Self {
        let yaml = certs.dir().join("cassandra-secured.yaml");
        let keystore = certs.keystore();
        let options = format!(
            "authenticator: org.apache.cassandra.auth.PasswordAuthenticator\n\
             client_encryption_options:\n  \
               enabled: true\n  \
               optional: false\n  \
               keystore: {keystore}\n  \
               keystore_password: {KEYSTORE_PASSWORD}\n  \
               store_type: PKCS12\n  \
               require_client_auth: false\n",
            keystore = keystore.display()
        );
        std::fs::write(&yaml, options).expect("write the node's TLS settings");
        Self::start_with(Some((
            yaml,
            "-Dcassandra.superuser_setup_delay_ms=0".into(),
        )))
    }

    fn start_with(extra: Option<(PathBuf, String)>) -> Self {
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
            extra,
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
        if let Some((yaml, jvm)) = &self.extra {
            command
                .env("RILL_CASSANDRA_EXTRA_YAML", yaml)
                .env("RILL_CASSANDRA_JVM_OPTS", jvm)
                .env("RILL_CASSANDRA_HEAP", "512M")
                .env("RILL_CASSANDRA_EPHEMERAL", "1");
        }
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
