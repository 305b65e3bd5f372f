//! The embedded SQLite backend: the default, and the store of the local
//! stack. Several processes may open the same file (WAL mode: one writer,
//! many readers).
//!
//! rusqlite is synchronous: every call runs on tokio's blocking pool with
//! the one connection of this store.
//!
//! `accounts`: the accounts table and its statements; `messages`: message
//! history, by profile and position.

mod accounts;
mod messages;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rill_domain::{
    DirectoryChange, DirectoryEvent, Name, Profile, ProfileId, Sequenced, User, UserId,
};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use crate::{Account, Page, PageRequest, Store, StoreError};

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema; each statement is idempotent.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id BLOB PRIMARY KEY, name TEXT NOT NULL, created_at_ms INTEGER NOT NULL, test_data INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles (
    id BLOB PRIMARY KEY, name TEXT NOT NULL, created_at_ms INTEGER NOT NULL, test_data INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memberships (
    user_id BLOB NOT NULL, profile_id BLOB NOT NULL, PRIMARY KEY (user_id, profile_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS memberships_by_profile ON memberships (profile_id, user_id);
";

#[derive(Debug, Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and its schema.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let connection = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            // Switching to WAL and creating the schema need the write lock,
            // and SQLite does not wait for it there: processes that start
            // together (the local stack) retry until the others are done.
            let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
            loop {
                match open_connection(&path) {
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == rusqlite::ErrorCode::DatabaseBusy
                            && std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    result => return Ok(result?),
                }
            }
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))??;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut connection)
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.execute_batch(SCHEMA)?;
    connection.execute_batch(accounts::SCHEMA)?;
    connection.execute_batch(messages::SCHEMA)?;
    Ok(connection)
}

fn apply_one(tx: &Transaction<'_>, change: &DirectoryChange) -> rusqlite::Result<()> {
    match change {
        DirectoryChange::UserUpserted(u) => {
            tx.execute(
                "INSERT INTO users (id, name, created_at_ms, test_data) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, test_data = excluded.test_data",
                params![u.id.to_bytes(), u.name.as_str(), u.created_at_ms, u.test_data],
            )?;
        }
        DirectoryChange::UserDeleted(id) => {
            accounts::delete_of_user(tx, *id)?;
            tx.execute(
                "DELETE FROM memberships WHERE user_id = ?1",
                [id.to_bytes()],
            )?;
            tx.execute("DELETE FROM users WHERE id = ?1", [id.to_bytes()])?;
        }
        DirectoryChange::ProfileUpserted(p) => {
            tx.execute(
                "INSERT INTO profiles (id, name, created_at_ms, test_data) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, test_data = excluded.test_data",
                params![p.id.to_bytes(), p.name.as_str(), p.created_at_ms, p.test_data],
            )?;
        }
        DirectoryChange::ProfileDeleted(id) => {
            tx.execute(
                "DELETE FROM memberships WHERE profile_id = ?1",
                [id.to_bytes()],
            )?;
            messages::delete_of_profile(tx, *id)?;
            tx.execute("DELETE FROM profiles WHERE id = ?1", [id.to_bytes()])?;
        }
        DirectoryChange::Bound { user, profile } => {
            // Only when both exist: a bind that arrives after a delete is moot.
            tx.execute(
                "INSERT OR IGNORE INTO memberships (user_id, profile_id)
                 SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1)
                                 AND EXISTS (SELECT 1 FROM profiles WHERE id = ?2)",
                params![user.to_bytes(), profile.to_bytes()],
            )?;
        }
        DirectoryChange::Unbound { user, profile } => {
            tx.execute(
                "DELETE FROM memberships WHERE user_id = ?1 AND profile_id = ?2",
                params![user.to_bytes(), profile.to_bytes()],
            )?;
        }
        // Logins live in Redis; their ends reach only the edges.
        DirectoryChange::LoginsEnded { .. } => {}
    }
    Ok(())
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}

fn uuid_col(row: &Row<'_>, index: usize) -> Result<uuid::Uuid, StoreError> {
    let bytes: Vec<u8> = row.get(index)?;
    uuid::Uuid::from_slice(&bytes).map_err(|e| corrupt("id", e))
}

fn user_row(row: &Row<'_>) -> Result<User, StoreError> {
    let name: String = row.get(1)?;
    Ok(User {
        id: UserId::from_uuid(uuid_col(row, 0)?),
        name: Name::parse(&name).map_err(|e| corrupt("user name", e))?,
        created_at_ms: row.get(2)?,
        test_data: row.get(3)?,
    })
}

fn profile_row(row: &Row<'_>) -> Result<Profile, StoreError> {
    let name: String = row.get(1)?;
    Ok(Profile {
        id: ProfileId::from_uuid(uuid_col(row, 0)?),
        name: Name::parse(&name).map_err(|e| corrupt("profile name", e))?,
        created_at_ms: row.get(2)?,
        test_data: row.get(3)?,
    })
}

/// Runs `sql` with `params` and maps every row with `map`.
fn collect<T>(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = connection.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

fn page<T, Id: Copy>(items: Vec<T>, limit: usize, id: impl Fn(&T) -> Id) -> Page<T, Id> {
    let next = if items.len() == limit {
        items.last().map(id)
    } else {
        None
    };
    Page { items, next }
}

fn after_bytes<Id>(after: Option<Id>, to_bytes: impl Fn(&Id) -> Vec<u8>) -> Vec<u8> {
    after.map(|id| to_bytes(&id)).unwrap_or_default()
}

#[async_trait]
impl Store for SqliteStore {
    async fn apply(&self, events: &[DirectoryEvent]) -> Result<(), StoreError> {
        let changes: Vec<DirectoryChange> = events.iter().map(|e| e.change.clone()).collect();
        self.with(move |connection| {
            let tx = connection.transaction()?;
            for change in &changes {
                apply_one(&tx, change)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn append_messages(&self, messages: &[Sequenced]) -> Result<(), StoreError> {
        let messages = messages.to_vec();
        self.with(move |c| messages::append(c, &messages)).await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.with(move |c| {
            let mut s = c.prepare_cached(
                "SELECT id, name, created_at_ms, test_data FROM users WHERE id = ?1",
            )?;
            let row = s
                .query_row([id.to_bytes()], |row| Ok(user_row(row)))
                .optional()?;
            row.transpose()
        })
        .await
    }

    async fn users(&self, request: PageRequest<UserId>) -> Result<Page<User, UserId>, StoreError> {
        self.with(move |c| {
            let items = collect(
                c,
                "SELECT id, name, created_at_ms, test_data FROM users WHERE id > ?1 ORDER BY id LIMIT ?2",
                params![after_bytes(request.after, UserId::to_bytes), request.limit as i64],
                user_row,
            )?;
            Ok(page(items, request.limit, |u| u.id))
        })
        .await
    }

    async fn profile(&self, id: ProfileId) -> Result<Option<Profile>, StoreError> {
        self.with(move |c| {
            let mut s = c.prepare_cached(
                "SELECT id, name, created_at_ms, test_data FROM profiles WHERE id = ?1",
            )?;
            let row = s
                .query_row([id.to_bytes()], |row| Ok(profile_row(row)))
                .optional()?;
            row.transpose()
        })
        .await
    }

    async fn profiles(
        &self,
        request: PageRequest<ProfileId>,
    ) -> Result<Page<Profile, ProfileId>, StoreError> {
        self.with(move |c| {
            let items = collect(
                c,
                "SELECT id, name, created_at_ms, test_data FROM profiles WHERE id > ?1 ORDER BY id LIMIT ?2",
                params![after_bytes(request.after, ProfileId::to_bytes), request.limit as i64],
                profile_row,
            )?;
            Ok(page(items, request.limit, |p| p.id))
        })
        .await
    }

    async fn profiles_of(&self, user: UserId, limit: usize) -> Result<Vec<Profile>, StoreError> {
        self.with(move |c| {
            collect(
                c,
                "SELECT p.id, p.name, p.created_at_ms, p.test_data FROM memberships m
                 JOIN profiles p ON p.id = m.profile_id WHERE m.user_id = ?1 ORDER BY p.id LIMIT ?2",
                params![user.to_bytes(), limit as i64],
                profile_row,
            )
        })
        .await
    }

    async fn members_of(
        &self,
        profile: ProfileId,
        request: PageRequest<UserId>,
    ) -> Result<Page<UserId, UserId>, StoreError> {
        self.with(move |c| {
            let items = collect(
                c,
                "SELECT user_id FROM memberships WHERE profile_id = ?1 AND user_id > ?2 ORDER BY user_id LIMIT ?3",
                params![profile.to_bytes(), after_bytes(request.after, UserId::to_bytes), request.limit as i64],
                |row| Ok(UserId::from_uuid(uuid_col(row, 0)?)),
            )?;
            Ok(page(items, request.limit, |u| *u))
        })
        .await
    }

    async fn is_member(&self, user: UserId, profile: ProfileId) -> Result<bool, StoreError> {
        self.with(move |c| {
            let mut s = c.prepare_cached(
                "SELECT 1 FROM memberships WHERE user_id = ?1 AND profile_id = ?2",
            )?;
            Ok(s.exists(params![user.to_bytes(), profile.to_bytes()])?)
        })
        .await
    }

    async fn suggested_users(&self, limit: usize) -> Result<Vec<User>, StoreError> {
        self.with(move |c| {
            collect(
                c,
                "SELECT u.id, u.name, u.created_at_ms, u.test_data FROM users u
                 WHERE (SELECT COUNT(*) FROM memberships m WHERE m.user_id = u.id) >= 2
                 ORDER BY u.id LIMIT ?1",
                [limit as i64],
                user_row,
            )
        })
        .await
    }

    async fn history(
        &self,
        profile: ProfileId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Sequenced>, StoreError> {
        self.with(move |c| messages::before(c, profile, before, limit))
            .await
    }

    async fn history_after(
        &self,
        profile: ProfileId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Sequenced>, StoreError> {
        self.with(move |c| messages::after(c, profile, after, limit))
            .await
    }

    async fn test_data(&self) -> Result<(Vec<UserId>, Vec<ProfileId>), StoreError> {
        self.with(move |c| {
            let users = collect(c, "SELECT id FROM users WHERE test_data = 1", [], |row| {
                Ok(UserId::from_uuid(uuid_col(row, 0)?))
            })?;
            let profiles = collect(
                c,
                "SELECT id FROM profiles WHERE test_data = 1",
                [],
                |row| Ok(ProfileId::from_uuid(uuid_col(row, 0)?)),
            )?;
            Ok((users, profiles))
        })
        .await
    }

    async fn create_account(&self, account: &Account) -> Result<bool, StoreError> {
        let account = account.clone();
        self.with(move |c| accounts::create(c, &account)).await
    }

    async fn account(&self, login: &str) -> Result<Option<Account>, StoreError> {
        let login = login.to_owned();
        self.with(move |c| accounts::by_login(c, &login)).await
    }

    async fn account_of_user(&self, user: UserId) -> Result<Option<Account>, StoreError> {
        self.with(move |c| accounts::by_user(c, user)).await
    }

    async fn set_password_hash(&self, login: &str, password_hash: &str) -> Result<(), StoreError> {
        let (login, password_hash) = (login.to_owned(), password_hash.to_owned());
        self.with(move |c| accounts::set_password_hash(c, &login, &password_hash))
            .await
    }
}
