//! The store contract, run against every backend: SQLite, and Cassandra
//! at `RILL_TEST_CASSANDRA` (`host:port`, which `scripts/test.sh` starts
//! and sets). The Cassandra tests fail, not skip, without it: every run
//! tests every backend.

mod scenarios;
mod support;

use std::sync::Arc;

use rill_store::{Store, StoreSettings};
use rill_testkit::stack::TempDb;
use support::TestKeyspace;

/// A SQLite store in a fresh file (removed when the `TempDb` drops).
async fn sqlite() -> (TempDb, Arc<dyn Store>) {
    let db = TempDb::new();
    let store = rill_store::open(&db.settings())
        .await
        .expect("open SQLite store");
    (db, store)
}

/// A Cassandra store in `keyspace`, which connecting creates.
async fn cassandra(keyspace: &TestKeyspace) -> Arc<dyn Store> {
    let settings = StoreSettings {
        cassandra: keyspace.settings.clone(),
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
                async fn $scenario() {
                    let keyspace = super::TestKeyspace::new();
                    let store = super::cassandra(&keyspace).await;
                    super::scenarios::$scenario(&*store).await;
                    drop(store);
                    keyspace.remove().await;
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
    history_after_is_oldest_first_and_pages_with_after,
    history_follows_positions_not_message_ids,
    paging_both_ways_covers_every_message_once_across_buckets,
    appending_the_same_messages_again_changes_nothing,
    history_keeps_messages_that_arrive_out_of_order,
    profiles_keep_their_histories_apart,
    test_data_lists_only_test_data,
    a_burst_larger_than_one_write_is_stored_whole,
    accounts_are_created_and_read_by_login_key,
    a_taken_login_key_is_refused_and_the_account_kept,
    the_password_hash_is_replaced,
    accounts_are_found_by_user,
    deleting_a_user_deletes_its_account_and_frees_the_name,
    account_debug_hides_the_password_hash,
);

/// Sign-ups of one name race in tasks on several threads, through two
/// stores on one backend (two processes: two SQLite connections to one
/// file, two Cassandra sessions on one keyspace).
mod sign_up_race {
    use super::scenarios::concurrent_sign_ups_of_one_name_create_one_account as race;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sqlite() {
        let (db, first) = super::sqlite().await;
        let second = rill_store::open(&db.settings())
            .await
            .expect("open SQLite store again");
        race(vec![first, second]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_cassandra() {
        let keyspace = super::TestKeyspace::new();
        let first = super::cassandra(&keyspace).await;
        let second = super::cassandra(&keyspace).await;
        race(vec![first, second]).await;
        keyspace.remove().await;
    }
}
