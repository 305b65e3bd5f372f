//! Where users, profiles, memberships and message history are kept.
//!
//! [`Store`] is what the services use; two backends implement it:
//! - [`sqlite`]: embedded SQLite (bundled, no system library), the default;
//! - [`cassandra`]: Cassandra/ScyllaDB through the `scylla` driver, the
//!   production store, used when `store.cassandra.contact_points` is set.
//!
//! The persistence consumer writes the directory and history (through
//! [`Store::apply`] and [`Store::append_messages`]); the api and the edges
//! read them. Every such write is idempotent: applying the same events or
//! messages again leaves the store as it was, which makes at-least-once
//! delivery from Kafka safe.
//!
//! [`account`]: the one exception. The api writes accounts (login name,
//! user, password hash) directly, since the hash must not travel on Kafka
//! and a sign-up needs an atomic check that the name is free.
//!
//! One contract test suite (`tests/contract.rs`, `tests/scenarios/`) runs against every backend.

pub mod account;
pub mod cassandra;
pub mod settings;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use rill_domain::{DirectoryEvent, Profile, ProfileId, Sequenced, User, UserId};

pub use account::{Account, login_key};
pub use settings::{CassandraSettings, StoreSettings};

/// A store failure. The message names the backend's own error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("Cassandra: {0}")]
    Cassandra(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("the store's worker thread failed: {0}")]
    Worker(String),
    /// An account's login name is empty once trimmed: it has no
    /// [`login_key`]. The api checks names before; this is its bug.
    #[error("an account's login name must not be empty")]
    EmptyLogin,
    /// A message's offset is past what the backends hold (a signed 64-bit
    /// integer, as Kafka offsets are): not a record of the sequenced topic.
    #[error("position {0} is past the largest a store holds ({max})", max = i64::MAX)]
    PositionOutOfRange(u64),
}

/// A message's offset as the backends store it (a signed 64-bit integer,
/// which every Kafka offset fits).
pub(crate) fn stored_offset(offset: u64) -> Result<i64, StoreError> {
    i64::try_from(offset).map_err(|_| StoreError::PositionOutOfRange(offset))
}

/// A page request: up to `limit` items after the item with id `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest<Id> {
    pub after: Option<Id>,
    pub limit: usize,
}

/// A page of items, and the cursor of the next page if there may be one.
///
/// Items come in the backend's own stable order (SQLite: by id; Cassandra:
/// by partition token); `next` is the id of the last item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, Id> {
    pub items: Vec<T>,
    pub next: Option<Id>,
}

/// Storage of the directory and of message history.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Applies directory events, in order. Idempotent. A membership whose
    /// user or profile does not exist is ignored; deleting a user or a
    /// profile removes its memberships; deleting a user also removes its
    /// account, which frees the login name.
    async fn apply(&self, events: &[DirectoryEvent]) -> Result<(), StoreError>;

    /// Stores chat messages in their profile's history, each at its
    /// position (its offset in the sequenced topic). Idempotent: a message
    /// stored again at the same position (persist replaying a batch after
    /// a crash) changes nothing. A message id is not checked across
    /// positions: the one message at two offsets (a record the sequencer
    /// copied twice) is kept at both. [`StoreError::PositionOutOfRange`]
    /// for an offset past `i64::MAX`, which no Kafka record has.
    async fn append_messages(&self, messages: &[Sequenced]) -> Result<(), StoreError>;

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError>;

    async fn users(&self, page: PageRequest<UserId>) -> Result<Page<User, UserId>, StoreError>;

    async fn profile(&self, id: ProfileId) -> Result<Option<Profile>, StoreError>;

    async fn profiles(
        &self,
        page: PageRequest<ProfileId>,
    ) -> Result<Page<Profile, ProfileId>, StoreError>;

    /// The profiles `user` is bound to, at most `limit`, by profile id.
    async fn profiles_of(&self, user: UserId, limit: usize) -> Result<Vec<Profile>, StoreError>;

    /// The users bound to `profile`.
    async fn members_of(
        &self,
        profile: ProfileId,
        page: PageRequest<UserId>,
    ) -> Result<Page<UserId, UserId>, StoreError>;

    async fn is_member(&self, user: UserId, profile: ProfileId) -> Result<bool, StoreError>;

    /// Users bound to two or more profiles, at most `limit`.
    async fn suggested_users(&self, limit: usize) -> Result<Vec<User>, StoreError>;

    /// A profile's messages, newest first (by position), with positions
    /// strictly below `before` (all when `None`), at most `limit`.
    ///
    /// History is in position order, the profile's one order, not by
    /// message id (the accepting edge's clock). Positions are offsets of
    /// the sequenced topic: when that topic is recreated they start again
    /// from 0, and a store that kept the old messages interleaves the two
    /// orders by offset. Operators recreate the topic only with a fresh
    /// store.
    async fn history(
        &self,
        profile: ProfileId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Sequenced>, StoreError>;

    /// A profile's messages, oldest first (by position), with positions
    /// strictly above `after`, at most `limit`: what a client that missed
    /// messages (a `gap`) reads to catch up. The same order as
    /// [`Store::history`], the other way.
    async fn history_after(
        &self,
        profile: ProfileId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Sequenced>, StoreError>;

    /// The ids of every user and profile marked as test data.
    async fn test_data(&self) -> Result<(Vec<UserId>, Vec<ProfileId>), StoreError>;

    /// Creates `account` if no account has its [`login_key`] yet, atomically
    /// across every caller of every process: of concurrent sign-ups of one
    /// name, exactly one gets `true`. `false`: the name is taken, and the
    /// account that holds it is left as it was.
    ///
    /// A user has at most one account: `account.user` is a user without
    /// one (the api makes a new user id for each sign-up). Creating the same
    /// account again (same key, same user) returns `true`, so a retry after
    /// an error whose write went through does not find its own name taken.
    /// [`StoreError::EmptyLogin`] if the login is only whitespace.
    async fn create_account(&self, account: &Account) -> Result<bool, StoreError>;

    /// The account whose key is [`login_key`]`(login)`.
    async fn account(&self, login: &str) -> Result<Option<Account>, StoreError>;

    /// The account of `user`, if it has one.
    async fn account_of_user(&self, user: UserId) -> Result<Option<Account>, StoreError>;

    /// Replaces the password hash of the account whose key is
    /// [`login_key`]`(login)` (a rehash when the argon2 parameters
    /// change). Does nothing when there is no such account: it never
    /// creates one.
    async fn set_password_hash(&self, login: &str, password_hash: &str) -> Result<(), StoreError>;
}

/// Opens the store the settings name: Cassandra when contact points are
/// set, SQLite otherwise. Creates or migrates the schema.
pub async fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    if settings.cassandra.contact_points.is_empty() {
        let store = sqlite::SqliteStore::open(&settings.sqlite_path).await?;
        tracing::info!(path = %settings.sqlite_path.display(), "store: SQLite");
        Ok(Arc::new(store))
    } else {
        let store = cassandra::CassandraStore::connect(&settings.cassandra).await?;
        tracing::info!(contact_points = ?settings.cassandra.contact_points, "store: Cassandra");
        Ok(Arc::new(store))
    }
}
