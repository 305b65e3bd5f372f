//! What only the Cassandra backend has: its schema migrations (applied
//! again, by two stores at once, and over a keyspace an older build
//! made), and a node that goes away and comes back.
//!
//! The migration tests use the test run's Cassandra (`RILL_TEST_CASSANDRA`);
//! the restart test starts a node of its own (`scripts/cassandra/run.sh`,
//! on free ports, with a data directory of its own), kills it and starts
//! it again on the same directory and ports.

mod support;

use std::time::{Duration, Instant};

use rill_domain::{
    ChatMessage, DirectoryChange, DirectoryEvent, MessageBody, MessageId, Name, ProfileId,
    Sequenced, User, UserId,
};
use rill_store::cassandra::CassandraStore;
use rill_store::{Account, Store};
use rill_testkit::cassandra::{CassandraNode, NODE_START};
use scylla::client::session::Session;
use support::TestKeyspace;

/// How long the store may take to work again once the node answers: the
/// driver reconnects with a back-off of at most 10 s.
const RECONNECT: Duration = Duration::from_secs(120);

fn user(name: &str) -> User {
    User {
        id: UserId::random(),
        name: Name::parse(name).expect("name"),
        created_at_ms: 1,
        test_data: false,
    }
}

fn upsert(user: &User) -> Vec<DirectoryEvent> {
    vec![DirectoryEvent::new(
        DirectoryChange::UserUpserted(user.clone()),
        0,
    )]
}

/// `(version, applied_at_ms)` of every recorded migration, by version.
async fn recorded_migrations(session: &Session, keyspace: &str) -> Vec<(i32, i64)> {
    let cql = format!("SELECT version, applied_at_ms FROM \"{keyspace}\".schema_migrations");
    let result = session.query_unpaged(cql, &[]).await.expect("read");
    let rows = result.into_rows_result().expect("rows");
    let mut versions: Vec<(i32, i64)> = rows
        .rows::<(i32, i64)>()
        .expect("types")
        .collect::<Result<_, _>>()
        .expect("decode");
    versions.sort_unstable();
    versions
}

/// What `rill-admin apply-schema` does, twice: the second time finds every
/// migration applied and runs none (a migration that ran again would
/// record itself again, with a later time), and leaves the data alone.
#[tokio::test]
async fn applying_the_schema_again_skips_every_migration() {
    let keyspace = TestKeyspace::new();
    let first = CassandraStore::connect(&keyspace.settings)
        .await
        .expect("create the schema");
    let session = keyspace.session().await;
    let recorded = recorded_migrations(&session, &keyspace.settings.keyspace).await;
    let versions: Vec<i32> = recorded.iter().map(|(v, _)| *v).collect();
    assert!(!versions.is_empty(), "the migrations are recorded");
    assert_eq!(
        versions,
        (1..=versions.len() as i32).collect::<Vec<_>>(),
        "each once, in order"
    );
    let ada = user("Ada");
    first.apply(&upsert(&ada)).await.expect("write");

    let again = CassandraStore::connect(&keyspace.settings)
        .await
        .expect("connect to the existing schema");
    assert_eq!(
        recorded_migrations(&session, &keyspace.settings.keyspace).await,
        recorded,
        "no migration ran again"
    );
    assert_eq!(again.user(ada.id).await.expect("read"), Some(ada));
    drop((first, again, session));
    keyspace.remove().await;
}

/// Two services starting at once on a new keyspace both create it, and
/// end up with one schema that both use.
#[tokio::test]
async fn two_stores_creating_the_schema_at_once_share_it() {
    let keyspace = TestKeyspace::new();
    let (a, b) = tokio::join!(
        CassandraStore::connect(&keyspace.settings),
        CassandraStore::connect(&keyspace.settings),
    );
    let (a, b) = (a.expect("first store"), b.expect("second store"));
    let ada = user("Ada");
    a.apply(&upsert(&ada)).await.expect("write through one");
    assert_eq!(
        b.user(ada.id).await.expect("read through the other"),
        Some(ada)
    );
    drop((a, b));
    keyspace.remove().await;
}

/// The history tables of migration 1, which migration 3 drops.
fn day_bucketed_history(ks: &str) -> [String; 2] {
    [
        format!(
            "CREATE TABLE \"{ks}\".messages_by_profile (profile_id uuid, bucket bigint, id blob, \
             sender_id uuid, body text, sent_at_ms bigint, edge_id text, \
             PRIMARY KEY ((profile_id, bucket), id)) WITH CLUSTERING ORDER BY (id DESC)"
        ),
        format!(
            "CREATE TABLE \"{ks}\".message_buckets (profile_id uuid, bucket bigint, \
             PRIMARY KEY (profile_id, bucket)) WITH CLUSTERING ORDER BY (bucket DESC)"
        ),
    ]
}

/// The tables of `keyspace`, by name.
async fn tables(session: &Session, keyspace: &str) -> Vec<String> {
    let cql = "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?";
    let result = session.query_unpaged(cql, (keyspace,)).await.expect("read");
    let rows = result.into_rows_result().expect("rows");
    let mut names: Vec<String> = rows
        .rows::<(String,)>()
        .expect("types")
        .map(|row| row.expect("decode").0)
        .collect();
    names.sort_unstable();
    names
}

/// A keyspace made by the build before accounts (only migration 1: history
/// by day) gains the accounts tables and history by position at the next
/// connect, loses the day-bucketed history, and keeps its directory.
#[tokio::test]
async fn a_keyspace_from_before_accounts_and_positions_gains_them() {
    let keyspace = TestKeyspace::new();
    let ks = &keyspace.settings.keyspace;
    let old = CassandraStore::connect(&keyspace.settings)
        .await
        .expect("create the schema");
    let ada = user("Ada");
    old.apply(&upsert(&ada)).await.expect("write");
    drop(old);
    // Back to what the build before accounts left.
    let session = keyspace.session().await;
    let mut downgrade = vec![
        format!("DROP TABLE \"{ks}\".accounts"),
        format!("DROP TABLE \"{ks}\".account_by_user"),
        format!("DROP TABLE \"{ks}\".messages_by_position"),
        format!("DROP TABLE \"{ks}\".position_buckets"),
        format!("DELETE FROM \"{ks}\".schema_migrations WHERE version IN (2, 3)"),
    ];
    downgrade.extend(day_bucketed_history(ks));
    for cql in downgrade {
        session.query_unpaged(cql, &[]).await.expect("downgrade");
    }
    let versions: Vec<i32> = recorded_migrations(&session, ks)
        .await
        .iter()
        .map(|(v, _)| *v)
        .collect();
    assert_eq!(versions, [1]);
    assert!(
        tables(&session, ks)
            .await
            .contains(&"message_buckets".to_owned())
    );

    let upgraded = CassandraStore::connect(&keyspace.settings)
        .await
        .expect("migrate");
    let versions: Vec<i32> = recorded_migrations(&session, ks)
        .await
        .iter()
        .map(|(v, _)| *v)
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    let tables = tables(&session, ks).await;
    for gone in ["messages_by_profile", "message_buckets"] {
        assert!(!tables.contains(&gone.to_owned()), "{gone} in {tables:?}");
    }
    assert_eq!(
        upgraded.user(ada.id).await.expect("read"),
        Some(ada.clone())
    );
    let account = Account {
        login: "Ada".into(),
        user: ada.id,
        password_hash: "$argon2id$x".into(),
        created_at_ms: 1,
    };
    assert!(upgraded.create_account(&account).await.expect("create"));
    assert_eq!(
        upgraded.account_of_user(ada.id).await.expect("read"),
        Some(account)
    );
    let message = Sequenced {
        message: ChatMessage {
            id: MessageId::now(),
            profile_id: ProfileId::random(),
            sender_id: ada.id,
            body: MessageBody::parse("hello", 100).expect("body"),
            sent_at_ms: 1,
            edge_id: "edge".into(),
        },
        offset: 7 << 16,
    };
    upgraded
        .append_messages(std::slice::from_ref(&message))
        .await
        .expect("append");
    let profile = message.message.profile_id;
    assert_eq!(
        upgraded.history(profile, None, 10).await.expect("history"),
        vec![message]
    );
    drop((upgraded, session));
    keyspace.remove().await;
}

/// Writes `user` through `store` until it succeeds; panics after
/// `RECONNECT`.
async fn write_until_it_works(store: &CassandraStore, user: &User) {
    let deadline = Instant::now() + RECONNECT;
    loop {
        match store.apply(&upsert(user)).await {
            Ok(()) => return,
            Err(error) => assert!(
                Instant::now() < deadline,
                "the store did not work again within {RECONNECT:?}: {error}"
            ),
        }
        // The interval between attempts, not a wait for readiness.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The same store (no new connect) works again after its node was killed
/// (SIGKILL: the commit log is replayed) and after it was stopped
/// (SIGTERM: drained), and nothing it had acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_again_after_its_node_restarts() {
    let mut node = tokio::task::spawn_blocking(CassandraNode::start)
        .await
        .expect("start a node");
    let keyspace = TestKeyspace::on(node.contact_point());
    let store = CassandraStore::connect(&keyspace.settings)
        .await
        .expect("connect");
    let before_crash = user("Before crash");
    store.apply(&upsert(&before_crash)).await.expect("write");

    node.process().kill();
    let read = tokio::time::timeout(RECONNECT, store.user(before_crash.id))
        .await
        .expect("a read while the node is down ends");
    assert!(read.is_err(), "and fails: {read:?}");
    let mut node = tokio::task::spawn_blocking(move || {
        node.restart();
        node
    })
    .await
    .expect("restart the node");
    let after_crash = user("After crash");
    write_until_it_works(&store, &after_crash).await;
    assert_eq!(
        store.user(before_crash.id).await.expect("read"),
        Some(before_crash.clone()),
        "acknowledged before the crash, kept"
    );

    let _node = tokio::task::spawn_blocking(move || {
        node.process().terminate(NODE_START);
        node.restart();
        node
    })
    .await
    .expect("stop and start the node");
    let after_stop = user("After stop");
    write_until_it_works(&store, &after_stop).await;
    for written in [before_crash, after_crash, after_stop] {
        assert_eq!(
            store.user(written.id).await.expect("read"),
            Some(written.clone())
        );
    }
}
