//! Message history on SQLite: one table keyed by profile and position.
//!
//! The key (profile, position, id) is the order history is read in, both
//! ways, so a page is one range of the primary key. The id is part of it so
//! that two messages at one offset (a sequenced topic recreated under a
//! store that kept its messages) are both kept, and a message stored again
//! at its position is ignored.

use rill_domain::{ChatMessage, MessageBody, MessageId, ProfileId, Sequenced, UserId};
use rusqlite::{Connection, Row, Transaction, params};

use super::{collect, corrupt, uuid_col};
use crate::{StoreError, stored_offset};

/// The history table; idempotent. `messages`, the table of the builds that
/// ordered history by message id, is dropped: its rows have no position.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sequenced_messages (
    profile_id BLOB NOT NULL, position INTEGER NOT NULL, id BLOB NOT NULL, sender_id BLOB NOT NULL,
    body TEXT NOT NULL, sent_at_ms INTEGER NOT NULL, edge_id TEXT NOT NULL,
    PRIMARY KEY (profile_id, position, id)
) WITHOUT ROWID;
DROP INDEX IF EXISTS messages_by_id;
DROP TABLE IF EXISTS messages;
";

const COLUMNS: &str = "profile_id, position, id, sender_id, body, sent_at_ms, edge_id";

fn sequenced_row(row: &Row<'_>) -> Result<Sequenced, StoreError> {
    let position: i64 = row.get(1)?;
    let body: String = row.get(4)?;
    Ok(Sequenced {
        offset: u64::try_from(position).map_err(|e| corrupt("message position", e))?,
        message: ChatMessage {
            profile_id: ProfileId::from_uuid(uuid_col(row, 0)?),
            id: MessageId::from_uuid(uuid_col(row, 2)?),
            sender_id: UserId::from_uuid(uuid_col(row, 3)?),
            body: MessageBody::parse(body, usize::MAX).map_err(|e| corrupt("message body", e))?,
            sent_at_ms: row.get(5)?,
            edge_id: row.get(6)?,
        },
    })
}

pub(super) fn append(
    connection: &mut Connection,
    messages: &[Sequenced],
) -> Result<(), StoreError> {
    let tx = connection.transaction()?;
    {
        let mut insert = tx.prepare_cached(&format!(
            "INSERT OR IGNORE INTO sequenced_messages ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ))?;
        for s in messages {
            let m = &s.message;
            insert.execute(params![
                m.profile_id.to_bytes(),
                stored_offset(s.offset)?,
                m.id.to_bytes(),
                m.sender_id.to_bytes(),
                m.body.as_str(),
                m.sent_at_ms,
                m.edge_id
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn before(
    connection: &Connection,
    profile: ProfileId,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<Sequenced>, StoreError> {
    let (profile, limit) = (profile.to_bytes(), limit as i64);
    // Every stored position is at most i64::MAX: a larger bound is none.
    match before.and_then(|b| i64::try_from(b).ok()) {
        Some(bound) => collect(
            connection,
            &format!(
                "SELECT {COLUMNS} FROM sequenced_messages WHERE profile_id = ?1 AND position < ?2
                 ORDER BY position DESC, id DESC LIMIT ?3"
            ),
            params![profile, bound, limit],
            sequenced_row,
        ),
        None => collect(
            connection,
            &format!(
                "SELECT {COLUMNS} FROM sequenced_messages WHERE profile_id = ?1
                 ORDER BY position DESC, id DESC LIMIT ?2"
            ),
            params![profile, limit],
            sequenced_row,
        ),
    }
}

pub(super) fn after(
    connection: &Connection,
    profile: ProfileId,
    after: u64,
    limit: usize,
) -> Result<Vec<Sequenced>, StoreError> {
    // Every stored position is at most i64::MAX: nothing is above a larger one.
    let Ok(bound) = i64::try_from(after) else {
        return Ok(Vec::new());
    };
    collect(
        connection,
        &format!(
            "SELECT {COLUMNS} FROM sequenced_messages WHERE profile_id = ?1 AND position > ?2
             ORDER BY position ASC, id ASC LIMIT ?3"
        ),
        params![profile.to_bytes(), bound, limit as i64],
        sequenced_row,
    )
}

/// Deletes a deleted profile's history.
pub(super) fn delete_of_profile(tx: &Transaction<'_>, profile: ProfileId) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM sequenced_messages WHERE profile_id = ?1",
        [profile.to_bytes()],
    )?;
    Ok(())
}
