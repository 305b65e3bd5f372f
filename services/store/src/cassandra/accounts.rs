//! Accounts: `accounts` by login key, `account_by_user` by user.
//!
//! Every write to `accounts` is a lightweight transaction (Paxos, at
//! LOCAL_SERIAL). `INSERT ... IF NOT EXISTS` is what makes a name unique
//! across every api process. `UPDATE ... IF EXISTS` keeps a rehash from
//! bringing back a deleted account as a row of only its hash (a plain
//! update is an upsert, and that row would hold the name for ever).
//! `DELETE ... IF user_id = ?` removes only the user's own account. A plain
//! write there would also be unsafe: its timestamp comes from this
//! process's clock and does not order with the ballots' timestamps, so a
//! plain delete could hide a later sign-up of the same name.
//!
//! `account_by_user` is what deleting a user reads to find its account. It
//! is written before the account, not after: then no account exists that
//! its user's deletion cannot find, even when the sign-up fails half-way.
//! A row may instead point at a name its user did not get (the sign-up
//! failed there, or found the name taken and could not remove the row):
//! readers check that the account they find is the user's.

use std::time::Duration;

use rill_domain::UserId;
use rill_runtime::backoff::Backoff;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError, WriteType};
use uuid::Uuid;

use super::CassandraStore;
use super::errors::{chain, driver};
use super::rows::{self, AccountRow, Outcome};
use crate::{Account, StoreError, login_key};

/// Tries of a sign-up's Paxos round when it times out (contention with
/// other sign-ups of the name, or a slow replica), and the pauses between
/// them. The outcome of a timed-out round is unknown; trying again with
/// the same account finds it out, since finding its own row counts as
/// created. Beyond this the caller gets the error (and may retry the same
/// account).
const SIGN_UP_TRIES: usize = 3;
const SIGN_UP_PAUSE: Duration = Duration::from_millis(20);
const SIGN_UP_MAX_PAUSE: Duration = Duration::from_millis(200);

impl CassandraStore {
    pub(super) async fn insert_account(&self, account: &Account) -> Result<bool, StoreError> {
        let key = account.key();
        if key.is_empty() {
            return Err(StoreError::EmptyLogin);
        }
        let s = &self.statements;
        let user = account.user.as_uuid();
        self.run(
            &s.account_of_user_insert,
            (user, &key),
            "record a user's account",
        )
        .await?;
        let values = (
            &key,
            &account.login,
            user,
            &account.password_hash,
            account.created_at_ms,
        );
        let outcome = self.insert_if_not_exists(values).await?;
        // Not applied but held by this user: an earlier try of this very
        // sign-up went through (a retry after a timeout).
        if outcome.applied || outcome.uuid("user_id") == Some(user) {
            return Ok(true);
        }
        tracing::debug!(user_id = %account.user, "store: sign-up of a name already taken");
        self.run(
            &s.account_of_user_delete,
            (user,),
            "forget a user's account",
        )
        .await?;
        Ok(false)
    }

    pub(super) async fn read_account(&self, login: &str) -> Result<Option<Account>, StoreError> {
        let key = login_key(login);
        if key.is_empty() {
            return Ok(None);
        }
        self.account_by_key(&key).await
    }

    pub(super) async fn read_account_of_user(
        &self,
        user: UserId,
    ) -> Result<Option<Account>, StoreError> {
        let Some(key) = self.account_key_of(user.as_uuid()).await? else {
            return Ok(None);
        };
        let account = self.account_by_key(&key).await?;
        Ok(account.filter(|account| account.user == user))
    }

    pub(super) async fn update_password_hash(
        &self,
        login: &str,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let key = login_key(login);
        if key.is_empty() {
            return Ok(());
        }
        // Not applied: there is no such account, and nothing to rehash.
        self.run(
            &self.statements.account_set_hash,
            (password_hash, &key),
            "set password hash",
        )
        .await?;
        Ok(())
    }

    /// Part of deleting a user: its account goes, which frees the name,
    /// then the row that found it. Idempotent.
    pub(super) async fn delete_account_of(&self, user: UserId) -> Result<(), StoreError> {
        let s = &self.statements;
        let id = user.as_uuid();
        if let Some(key) = self.account_key_of(id).await? {
            // Only if the account is the user's: the row may point at a
            // name the user did not get.
            self.run(&s.account_delete, (&key, id), "delete account")
                .await?;
        }
        self.run(
            &s.account_of_user_delete,
            (id,),
            "delete a user's account row",
        )
        .await?;
        Ok(())
    }

    /// `account_insert`, tried again after a Paxos timeout.
    async fn insert_if_not_exists(
        &self,
        values: (&String, &String, Uuid, &String, i64),
    ) -> Result<Outcome, StoreError> {
        let mut backoff = Backoff::new(SIGN_UP_PAUSE, SIGN_UP_MAX_PAUSE);
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .session
                .execute_unpaged(&self.statements.account_insert, values)
                .await
            {
                Ok(result) => return rows::outcome(result),
                Err(error) if tries < SIGN_UP_TRIES && is_paxos_timeout(&error) => {
                    tracing::warn!(
                        error = %chain(&error),
                        tries,
                        "store: a sign-up's Paxos round timed out; trying again"
                    );
                    backoff.wait().await;
                }
                Err(error) => return Err(driver("create account")(error)),
            }
        }
    }

    async fn account_by_key(&self, key: &str) -> Result<Option<Account>, StoreError> {
        let result = self
            .run(&self.statements.account_get, (key,), "read account")
            .await?;
        rows::first(result, |row: AccountRow| rows::account(key, row))
    }

    /// The login key `account_by_user` holds for `user`.
    async fn account_key_of(&self, user: Uuid) -> Result<Option<String>, StoreError> {
        let result = self
            .run(
                &self.statements.account_of_user,
                (user,),
                "read a user's account",
            )
            .await?;
        let key = rows::first(result, |(key,): (Option<String>,)| Ok(key))?;
        Ok(key.flatten())
    }
}

/// A lightweight transaction that timed out: it may or may not have been
/// applied.
fn is_paxos_timeout(error: &ExecutionError) -> bool {
    matches!(
        error,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                write_type: WriteType::Cas,
                ..
            },
            _
        ))
    )
}

#[cfg(test)]
mod tests {
    use scylla::statement::Consistency;

    use super::*;

    fn write_timeout(write_type: WriteType) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                consistency: Consistency::LocalQuorum,
                received: 0,
                required: 1,
                write_type,
            },
            "timed out".into(),
        ))
    }

    #[test]
    fn only_a_paxos_timeout_is_tried_again() {
        assert!(is_paxos_timeout(&write_timeout(WriteType::Cas)));
        assert!(!is_paxos_timeout(&write_timeout(WriteType::Simple)));
        assert!(!is_paxos_timeout(&ExecutionError::EmptyPlan));
    }
}
