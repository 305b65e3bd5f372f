//! The store over TLS to a Cassandra that checks passwords (issue 16.4): a
//! node of the test's own with `client_encryption_options` (certificates
//! the test made, no plaintext clients) and the PasswordAuthenticator. The
//! store connects as a role of its own, applies its schema, writes and
//! reads a user; a wrong password, a client that trusts another CA, and
//! one without TLS are refused.
//!
//! One node, one test: a second Cassandra JVM beside the run's is the
//! heaviest thing a test starts here (a 512 MiB heap; killed when the test
//! ends, passed or not).

use std::time::{Duration, Instant};

use rill_domain::{DirectoryChange, DirectoryEvent, Name, User, UserId};
use rill_runtime::Secret;
use rill_store::cassandra::CassandraStore;
use rill_store::{CassandraSettings, Store, StoreError};
use rill_testkit::cassandra::{CassandraNode, DEFAULT_SUPERUSER};
use rill_testkit::certs::TestCerts;

const ROLE: &str = "rill_store";
const PASSWORD: &str = "cassandra-test-password";

/// How long the node may take to make its default superuser once it
/// answers CQL, on a busy machine.
const SUPERUSER: Duration = Duration::from_secs(60);

fn settings(
    node: &CassandraNode,
    credentials: (&str, &str),
    ca: &std::path::Path,
) -> CassandraSettings {
    CassandraSettings {
        contact_points: vec![node.contact_point()],
        keyspace: format!("rill_tls_{}", uuid::Uuid::new_v4().simple()),
        username: Some(credentials.0.to_owned()),
        password: Some(Secret::new(credentials.1)),
        tls_ca_file: ca.display().to_string(),
        ..CassandraSettings::default()
    }
}

/// The driver's refusal of `settings`, as text.
async fn refused(settings: &CassandraSettings) -> String {
    match CassandraStore::connect(settings).await {
        Ok(_) => panic!("connected with {settings:?}"),
        Err(StoreError::Cassandra(message)) => message,
        Err(other) => panic!("not a Cassandra error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_over_tls_with_a_password_and_others_are_refused() {
    let certs = TestCerts::new();
    let node = tokio::task::block_in_place(|| CassandraNode::start_secured(&certs));

    // The superuser the node starts with makes the store's role (it may
    // still be making itself: wait for it).
    let admin = settings(&node, DEFAULT_SUPERUSER, &certs.ca());
    let since = Instant::now();
    let session = loop {
        match rill_store::cassandra::session(&admin).await {
            Ok(session) => break session,
            Err(err) => assert!(
                since.elapsed() < SUPERUSER,
                "the default superuser cannot log in: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    session
        .query_unpaged(
            format!("CREATE ROLE {ROLE} WITH PASSWORD = '{PASSWORD}' AND LOGIN = true"),
            &[],
        )
        .await
        .expect("create the store's role");
    // No GRANT: the node keeps the default AllowAllAuthorizer (who logs
    // in may do anything), as the store's role needs to create its
    // keyspace and tables.

    // Connect, apply the schema (the store creates its keyspace and
    // tables), write and read a user.
    let good = settings(&node, (ROLE, PASSWORD), &certs.ca());
    assert!(!format!("{good:?}").contains(PASSWORD), "{good:?}");
    let store = CassandraStore::connect(&good).await.expect("connects");
    let user = User {
        id: UserId::random(),
        name: Name::parse("Over TLS").expect("name"),
        created_at_ms: 1,
        test_data: false,
    };
    store
        .apply(&[DirectoryEvent::new(
            DirectoryChange::UserUpserted(user.clone()),
            0,
        )])
        .await
        .expect("write");
    assert_eq!(store.user(user.id).await.expect("read"), Some(user));

    let wrong_password = settings(&node, (ROLE, "not-the-password"), &certs.ca());
    let error = refused(&wrong_password).await;
    assert!(
        error.contains("Provided username rill_store and/or password are incorrect"),
        "{error}"
    );
    assert!(!error.contains("not-the-password"), "{error}");

    let other_ca = settings(&node, (ROLE, PASSWORD), &certs.other_ca());
    let error = refused(&other_ca).await;
    assert!(error.contains("certificate verify failed"), "{error}");

    let without_tls = CassandraSettings {
        tls_ca_file: String::new(),
        ..good.clone()
    };
    refused(&without_tls).await;
}
