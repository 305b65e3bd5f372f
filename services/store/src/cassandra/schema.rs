//! The keyspace and its tables, created or migrated at connect.
//!
//! Migrations are numbered and recorded in `schema_migrations`; each
//! statement is idempotent (`IF NOT EXISTS`), so two services starting at
//! once, or a start that failed half-way, converge on the same schema.
//! Add a migration for every change; never edit one that has shipped.
//!
//! Tables (`{ks}` is the keyspace):
//! - `users`, `profiles`: one row per id.
//! - `profiles_by_user` (partition user) and `members_by_profile`
//!   (partition profile): each membership written twice, so both
//!   directions are single-partition reads; no secondary index.
//! - `multi_profile_users`: users bound to two or more profiles, kept on
//!   every bind and unbind, so that suggestions need no scan.
//! - `test_data_items`: ids of users and profiles marked as test data,
//!   partitioned by kind, kept on upsert and delete.
//! - `messages_by_position` (migration 3): a profile's history, one
//!   partition per profile and bucket of positions (see `buckets`), newest
//!   position first.
//! - `position_buckets` (migration 3): the buckets of each profile that
//!   hold messages, newest first: what a history read walks.
//! - `messages_by_profile` and `message_buckets`, history by day and
//!   message id, were made by migration 1 and dropped by migration 3.
//! - `accounts` (partition: the login key, see [`crate::login_key`]): one
//!   row per account, written only by lightweight transactions, which is
//!   what makes a login name unique (see `accounts`).
//! - `account_by_user`: the login key of each user's account, so that
//!   deleting a user finds its account without a scan.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scylla::client::session::Session;
use scylla::errors::ExecutionError;

use super::errors::driver;
use super::rows;
use crate::StoreError;

/// The placeholder for the quoted keyspace name in CQL texts.
pub(super) const KS: &str = "{ks}";

pub(super) struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub statements: &'static [&'static str],
}

/// Every migration, oldest first.
pub(super) const MIGRATIONS: &[Migration] = &[DIRECTORY_AND_HISTORY, ACCOUNTS, HISTORY_BY_POSITION];

const DIRECTORY_AND_HISTORY: Migration = Migration {
    version: 1,
    description: "directory, memberships, suggestions, test data, bucketed history",
    statements: &[
        "CREATE TABLE IF NOT EXISTS {ks}.users (
            id uuid PRIMARY KEY,
            name text,
            created_at_ms bigint,
            test_data boolean
        )",
        "CREATE TABLE IF NOT EXISTS {ks}.profiles (
            id uuid PRIMARY KEY,
            name text,
            created_at_ms bigint,
            test_data boolean
        )",
        "CREATE TABLE IF NOT EXISTS {ks}.profiles_by_user (
            user_id uuid,
            profile_id uuid,
            PRIMARY KEY (user_id, profile_id)
        )",
        "CREATE TABLE IF NOT EXISTS {ks}.members_by_profile (
            profile_id uuid,
            user_id uuid,
            PRIMARY KEY (profile_id, user_id)
        )",
        "CREATE TABLE IF NOT EXISTS {ks}.multi_profile_users (
            user_id uuid PRIMARY KEY
        )",
        "CREATE TABLE IF NOT EXISTS {ks}.test_data_items (
            kind text,
            id uuid,
            PRIMARY KEY (kind, id)
        )",
        // The message id is a `blob` (its 16 bytes, big-endian), not a
        // `uuid`: Cassandra's UUIDType orders by the version nibble first,
        // then v1 by timestamp and other versions by unsigned bytes, and
        // ScyllaDB has been reworking how it orders v7. Blobs compare as
        // plain unsigned bytes everywhere, which for UUIDv7 is time order
        // and for every id is the order of `MessageId` itself (and of the
        // SQLite backend), so `id < before` means the same in both stores.
        "CREATE TABLE IF NOT EXISTS {ks}.messages_by_profile (
            profile_id uuid,
            bucket bigint,
            id blob,
            sender_id uuid,
            body text,
            sent_at_ms bigint,
            edge_id text,
            PRIMARY KEY ((profile_id, bucket), id)
        ) WITH CLUSTERING ORDER BY (id DESC)",
        "CREATE TABLE IF NOT EXISTS {ks}.message_buckets (
            profile_id uuid,
            bucket bigint,
            PRIMARY KEY (profile_id, bucket)
        ) WITH CLUSTERING ORDER BY (bucket DESC)",
    ],
};

const ACCOUNTS: Migration = Migration {
    version: 2,
    description: "accounts, by login key and by user",
    statements: &[
        "CREATE TABLE IF NOT EXISTS {ks}.accounts (
            login_key text PRIMARY KEY,
            login text,
            user_id uuid,
            password_hash text,
            created_at_ms bigint
        )",
        "CREATE TABLE IF NOT EXISTS {ks}.account_by_user (
            user_id uuid PRIMARY KEY,
            login_key text
        )",
    ],
};

/// History in position order (issue 17): by profile and bucket of
/// positions (`buckets::BUCKET_BITS`), clustered by position, newest first.
/// The id (a blob, as in migration 1) is part of the key so that two
/// messages at one offset (a sequenced topic recreated under this store)
/// are both kept; a message stored again at its position overwrites
/// itself. The day-bucketed tables of migration 1 are dropped: their rows
/// have no position, and no deployment has history in them.
const HISTORY_BY_POSITION: Migration = Migration {
    version: 3,
    description: "history by position; history by day dropped",
    statements: &[
        "DROP TABLE IF EXISTS {ks}.messages_by_profile",
        "DROP TABLE IF EXISTS {ks}.message_buckets",
        "CREATE TABLE IF NOT EXISTS {ks}.messages_by_position (
            profile_id uuid,
            bucket bigint,
            position bigint,
            id blob,
            sender_id uuid,
            body text,
            sent_at_ms bigint,
            edge_id text,
            PRIMARY KEY ((profile_id, bucket), position, id)
        ) WITH CLUSTERING ORDER BY (position DESC, id DESC)",
        "CREATE TABLE IF NOT EXISTS {ks}.position_buckets (
            profile_id uuid,
            bucket bigint,
            PRIMARY KEY (profile_id, bucket)
        ) WITH CLUSTERING ORDER BY (bucket DESC)",
    ],
};

/// The keyspace as a CQL identifier: lowercased as Cassandra folds
/// unquoted names, and quoted so that a name starting with a digit works.
/// Only letters, digits and underscores are accepted, so nothing can
/// escape the quotes.
pub(super) fn keyspace_ident(keyspace: &str) -> Result<String, StoreError> {
    let valid = !keyspace.is_empty()
        && keyspace.len() <= 48
        && keyspace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(StoreError::Cassandra(format!(
            "store.cassandra.keyspace {keyspace:?} must be 1 to 48 letters, digits or underscores"
        )));
    }
    Ok(format!("\"{}\"", keyspace.to_ascii_lowercase()))
}

/// `cql` with the keyspace placeholder replaced.
pub(super) fn in_keyspace(cql: &str, ident: &str) -> String {
    cql.replace(KS, ident)
}

fn create_keyspace(ident: &str, replication_factor: u32) -> String {
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {ident} \
         WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
    )
}

/// How long a schema change is tried again while the driver cannot reach
/// schema agreement (see `migrate`).
const SCHEMA_AGREEMENT_WAIT: Duration = Duration::from_secs(60);

/// The pause between two tries.
const SCHEMA_AGREEMENT_RETRY: Duration = Duration::from_millis(500);

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (
    version int PRIMARY KEY,
    description text,
    applied_at_ms bigint
)";
const SELECT_VERSIONS: &str = "SELECT version FROM {ks}.schema_migrations";
const RECORD_VERSION: &str =
    "INSERT INTO {ks}.schema_migrations (version, description, applied_at_ms) VALUES (?, ?, ?)";

/// The migrations not yet in `applied`, oldest first.
pub(super) fn pending(applied: &[i32]) -> impl Iterator<Item = &'static Migration> + '_ {
    MIGRATIONS.iter().filter(|m| !applied.contains(&m.version))
}

/// Creates the keyspace (SimpleStrategy, `replication_factor`; an existing
/// keyspace keeps its replication) and brings its tables up to date.
/// Returns whether any migration was applied (the keyspace is new when
/// the first one was).
pub(super) async fn migrate(
    session: &Session,
    ident: &str,
    replication_factor: u32,
) -> Result<bool, StoreError> {
    let ddl = |cql: String| async move {
        // The driver waits for schema agreement after each change; just
        // after connecting, under load, it may not yet have a connection
        // to every host it must ask ("required for schema agreement is not
        // present in connection pool"). The change itself is idempotent
        // (IF NOT EXISTS): done again until agreed, for a while.
        let give_up = tokio::time::Instant::now() + SCHEMA_AGREEMENT_WAIT;
        loop {
            match session.query_unpaged(cql.as_str(), &[]).await {
                Err(ExecutionError::SchemaAgreementError(err))
                    if tokio::time::Instant::now() < give_up =>
                {
                    tracing::info!(error = %err, "store: no schema agreement yet; trying again");
                    tokio::time::sleep(SCHEMA_AGREEMENT_RETRY).await;
                }
                outcome => return outcome.map_err(driver("create or migrate the schema")),
            }
        }
    };
    ddl(create_keyspace(ident, replication_factor)).await?;
    ddl(in_keyspace(CREATE_MIGRATIONS_TABLE, ident)).await?;

    let select = session
        .prepare(in_keyspace(SELECT_VERSIONS, ident))
        .await
        .map_err(driver("prepare"))?;
    let result = session
        .execute_unpaged(&select, ())
        .await
        .map_err(driver("read schema version"))?;
    let applied: Vec<i32> = rows::collect(result, |(version,): (i32,)| Ok(version))?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(newer) = applied.iter().copied().filter(|&v| v > latest).max() {
        tracing::warn!(
            schema_version = newer,
            known = latest,
            "store: the schema is newer than this build"
        );
    }

    let record = session
        .prepare(in_keyspace(RECORD_VERSION, ident))
        .await
        .map_err(driver("prepare"))?;
    let mut migrated = false;
    for migration in pending(&applied) {
        migrated = true;
        for statement in migration.statements {
            ddl(in_keyspace(statement, ident)).await?;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        session
            .execute_unpaged(&record, (migration.version, migration.description, now_ms))
            .await
            .map_err(driver("record schema version"))?;
        tracing::info!(
            version = migration.version,
            description = migration.description,
            "store: schema migrated"
        );
    }
    let give_up = tokio::time::Instant::now() + SCHEMA_AGREEMENT_WAIT;
    while let Err(err) = session.await_schema_agreement().await {
        if tokio::time::Instant::now() >= give_up {
            return Err(driver("wait for schema agreement")(err));
        }
        tracing::info!(error = %err, "store: no schema agreement yet; waiting again");
        tokio::time::sleep(SCHEMA_AGREEMENT_RETRY).await;
    }
    Ok(migrated)
}

/// The table a statement of the migrations creates (or drops) after
/// `verb` (`CREATE TABLE IF NOT EXISTS`, `DROP TABLE IF EXISTS`).
#[cfg(test)]
fn table_after<'a>(cql: &'a str, verb: &str) -> Option<&'a str> {
    let rest = cql.split(&format!("{verb} {{ks}}.")).nth(1)?;
    rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
}

/// The tables the migrations leave, in the order they were created.
#[cfg(test)]
pub(super) fn created_tables() -> Vec<&'static str> {
    let statements = || MIGRATIONS.iter().flat_map(|m| m.statements.iter());
    let dropped: Vec<&str> = statements()
        .filter_map(|s| table_after(s, "DROP TABLE IF EXISTS"))
        .collect();
    statements()
        .filter_map(|s| table_after(s, "CREATE TABLE IF NOT EXISTS"))
        .filter(|table| !dropped.contains(table))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_start_at_one_and_increase_by_one() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i as i32 + 1, "{}", migration.description);
            assert!(!migration.statements.is_empty());
        }
    }

    #[test]
    fn every_statement_is_idempotent_and_in_the_keyspace() {
        for statement in MIGRATIONS
            .iter()
            .flat_map(|m| m.statements.iter())
            .chain(&[CREATE_MIGRATIONS_TABLE])
        {
            assert!(
                statement.contains("IF NOT EXISTS {ks}.")
                    || statement.starts_with("DROP TABLE IF EXISTS {ks}."),
                "{statement}"
            );
            assert!(
                !statement.contains("INDEX"),
                "no secondary indexes: {statement}"
            );
        }
    }

    #[test]
    fn the_design_tables_exist_with_their_keys() {
        let all: String = MIGRATIONS
            .iter()
            .flat_map(|m| m.statements.iter().copied())
            .collect();
        let flat = all.split_whitespace().collect::<Vec<_>>().join(" ");
        for key in [
            "PRIMARY KEY (user_id, profile_id)",
            "PRIMARY KEY (profile_id, user_id)",
            "PRIMARY KEY ((profile_id, bucket), position, id) ) \
             WITH CLUSTERING ORDER BY (position DESC, id DESC)",
            "PRIMARY KEY (profile_id, bucket) ) WITH CLUSTERING ORDER BY (bucket DESC)",
            "id blob,",
            "login_key text PRIMARY KEY,",
            "user_id uuid PRIMARY KEY, login_key text",
        ] {
            assert!(flat.contains(key), "missing {key:?}");
        }
        assert_eq!(
            created_tables(),
            [
                "users",
                "profiles",
                "profiles_by_user",
                "members_by_profile",
                "multi_profile_users",
                "test_data_items",
                "accounts",
                "account_by_user",
                "messages_by_position",
                "position_buckets"
            ]
        );
    }

    #[test]
    fn keyspace_names_are_checked_folded_and_quoted() {
        assert_eq!(keyspace_ident("Rill_Test").expect("valid"), "\"rill_test\"");
        assert_eq!(keyspace_ident("1rill").expect("valid"), "\"1rill\"");
        for bad in [
            "",
            "rill\"; DROP KEYSPACE x",
            "a-b",
            "rill.x",
            &"k".repeat(49),
        ] {
            assert!(
                matches!(keyspace_ident(bad), Err(StoreError::Cassandra(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_keyspace_uses_simple_strategy_with_the_given_factor() {
        let cql = create_keyspace("\"rill\"", 3);
        assert!(
            cql.starts_with("CREATE KEYSPACE IF NOT EXISTS \"rill\" "),
            "{cql}"
        );
        assert!(
            cql.contains("{'class': 'SimpleStrategy', 'replication_factor': 3}"),
            "{cql}"
        );
        assert_eq!(
            in_keyspace(SELECT_VERSIONS, "\"k\""),
            "SELECT version FROM \"k\".schema_migrations"
        );
    }

    #[test]
    fn only_unapplied_migrations_are_pending() {
        assert_eq!(pending(&[]).count(), MIGRATIONS.len());
        let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(pending(&all).count(), 0);
        assert_eq!(
            pending(&[99]).count(),
            MIGRATIONS.len(),
            "an unknown newer version applies nothing of ours"
        );
    }
}
