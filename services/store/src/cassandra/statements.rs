//! Every query the store runs, prepared once at connect.
//!
//! All of them are idempotent (plain inserts and deletes: no counters, no
//! list appends), and marked so, which lets the driver retry or
//! speculatively repeat them after a timeout.
//!
//! The writes to `accounts` are lightweight transactions (conditional:
//! `IF ...`), run with a Paxos round at LOCAL_SERIAL; every write to that
//! table is one, since a plain write's timestamp does not order with a
//! Paxos ballot's. They are idempotent too: each is written to accept
//! finding its own earlier effect (see `accounts`).

use scylla::client::session::Session;
use scylla::statement::SerialConsistency;
use scylla::statement::prepared::PreparedStatement;

use super::errors::driver;
use super::schema::in_keyspace;
use crate::StoreError;

/// Rows per page for the statements read page by page (scans of a
/// partition when deleting, the test-data lists).
pub(super) const PAGE_SIZE: i32 = 1000;

macro_rules! statements {
    ($($name:ident => $cql:literal,)*) => {
        /// The prepared statements, one field per query.
        #[derive(Debug)]
        pub(super) struct Statements {
            $(pub $name: PreparedStatement,)*
        }

        /// The CQL of every statement, by name, with the `{ks}` placeholder.
        #[cfg(test)]
        pub(super) const TEXTS: &[(&str, &str)] = &[$((stringify!($name), $cql),)*];

        impl Statements {
            /// Prepares every statement against the keyspace `ident`.
            pub(super) async fn prepare(session: &Session, ident: &str) -> Result<Self, StoreError> {
                Ok(Self { $($name: prepare(session, ident, $cql).await?,)* })
            }
        }
    };
}

statements! {
    // users
    user_get => "SELECT id, name, created_at_ms, test_data FROM {ks}.users WHERE id = ?",
    user_created_at => "SELECT created_at_ms FROM {ks}.users WHERE id = ?",
    user_insert => "INSERT INTO {ks}.users (id, name, created_at_ms, test_data) VALUES (?, ?, ?, ?)",
    user_delete => "DELETE FROM {ks}.users WHERE id = ?",
    users_first => "SELECT id, name, created_at_ms, test_data FROM {ks}.users LIMIT ?",
    users_after => "SELECT id, name, created_at_ms, test_data FROM {ks}.users WHERE token(id) > token(?) LIMIT ?",
    users_in => "SELECT id, name, created_at_ms, test_data FROM {ks}.users WHERE id IN ?",

    // profiles
    profile_get => "SELECT id, name, created_at_ms, test_data FROM {ks}.profiles WHERE id = ?",
    profile_created_at => "SELECT created_at_ms FROM {ks}.profiles WHERE id = ?",
    profile_insert => "INSERT INTO {ks}.profiles (id, name, created_at_ms, test_data) VALUES (?, ?, ?, ?)",
    profile_delete => "DELETE FROM {ks}.profiles WHERE id = ?",
    profiles_first => "SELECT id, name, created_at_ms, test_data FROM {ks}.profiles LIMIT ?",
    profiles_after =>
        "SELECT id, name, created_at_ms, test_data FROM {ks}.profiles WHERE token(id) > token(?) LIMIT ?",
    profiles_in => "SELECT id, name, created_at_ms, test_data FROM {ks}.profiles WHERE id IN ?",

    // memberships, both directions
    profiles_of_user => "SELECT profile_id FROM {ks}.profiles_by_user WHERE user_id = ? LIMIT ?",
    is_member => "SELECT profile_id FROM {ks}.profiles_by_user WHERE user_id = ? AND profile_id = ?",
    by_user_insert => "INSERT INTO {ks}.profiles_by_user (user_id, profile_id) VALUES (?, ?)",
    by_user_delete => "DELETE FROM {ks}.profiles_by_user WHERE user_id = ? AND profile_id = ?",
    by_user_delete_all => "DELETE FROM {ks}.profiles_by_user WHERE user_id = ?",
    members_first => "SELECT user_id FROM {ks}.members_by_profile WHERE profile_id = ? LIMIT ?",
    members_after => "SELECT user_id FROM {ks}.members_by_profile WHERE profile_id = ? AND user_id > ? LIMIT ?",
    members_insert => "INSERT INTO {ks}.members_by_profile (profile_id, user_id) VALUES (?, ?)",
    members_delete => "DELETE FROM {ks}.members_by_profile WHERE profile_id = ? AND user_id = ?",
    members_delete_all => "DELETE FROM {ks}.members_by_profile WHERE profile_id = ?",

    // suggestions
    multi_insert => "INSERT INTO {ks}.multi_profile_users (user_id) VALUES (?)",
    multi_delete => "DELETE FROM {ks}.multi_profile_users WHERE user_id = ?",
    multi_scan => "SELECT user_id FROM {ks}.multi_profile_users LIMIT ?",

    // test data
    test_data_insert => "INSERT INTO {ks}.test_data_items (kind, id) VALUES (?, ?)",
    test_data_delete => "DELETE FROM {ks}.test_data_items WHERE kind = ? AND id = ?",
    test_data_list => "SELECT id FROM {ks}.test_data_items WHERE kind = ?",

    // history, by position (see `buckets`)
    message_insert => "INSERT INTO {ks}.messages_by_position \
        (profile_id, bucket, position, id, sender_id, body, sent_at_ms, edge_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    messages_below => "SELECT position, id, sender_id, body, sent_at_ms, edge_id FROM {ks}.messages_by_position \
        WHERE profile_id = ? AND bucket = ? AND position < ? LIMIT ?",
    messages_above => "SELECT position, id, sender_id, body, sent_at_ms, edge_id FROM {ks}.messages_by_position \
        WHERE profile_id = ? AND bucket = ? AND position > ? ORDER BY position ASC, id ASC LIMIT ?",
    bucket_messages_delete => "DELETE FROM {ks}.messages_by_position WHERE profile_id = ? AND bucket = ?",
    bucket_insert => "INSERT INTO {ks}.position_buckets (profile_id, bucket) VALUES (?, ?)",
    buckets_below => "SELECT bucket FROM {ks}.position_buckets WHERE profile_id = ? AND bucket < ? LIMIT ?",
    buckets_above => "SELECT bucket FROM {ks}.position_buckets \
        WHERE profile_id = ? AND bucket > ? ORDER BY bucket ASC LIMIT ?",
    buckets_delete_all => "DELETE FROM {ks}.position_buckets WHERE profile_id = ?",

    // accounts: conditional writes only (see above)
    account_insert => "INSERT INTO {ks}.accounts (login_key, login, user_id, password_hash, created_at_ms) \
        VALUES (?, ?, ?, ?, ?) IF NOT EXISTS",
    account_get => "SELECT login, user_id, password_hash, created_at_ms FROM {ks}.accounts WHERE login_key = ?",
    account_set_hash => "UPDATE {ks}.accounts SET password_hash = ? WHERE login_key = ? IF EXISTS",
    account_delete => "DELETE FROM {ks}.accounts WHERE login_key = ? IF user_id = ?",
    account_of_user => "SELECT login_key FROM {ks}.account_by_user WHERE user_id = ?",
    account_of_user_insert => "INSERT INTO {ks}.account_by_user (user_id, login_key) VALUES (?, ?)",
    account_of_user_delete => "DELETE FROM {ks}.account_by_user WHERE user_id = ?",
}

async fn prepare(
    session: &Session,
    ident: &str,
    cql: &str,
) -> Result<PreparedStatement, StoreError> {
    let mut statement = session
        .prepare(in_keyspace(cql, ident))
        .await
        .map_err(driver("prepare a statement"))?;
    statement.set_is_idempotent(true);
    statement.set_page_size(PAGE_SIZE);
    if is_conditional(cql) {
        // The driver's default too; said here so that it does not depend
        // on it.
        statement.set_serial_consistency(Some(SerialConsistency::LocalSerial));
    }
    Ok(statement)
}

/// Whether `cql` is a lightweight transaction.
fn is_conditional(cql: &str) -> bool {
    cql.contains(" IF ")
}

/// A row count or limit as CQL's `int`, saturating.
pub(super) fn cql_limit(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassandra::schema;

    fn table_of(cql: &str) -> &str {
        let rest = cql
            .split("{ks}.")
            .nth(1)
            .expect("every statement names a table in the keyspace");
        rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or_default()
    }

    #[test]
    fn every_statement_uses_a_table_of_the_schema() {
        let tables = schema::created_tables();
        for (name, cql) in TEXTS {
            assert!(tables.contains(&table_of(cql)), "{name}: {cql}");
        }
    }

    #[test]
    fn no_statement_scans_with_filtering_or_touches_another_keyspace() {
        for (name, cql) in TEXTS {
            assert!(!cql.contains("ALLOW FILTERING"), "{name}");
            assert_eq!(
                cql.matches(" FROM ").count()
                    + cql.matches("INTO ").count()
                    + cql.matches("UPDATE ").count(),
                cql.matches("{ks}.").count(),
                "{name}"
            );
        }
    }

    #[test]
    fn reads_of_many_rows_are_limited_or_paged() {
        // Selects that are not point reads carry a LIMIT, except the ones
        // that are read page by page.
        let paged = ["test_data_list", "users_in", "profiles_in"];
        for (name, cql) in TEXTS.iter().filter(|(_, cql)| cql.starts_with("SELECT")) {
            let point = cql.ends_with("WHERE id = ?")
                || ["is_member", "account_get", "account_of_user"].contains(name);
            assert!(
                point || paged.contains(name) || cql.ends_with("LIMIT ?"),
                "{name}: {cql}"
            );
        }
    }

    #[test]
    fn every_write_to_accounts_and_nothing_else_is_conditional() {
        for (name, cql) in TEXTS {
            let account_write = table_of(cql) == "accounts" && !cql.starts_with("SELECT");
            assert_eq!(is_conditional(cql), account_write, "{name}: {cql}");
        }
    }

    #[test]
    fn limits_saturate_at_the_cql_int_range() {
        assert_eq!(cql_limit(10), 10);
        assert_eq!(cql_limit(usize::MAX), i32::MAX);
    }
}
