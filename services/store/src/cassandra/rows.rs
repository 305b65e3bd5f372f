//! Rows as the driver returns them, and their decoding into domain values.
//!
//! Columns that a well-formed row always has are still read as `Option`:
//! a null (a half-written or hand-edited row) then becomes a
//! [`StoreError::Corrupt`] that names the row, not a driver error.

use rill_domain::{
    ChatMessage, MessageBody, MessageId, Name, Profile, ProfileId, Sequenced, User, UserId,
};
use scylla::deserialize::row::DeserializeRow;
use scylla::response::query_result::QueryResult;
use scylla::value::{CqlValue, Row};
use uuid::Uuid;

use super::errors::{corrupt, driver};
use crate::{Account, StoreError};

/// `id, name, created_at_ms, test_data` of `users` or `profiles`.
pub(super) type EntityRow = (Uuid, Option<String>, Option<i64>, Option<bool>);

/// `position, id, sender_id, body, sent_at_ms, edge_id` of
/// `messages_by_position`.
pub(super) type MessageRow = (
    i64,
    Vec<u8>,
    Option<Uuid>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

/// `login, user_id, password_hash, created_at_ms` of `accounts`.
pub(super) type AccountRow = (Option<String>, Option<Uuid>, Option<String>, Option<i64>);

/// Every row of `result`, decoded as `R` and mapped by `map`.
pub(super) fn collect<R, T>(
    result: QueryResult,
    map: impl Fn(R) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError>
where
    R: for<'frame> DeserializeRow<'frame, 'frame>,
{
    let rows = result.into_rows_result().map_err(driver("read rows"))?;
    let typed = rows
        .rows::<R>()
        .map_err(corrupt("row types differ from the schema"))?;
    let mut out = Vec::with_capacity(rows.rows_num());
    for row in typed {
        out.push(map(row.map_err(corrupt("row does not decode"))?)?);
    }
    Ok(out)
}

/// The one row of `result`, if any.
pub(super) fn first<R, T>(
    result: QueryResult,
    map: impl Fn(R) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError>
where
    R: for<'frame> DeserializeRow<'frame, 'frame>,
{
    Ok(collect(result, map)?.into_iter().next())
}

/// What a lightweight transaction (a conditional write) did: whether it
/// was applied and, when it was not, the columns of the row that stopped
/// it (none when there is no row).
#[derive(Default)]
pub(super) struct Outcome {
    pub applied: bool,
    current: Vec<(String, Option<CqlValue>)>,
}

/// The column names only: the row may hold a password hash.
impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let columns: Vec<&str> = self.current.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Outcome")
            .field("applied", &self.applied)
            .field("columns", &columns)
            .finish()
    }
}

impl Outcome {
    /// The current row's `column`, if it is a non-null `uuid`.
    pub fn uuid(&self, column: &str) -> Option<Uuid> {
        self.current
            .iter()
            .find(|(name, _)| name == column)
            .and_then(|(_, value)| value.as_ref()?.as_uuid())
    }
}

/// The outcome of a conditional write: one row, whose `[applied]` column
/// is followed (when not applied) by the columns of the current row. The
/// columns differ with the outcome, so they are found by name.
pub(super) fn outcome(result: QueryResult) -> Result<Outcome, StoreError> {
    let rows = result
        .into_rows_result()
        .map_err(driver("read the outcome of a conditional write"))?;
    let names = rows.column_specs().iter().map(|c| c.name().to_owned());
    let row: Row = rows
        .single_row()
        .map_err(corrupt("the outcome of a conditional write"))?;
    let mut current: Vec<(String, Option<CqlValue>)> = names.zip(row.columns).collect();
    let applied = current
        .iter()
        .position(|(name, _)| name == "[applied]")
        .and_then(|i| current.remove(i).1?.as_boolean())
        .ok_or_else(|| {
            StoreError::Corrupt("a conditional write answered without [applied]".into())
        })?;
    Ok(Outcome { applied, current })
}

fn missing(table: &str, id: impl std::fmt::Display, column: &str) -> StoreError {
    StoreError::Corrupt(format!("{table} row {id}: {column} is null"))
}

fn name(table: &str, id: Uuid, name: Option<String>) -> Result<Name, StoreError> {
    let text = name.ok_or_else(|| missing(table, id, "name"))?;
    Name::parse(&text)
        .map_err(|e| StoreError::Corrupt(format!("{table} row {id}: invalid name: {e}")))
}

pub(super) fn user(row: EntityRow) -> Result<User, StoreError> {
    let (id, name_text, created_at_ms, test_data) = row;
    Ok(User {
        id: UserId::from_uuid(id),
        name: name("users", id, name_text)?,
        created_at_ms: created_at_ms.ok_or_else(|| missing("users", id, "created_at_ms"))?,
        test_data: test_data.ok_or_else(|| missing("users", id, "test_data"))?,
    })
}

pub(super) fn profile(row: EntityRow) -> Result<Profile, StoreError> {
    let (id, name_text, created_at_ms, test_data) = row;
    Ok(Profile {
        id: ProfileId::from_uuid(id),
        name: name("profiles", id, name_text)?,
        created_at_ms: created_at_ms.ok_or_else(|| missing("profiles", id, "created_at_ms"))?,
        test_data: test_data.ok_or_else(|| missing("profiles", id, "test_data"))?,
    })
}

/// The account stored under `key`.
pub(super) fn account(key: &str, row: AccountRow) -> Result<Account, StoreError> {
    let (login, user_id, password_hash, created_at_ms) = row;
    let table = "accounts";
    Ok(Account {
        login: login.ok_or_else(|| missing(table, key, "login"))?,
        user: UserId::from_uuid(user_id.ok_or_else(|| missing(table, key, "user_id"))?),
        password_hash: password_hash.ok_or_else(|| missing(table, key, "password_hash"))?,
        created_at_ms: created_at_ms.ok_or_else(|| missing(table, key, "created_at_ms"))?,
    })
}

const MESSAGES: &str = "messages_by_position";

/// A message id as stored: its 16 bytes, big-endian.
pub(super) fn message_id(bytes: &[u8]) -> Result<MessageId, StoreError> {
    MessageId::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{MESSAGES}: {e}")))
}

/// A message of `profile`'s history, at its position. The body was checked
/// when it was accepted; here only that it is a body at all, whatever its
/// size.
pub(super) fn message(profile: ProfileId, row: MessageRow) -> Result<Sequenced, StoreError> {
    let (position, id, sender_id, body, sent_at_ms, edge_id) = row;
    let id = message_id(&id)?;
    let table = MESSAGES;
    let offset = u64::try_from(position)
        .map_err(|_| StoreError::Corrupt(format!("{table} row {id}: position {position}")))?;
    let body = body.ok_or_else(|| missing(table, id, "body"))?;
    let message = ChatMessage {
        id,
        profile_id: profile,
        sender_id: UserId::from_uuid(sender_id.ok_or_else(|| missing(table, id, "sender_id"))?),
        body: MessageBody::parse(body, usize::MAX)
            .map_err(|e| StoreError::Corrupt(format!("{table} row {id}: invalid body: {e}")))?,
        sent_at_ms: sent_at_ms.ok_or_else(|| missing(table, id, "sent_at_ms"))?,
        edge_id: edge_id.ok_or_else(|| missing(table, id, "edge_id"))?,
    };
    Ok(Sequenced { message, offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity() -> EntityRow {
        (Uuid::new_v4(), Some("  Ada ".into()), Some(42), Some(true))
    }

    fn message_row() -> MessageRow {
        let id = MessageId::now();
        (
            1234,
            id.to_bytes(),
            Some(Uuid::new_v4()),
            Some("hello".into()),
            Some(7),
            Some("edge-1".into()),
        )
    }

    fn is_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, needle: &str) -> bool {
        matches!(&result, Err(StoreError::Corrupt(m)) if m.contains(needle))
    }

    #[test]
    fn a_full_row_decodes_into_a_user_and_a_profile() {
        let row = entity();
        let u = user(row.clone()).expect("user");
        assert_eq!(
            (
                u.id.as_uuid(),
                u.name.as_str(),
                u.created_at_ms,
                u.test_data
            ),
            (row.0, "Ada", 42, true)
        );
        let p = profile(row.clone()).expect("profile");
        assert_eq!(
            (
                p.id.as_uuid(),
                p.name.as_str(),
                p.created_at_ms,
                p.test_data
            ),
            (row.0, "Ada", 42, true)
        );
    }

    #[test]
    fn null_or_invalid_columns_are_corrupt_not_panics() {
        let mut row = entity();
        row.1 = None;
        assert!(is_corrupt(user(row), "name is null"));
        let mut row = entity();
        row.1 = Some("   ".into());
        assert!(is_corrupt(profile(row), "invalid name"));
        let mut row = entity();
        row.2 = None;
        assert!(is_corrupt(user(row), "created_at_ms is null"));
        let mut row = entity();
        row.3 = None;
        assert!(is_corrupt(profile(row), "test_data is null"));
    }

    #[test]
    fn an_account_row_decodes_and_a_null_is_corrupt() {
        let user = Uuid::new_v4();
        let row: AccountRow = (
            Some("Ada".into()),
            Some(user),
            Some("$argon2id$x".into()),
            Some(9),
        );
        let decoded = account("ada", row.clone()).expect("account");
        assert_eq!(
            (
                decoded.login.as_str(),
                decoded.user.as_uuid(),
                decoded.password_hash.as_str(),
                decoded.created_at_ms
            ),
            ("Ada", user, "$argon2id$x", 9)
        );
        let mut bad = row.clone();
        bad.1 = None;
        assert!(is_corrupt(
            account("ada", bad),
            "accounts row ada: user_id is null"
        ));
        let mut bad = row;
        bad.2 = None;
        assert!(is_corrupt(account("ada", bad), "password_hash is null"));
    }

    #[test]
    fn an_outcome_finds_columns_by_name() {
        let user = Uuid::new_v4();
        let outcome = Outcome {
            applied: false,
            current: vec![
                ("login_key".into(), Some(CqlValue::Text("ada".into()))),
                ("user_id".into(), Some(CqlValue::Uuid(user))),
                ("login".into(), None),
            ],
        };
        assert_eq!(outcome.uuid("user_id"), Some(user));
        assert_eq!(outcome.uuid("login_key"), None, "not a uuid");
        assert_eq!(outcome.uuid("login"), None, "null");
        assert_eq!(Outcome::default().uuid("user_id"), None, "no current row");
        let debug = format!("{outcome:?}");
        assert!(
            debug.contains("user_id") && !debug.contains("ada"),
            "{debug}"
        );
    }

    #[test]
    fn a_message_row_decodes_whole() {
        let row = message_row();
        let p = ProfileId::random();
        let s = message(p, row.clone()).expect("message");
        assert_eq!(s.offset, 1234);
        let m = s.message;
        assert_eq!(m.id.to_bytes(), row.1);
        assert_eq!(m.profile_id, p);
        assert_eq!(m.sender_id.as_uuid(), row.2.expect("sender"));
        assert_eq!(
            (m.body.as_str(), m.sent_at_ms, m.edge_id.as_str()),
            ("hello", 7, "edge-1")
        );
    }

    #[test]
    fn a_large_stored_body_is_still_read() {
        let mut row = message_row();
        row.3 = Some("x".repeat(1 << 20));
        assert!(message(ProfileId::random(), row).is_ok());
    }

    #[test]
    fn bad_message_rows_are_corrupt() {
        let mut row = message_row();
        row.0 = -1;
        assert!(is_corrupt(message(ProfileId::random(), row), "position -1"));
        let mut row = message_row();
        row.1 = vec![1, 2, 3];
        assert!(is_corrupt(message(ProfileId::random(), row), "16 bytes"));
        let mut row = message_row();
        row.2 = None;
        assert!(is_corrupt(
            message(ProfileId::random(), row),
            "sender_id is null"
        ));
        let mut row = message_row();
        row.3 = Some("\u{7}".into());
        assert!(is_corrupt(
            message(ProfileId::random(), row),
            "invalid body"
        ));
        let mut row = message_row();
        row.5 = None;
        assert!(is_corrupt(
            message(ProfileId::random(), row),
            "edge_id is null"
        ));
    }
}
