//! Accounts on SQLite: one table keyed by login key. The primary key makes
//! a sign-up atomic: `INSERT OR IGNORE` inserts, or changes nothing when
//! another connection (of this process or another) took the key first.

use rill_domain::UserId;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::uuid_col;
use crate::{Account, StoreError, login_key};

/// The accounts table; idempotent. `login` is the name as given,
/// `login_key` its [`login_key`]. Indexed by user, for deleting a user
/// and `Store::account_of_user`.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    login_key TEXT PRIMARY KEY, login TEXT NOT NULL, user_id BLOB NOT NULL,
    password_hash TEXT NOT NULL, created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS accounts_by_user ON accounts (user_id);
";

const COLUMNS: &str = "login, user_id, password_hash, created_at_ms";

fn account_row(row: &Row<'_>) -> Result<Account, StoreError> {
    Ok(Account {
        login: row.get(0)?,
        user: UserId::from_uuid(uuid_col(row, 1)?),
        password_hash: row.get(2)?,
        created_at_ms: row.get(3)?,
    })
}

fn one(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<Account>, StoreError> {
    let mut statement = connection.prepare_cached(sql)?;
    let row = statement
        .query_row(params, |row| Ok(account_row(row)))
        .optional()?;
    row.transpose()
}

pub(super) fn create(connection: &Connection, account: &Account) -> Result<bool, StoreError> {
    let key = account.key();
    if key.is_empty() {
        return Err(StoreError::EmptyLogin);
    }
    let inserted = connection.execute(
        "INSERT OR IGNORE INTO accounts (login_key, login, user_id, password_hash, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            key,
            account.login,
            account.user.to_bytes(),
            account.password_hash,
            account.created_at_ms
        ],
    )?;
    if inserted == 1 {
        return Ok(true);
    }
    // Taken, unless by this very account (a retry of a sign-up that went
    // through).
    let holder = find(connection, &key)?;
    Ok(holder.is_some_and(|held| held.user == account.user))
}

/// The account with `key` (already a login key).
fn find(connection: &Connection, key: &str) -> Result<Option<Account>, StoreError> {
    one(
        connection,
        &format!("SELECT {COLUMNS} FROM accounts WHERE login_key = ?1"),
        [key],
    )
}

pub(super) fn by_login(
    connection: &Connection,
    login: &str,
) -> Result<Option<Account>, StoreError> {
    find(connection, &login_key(login))
}

pub(super) fn by_user(
    connection: &Connection,
    user: UserId,
) -> Result<Option<Account>, StoreError> {
    one(
        connection,
        &format!("SELECT {COLUMNS} FROM accounts WHERE user_id = ?1 LIMIT 1"),
        [user.to_bytes()],
    )
}

pub(super) fn set_password_hash(
    connection: &Connection,
    login: &str,
    password_hash: &str,
) -> Result<(), StoreError> {
    connection.execute(
        "UPDATE accounts SET password_hash = ?2 WHERE login_key = ?1",
        params![login_key(login), password_hash],
    )?;
    Ok(())
}

/// Part of deleting a user: its account goes with it, and frees its name.
pub(super) fn delete_of_user(tx: &Transaction<'_>, user: UserId) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM accounts WHERE user_id = ?1", [user.to_bytes()])?;
    Ok(())
}
