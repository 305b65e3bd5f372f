//! The Cassandra/ScyllaDB backend, through the `scylla` driver: the
//! production store.
//!
//! - `connect`: the driver session, from the settings.
//! - `schema`: the keyspace and tables (and why they look as they do),
//!   created or migrated at connect.
//! - `statements`: every query, prepared once at connect.
//! - `directory`: applying directory events to users, profiles and the
//!   tables derived from them.
//! - `reads`: reading the directory.
//! - `history`: appending messages and reading them back.
//! - `buckets`: the buckets of positions of history and the walk over
//!   them.
//! - `accounts`: accounts, the one table written by lightweight
//!   transactions.
//! - `rows`: decoding rows; `errors`: driver errors as [`StoreError`]s.
//!
//! Cassandra has no transactions across partitions: each event is applied
//! as a sequence of idempotent writes, in an order chosen so that a retry
//! after a failure half-way, or a replay of the same events, ends in the
//! same state.

mod accounts;
mod buckets;
mod connect;
mod directory;
mod errors;
mod history;
mod reads;
mod rows;
mod schema;
mod statements;

pub use connect::session;

use std::fmt;
use std::ops::ControlFlow;

use async_trait::async_trait;
use rill_domain::{DirectoryEvent, Profile, ProfileId, Sequenced, User, UserId};
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::response::PagingState;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;

use self::errors::driver;
use self::statements::Statements;
use crate::{Account, CassandraSettings, Page, PageRequest, Store, StoreError};

/// The store on a Cassandra or ScyllaDB cluster.
pub struct CassandraStore {
    session: Session,
    statements: Statements,
    keyspace: String,
}

impl fmt::Debug for CassandraStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassandraStore")
            .field("keyspace", &self.keyspace)
            .finish_non_exhaustive()
    }
}

impl CassandraStore {
    /// Connects, creates or migrates the schema, and prepares every
    /// statement.
    pub async fn connect(settings: &CassandraSettings) -> Result<Self, StoreError> {
        let ident = schema::keyspace_ident(&settings.keyspace)?;
        let session = connect::session(settings).await?;
        if schema::migrate(&session, &ident, settings.replication_factor).await? {
            // The driver read the schema when it connected, before the
            // keyspace or its new tables existed: without them it cannot
            // route statements to the replicas of their partitions.
            session
                .refresh_metadata()
                .await
                .map_err(driver("read the new schema"))?;
        }
        let statements = Statements::prepare(&session, &ident).await?;
        Ok(Self {
            session,
            statements,
            keyspace: settings.keyspace.clone(),
        })
    }

    /// Runs a statement that returns at most one page of rows.
    async fn run(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
        context: &'static str,
    ) -> Result<QueryResult, StoreError> {
        self.session
            .execute_unpaged(statement, values)
            .await
            .map_err(driver(context))
    }

    /// Every row a statement returns, read page by page.
    async fn all_rows<R, T>(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
        context: &'static str,
        map: impl Fn(R) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError>
    where
        R: for<'frame> DeserializeRow<'frame, 'frame>,
    {
        let mut out = Vec::new();
        let mut paging = PagingState::start();
        loop {
            let (result, response) = self
                .session
                .execute_single_page(statement, &values, paging)
                .await
                .map_err(driver(context))?;
            out.extend(rows::collect(result, &map)?);
            match response.into_paging_control_flow() {
                ControlFlow::Continue(next) => paging = next,
                ControlFlow::Break(()) => return Ok(out),
            }
        }
    }
}

#[async_trait]
impl Store for CassandraStore {
    async fn apply(&self, events: &[DirectoryEvent]) -> Result<(), StoreError> {
        for event in events {
            self.apply_change(&event.change).await?;
        }
        Ok(())
    }

    async fn append_messages(&self, messages: &[Sequenced]) -> Result<(), StoreError> {
        self.append(messages).await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.read_user(id).await
    }

    async fn users(&self, page: PageRequest<UserId>) -> Result<Page<User, UserId>, StoreError> {
        self.read_users(page).await
    }

    async fn profile(&self, id: ProfileId) -> Result<Option<Profile>, StoreError> {
        self.read_profile(id).await
    }

    async fn profiles(
        &self,
        page: PageRequest<ProfileId>,
    ) -> Result<Page<Profile, ProfileId>, StoreError> {
        self.read_profiles(page).await
    }

    async fn profiles_of(&self, user: UserId, limit: usize) -> Result<Vec<Profile>, StoreError> {
        self.read_profiles_of(user, limit).await
    }

    async fn members_of(
        &self,
        profile: ProfileId,
        page: PageRequest<UserId>,
    ) -> Result<Page<UserId, UserId>, StoreError> {
        self.read_members(profile, page).await
    }

    async fn is_member(&self, user: UserId, profile: ProfileId) -> Result<bool, StoreError> {
        self.read_is_member(user, profile).await
    }

    async fn suggested_users(&self, limit: usize) -> Result<Vec<User>, StoreError> {
        self.read_suggested_users(limit).await
    }

    async fn history(
        &self,
        profile: ProfileId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Sequenced>, StoreError> {
        let cursor = buckets::Cursor::before(before);
        buckets::walk_history(self, profile, cursor, limit).await
    }

    async fn history_after(
        &self,
        profile: ProfileId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Sequenced>, StoreError> {
        let cursor = buckets::Cursor::after(after);
        buckets::walk_history(self, profile, cursor, limit).await
    }

    async fn test_data(&self) -> Result<(Vec<UserId>, Vec<ProfileId>), StoreError> {
        self.read_test_data().await
    }

    async fn create_account(&self, account: &Account) -> Result<bool, StoreError> {
        self.insert_account(account).await
    }

    async fn account(&self, login: &str) -> Result<Option<Account>, StoreError> {
        self.read_account(login).await
    }

    async fn account_of_user(&self, user: UserId) -> Result<Option<Account>, StoreError> {
        self.read_account_of_user(user).await
    }

    async fn set_password_hash(&self, login: &str, password_hash: &str) -> Result<(), StoreError> {
        self.update_password_hash(login, password_hash).await
    }
}
