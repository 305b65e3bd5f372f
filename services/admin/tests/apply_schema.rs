//! `rill-admin apply-schema`, the binary itself, against the test run's
//! Cassandra (`RILL_TEST_CASSANDRA`, which `scripts/test.sh` starts and
//! sets), configured through the environment as the Helm chart's Job does.
//!
//! Each run leaves one keyspace behind: this package has no driver of its
//! own to drop it with (the store's tests, which do, check the
//! migrations themselves).

use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use rill_store::cassandra::CassandraStore;
use rill_store::{CassandraSettings, PageRequest, Store};

fn contact_point() -> String {
    std::env::var("RILL_TEST_CASSANDRA").expect(
        "RILL_TEST_CASSANDRA must name the test run's Cassandra (127.0.0.1:PORT): \
         run the tests with scripts/test.sh, which starts one",
    )
}

/// A keyspace name no other test uses.
fn unique_keyspace() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("rill_admin_test_{}_{nanos}", std::process::id())
}

fn rill_admin(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rill-admin"));
    command.args(args).env_remove("RILL_CONFIG");
    for (key, _) in std::env::vars() {
        if key.starts_with("RILL_STORE__") || key.starts_with("RILL_KAFKA__") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("run rill-admin")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn apply_schema_creates_the_keyspace_and_can_run_again() {
    let contact_point = contact_point();
    let keyspace = unique_keyspace();
    let env = [
        (
            "RILL_STORE__CASSANDRA__CONTACT_POINTS",
            contact_point.as_str(),
        ),
        ("RILL_STORE__CASSANDRA__KEYSPACE", keyspace.as_str()),
    ];
    let ready = format!("schema ready: keyspace {keyspace} on {contact_point}\n");
    for run in ["first", "second"] {
        let out = rill_admin(&["apply-schema"], &env);
        assert!(
            out.status.success(),
            "{run} run failed: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), ready, "{run} run");
    }
    // The services find the schema and use it.
    let settings = CassandraSettings {
        contact_points: vec![contact_point],
        keyspace,
        ..CassandraSettings::default()
    };
    let store = CassandraStore::connect(&settings)
        .await
        .expect("a service connects to the schema");
    let users = store
        .users(PageRequest {
            after: None,
            limit: 10,
        })
        .await
        .expect("read users");
    assert!(users.items.is_empty());
}

#[test]
fn apply_schema_without_a_contact_point_names_the_setting() {
    let out = rill_admin(&["apply-schema"], &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("store.cassandra.contact_points")
            && stderr.contains("RILL_STORE__CASSANDRA__CONTACT_POINTS"),
        "{stderr}"
    );
}
