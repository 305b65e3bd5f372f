//! Message history: appending messages to their buckets of positions,
//! reading one bucket (for the walk in `buckets`), and dropping a profile's
//! history.
//!
//! Messages of one partition (profile and bucket) are written together in
//! unlogged batches: a single-partition batch is applied as one mutation,
//! and costs one round trip instead of one per message.

use std::collections::BTreeMap;

use rill_domain::{ProfileId, Sequenced};
use scylla::statement::batch::{Batch, BatchType};
use uuid::Uuid;

use super::CassandraStore;
use super::buckets::{Cursor, Direction, HistorySource, bucket_of};
use super::errors::driver;
use super::rows::{self, MessageRow};
use super::statements::cql_limit;
use crate::{StoreError, stored_offset};

/// The most bytes of messages in one batch. Well under the smallest
/// batch size at which a cluster refuses a batch (Cassandra's default
/// `batch_size_fail_threshold` is 50 KiB), and large enough that a burst
/// of ordinary messages takes few round trips.
const BATCH_BYTES: usize = 32 * 1024;

/// What a message costs in a batch besides its text: ids, bucket,
/// position, timestamps and framing, rounded up.
const MESSAGE_OVERHEAD_BYTES: usize = 104;

/// A message as stored: with its position as a CQL `bigint`.
pub(super) struct Stored<'m> {
    position: i64,
    sequenced: &'m Sequenced,
}

/// The values of `message_insert`.
type MessageValues<'a> = (Uuid, i64, i64, [u8; 16], Uuid, &'a str, i64, &'a str);

fn estimated_bytes(stored: &Stored<'_>) -> usize {
    let message = &stored.sequenced.message;
    MESSAGE_OVERHEAD_BYTES + message.body.as_str().len() + message.edge_id.len()
}

/// Messages grouped by the partition they go to: (profile, bucket).
/// [`StoreError::PositionOutOfRange`] for an offset no Kafka record has.
pub(super) fn by_partition(
    messages: &[Sequenced],
) -> Result<BTreeMap<(ProfileId, i64), Vec<Stored<'_>>>, StoreError> {
    let mut groups: BTreeMap<(ProfileId, i64), Vec<Stored<'_>>> = BTreeMap::new();
    for sequenced in messages {
        let position = stored_offset(sequenced.offset)?;
        groups
            .entry((sequenced.message.profile_id, bucket_of(position)))
            .or_default()
            .push(Stored {
                position,
                sequenced,
            });
    }
    Ok(groups)
}

/// `messages` cut into runs of at most `budget` estimated bytes; a message
/// larger than the budget goes alone.
pub(super) fn batches<'a, 'm>(messages: &'a [Stored<'m>], budget: usize) -> Vec<&'a [Stored<'m>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, message) in messages.iter().enumerate() {
        let size = estimated_bytes(message);
        if i > start && bytes + size > budget {
            out.push(&messages[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < messages.len() {
        out.push(&messages[start..]);
    }
    out
}

fn values<'m>(stored: &Stored<'m>, bucket: i64) -> MessageValues<'m> {
    let message = &stored.sequenced.message;
    (
        message.profile_id.as_uuid(),
        bucket,
        stored.position,
        message.id.as_uuid().into_bytes(),
        message.sender_id.as_uuid(),
        message.body.as_str(),
        message.sent_at_ms,
        &message.edge_id,
    )
}

impl CassandraStore {
    /// Stores messages at their positions; writing one again overwrites it
    /// with itself.
    pub(super) async fn append(&self, messages: &[Sequenced]) -> Result<(), StoreError> {
        let s = &self.statements;
        for ((profile, bucket), group) in by_partition(messages)? {
            // List the bucket before writing into it, so that a reader who
            // can see a message can also find its bucket.
            self.run(
                &s.bucket_insert,
                (profile.as_uuid(), bucket),
                "list a history bucket",
            )
            .await?;
            for batch in batches(&group, BATCH_BYTES) {
                if let [message] = batch {
                    self.run(&s.message_insert, values(message, bucket), "append message")
                        .await?;
                    continue;
                }
                let mut statement = Batch::new(BatchType::Unlogged);
                statement.set_is_idempotent(true);
                for _ in batch.iter() {
                    statement.append_statement(s.message_insert.clone());
                }
                let rows: Vec<MessageValues<'_>> =
                    batch.iter().map(|m| values(m, bucket)).collect();
                self.session
                    .batch(&statement, rows)
                    .await
                    .map_err(driver("append messages"))?;
            }
        }
        Ok(())
    }

    /// Drops every bucket of a deleted profile's history.
    pub(super) async fn delete_history(&self, profile: ProfileId) -> Result<(), StoreError> {
        let s = &self.statements;
        let p = profile.as_uuid();
        let buckets = self
            .all_rows(
                &s.buckets_below,
                (p, i64::MAX, i32::MAX),
                "read history buckets",
                |(b,): (i64,)| Ok(b),
            )
            .await?;
        for bucket in buckets {
            self.run(&s.bucket_messages_delete, (p, bucket), "delete history")
                .await?;
        }
        self.run(&s.buckets_delete_all, (p,), "delete history buckets")
            .await?;
        Ok(())
    }
}

impl HistorySource for CassandraStore {
    async fn buckets(
        &self,
        profile: ProfileId,
        direction: Direction,
        bound: i64,
        max: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let s = &self.statements;
        let statement = match direction {
            Direction::Older => &s.buckets_below,
            Direction::Newer => &s.buckets_above,
        };
        let values = (profile.as_uuid(), bound, cql_limit(max));
        let result = self.run(statement, values, "read history buckets").await?;
        rows::collect(result, |(bucket,): (i64,)| Ok(bucket))
    }

    async fn bucket_messages(
        &self,
        profile: ProfileId,
        bucket: i64,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Vec<Sequenced>, StoreError> {
        let s = &self.statements;
        let statement = match cursor.direction {
            Direction::Older => &s.messages_below,
            Direction::Newer => &s.messages_above,
        };
        let values = (profile.as_uuid(), bucket, cursor.position, cql_limit(limit));
        let result = self.run(statement, values, "read history").await?;
        rows::collect(result, |row: MessageRow| rows::message(profile, row))
    }
}

#[cfg(test)]
mod tests {
    use rill_domain::{ChatMessage, MessageBody, MessageId, UserId};

    use super::*;
    use crate::cassandra::buckets::BUCKET_BITS;

    const SPAN: u64 = 1 << BUCKET_BITS;

    fn at(profile: ProfileId, offset: u64, body_bytes: usize) -> Sequenced {
        Sequenced {
            message: ChatMessage {
                id: MessageId::now(),
                profile_id: profile,
                sender_id: UserId::random(),
                body: MessageBody::parse("x".repeat(body_bytes), usize::MAX).expect("body"),
                sent_at_ms: 0,
                edge_id: "edge".into(),
            },
            offset,
        }
    }

    /// The messages of one partition, as `append` hands them to `batches`.
    fn one_partition(messages: &[Sequenced]) -> Vec<Stored<'_>> {
        let mut groups = by_partition(messages).expect("positions fit");
        assert_eq!(groups.len(), 1);
        groups.pop_first().expect("one group").1
    }

    #[test]
    fn messages_are_grouped_by_profile_and_bucket_of_positions() {
        let (a, b) = (ProfileId::random(), ProfileId::random());
        let messages = vec![
            at(a, 5, 1),
            at(b, 6, 1),
            at(a, SPAN + 7, 1),
            at(a, SPAN - 1, 1),
        ];
        let groups = by_partition(&messages).expect("positions fit");
        let sizes: Vec<usize> = groups.values().map(Vec::len).collect();
        assert_eq!(groups.len(), 3, "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 4);
        assert_eq!(groups.get(&(a, 0)).map(Vec::len), Some(2));
        assert_eq!(groups.get(&(a, 1)).map(Vec::len), Some(1));
        assert!(groups.iter().all(|((p, bucket), group)| {
            group
                .iter()
                .all(|m| m.sequenced.message.profile_id == *p && bucket_of(m.position) == *bucket)
        }));
    }

    #[test]
    fn an_offset_past_a_bigint_is_refused() {
        let messages = [at(ProfileId::random(), u64::MAX, 1)];
        assert!(matches!(
            by_partition(&messages),
            Err(StoreError::PositionOutOfRange(u64::MAX))
        ));
    }

    #[test]
    fn batches_stay_within_the_budget_and_keep_every_message_in_order() {
        let p = ProfileId::random();
        let owned: Vec<Sequenced> = (0..50).map(|i| at(p, i, 100 + i as usize * 40)).collect();
        let stored = one_partition(&owned);
        let cut = batches(&stored, 4096);
        assert!(cut.len() > 1);
        for batch in &cut {
            let bytes: usize = batch.iter().map(estimated_bytes).sum();
            assert!(
                bytes <= 4096 || batch.len() == 1,
                "{bytes} bytes in {} messages",
                batch.len()
            );
        }
        let flat: Vec<MessageId> = cut
            .iter()
            .flat_map(|b| b.iter().map(|m| m.sequenced.message.id))
            .collect();
        assert_eq!(flat, owned.iter().map(|m| m.message.id).collect::<Vec<_>>());
    }

    #[test]
    fn a_message_over_the_budget_goes_alone() {
        let p = ProfileId::random();
        let owned = [at(p, 1, 10), at(p, 2, 10_000), at(p, 3, 10)];
        let stored = one_partition(&owned);
        let sizes: Vec<usize> = batches(&stored, 1024).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        assert!(batches(&[], 1024).is_empty());
    }

    #[test]
    fn values_carry_the_position_and_the_id_as_big_endian_bytes() {
        let owned = [at(ProfileId::random(), SPAN + 9, 5)];
        let stored = one_partition(&owned);
        let v = values(&stored[0], 1);
        let m = &owned[0].message;
        assert_eq!(v.0, m.profile_id.as_uuid());
        assert_eq!((v.1, v.2), (1, SPAN as i64 + 9));
        assert_eq!(v.3.to_vec(), m.id.to_bytes());
        assert_eq!(
            rows::message_id(&v.3).expect("id"),
            m.id,
            "what is written reads back"
        );
        assert_eq!((v.5, v.6, v.7), ("xxxxx", 0, "edge"));
    }
}
