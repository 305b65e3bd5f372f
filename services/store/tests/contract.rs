//! The store contract, run against every backend: SQLite always, and
//! Cassandra/ScyllaDB when `RILL_TEST_CASSANDRA` names a contact point
//! (`host:9042`). The Cassandra tests are marked ignored so that a run
//! without a cluster says they were skipped; `scripts/test.sh` runs them
//! when the variable is set.

mod scenarios;

use std::sync::Arc;

use rill_store::{CassandraSettings, Store, StoreSettings};
use rill_testkit::stack::TempDb;

/// A SQLite store in a fresh file (removed when the `TempDb` drops).
async fn sqlite() -> (TempDb, Arc<dyn Store>) {
    let db = TempDb::new();
    let store = rill_store::open(&db.settings())
        .await
        .expect("open SQLite store");
    (db, store)
}

/// A Cassandra store in a keyspace of its own.
async fn cassandra() -> Arc<dyn Store> {
    let contact_point = std::env::var("RILL_TEST_CASSANDRA")
        .expect("set RILL_TEST_CASSANDRA=host:port to run the Cassandra contract tests");
    let keyspace = format!("rill_test_{}", uuid::Uuid::new_v4().simple());
    let settings = StoreSettings {
        cassandra: CassandraSettings {
            contact_points: vec![contact_point],
            keyspace,
            ..CassandraSettings::default()
        },
        ..StoreSettings::default()
    };
    rill_store::open(&settings)
        .await
        .expect("connect to Cassandra")
}

macro_rules! contract_tests {
    ($($scenario:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let (_db, store) = super::sqlite().await;
                    super::scenarios::$scenario(&*store).await;
                }
            )*
        }
        mod on_cassandra {
            $(
                #[tokio::test]
                #[ignore = "needs a Cassandra/ScyllaDB contact point in RILL_TEST_CASSANDRA"]
                async fn $scenario() {
                    let store = super::cassandra().await;
                    super::scenarios::$scenario(&*store).await;
                }
            )*
        }
    };
}

contract_tests!(
    users_are_upserted_read_and_deleted_idempotently,
    user_pages_cover_every_user_once,
    profiles_are_upserted_read_and_deleted,
    profile_pages_cover_every_profile_once,
    binding_and_unbinding,
    binding_unknown_users_or_profiles_is_ignored,
    deleting_a_user_or_profile_removes_its_memberships,
    member_pages_cover_every_member_once,
    suggested_users_are_bound_to_two_or_more_profiles,
    history_is_newest_first_and_pages_with_before,
    appending_the_same_messages_again_changes_nothing,
    history_keeps_messages_that_arrive_out_of_order,
    history_spans_days,
    test_data_lists_only_test_data,
);
