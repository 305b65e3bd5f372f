//! Message history: appending messages to their day buckets, reading one
//! bucket (for the walk in `buckets`), and dropping a profile's history.
//!
//! Messages of one partition (profile and bucket) are written together in
//! unlogged batches: a single-partition batch is applied as one mutation,
//! and costs one round trip instead of one per message.

use std::collections::BTreeMap;

use rill_domain::{ChatMessage, MessageId, ProfileId};
use scylla::statement::batch::{Batch, BatchType};
use uuid::Uuid;

use super::CassandraStore;
use super::buckets::{HistorySource, bucket_of_message};
use super::errors::driver;
use super::rows::{self, MessageRow};
use super::statements::cql_limit;
use crate::StoreError;

/// The most bytes of messages in one batch. Well under the smallest
/// batch size at which a cluster refuses a batch (Cassandra's default
/// `batch_size_fail_threshold` is 50 KiB), and large enough that a burst
/// of ordinary messages takes few round trips.
const BATCH_BYTES: usize = 32 * 1024;

/// What a message costs in a batch besides its text: ids, bucket,
/// timestamps and framing, rounded up.
const MESSAGE_OVERHEAD_BYTES: usize = 96;

/// The values of `message_insert`.
type MessageValues<'a> = (Uuid, i64, [u8; 16], Uuid, &'a str, i64, &'a str);

fn estimated_bytes(message: &ChatMessage) -> usize {
    MESSAGE_OVERHEAD_BYTES + message.body.as_str().len() + message.edge_id.len()
}

/// Messages grouped by the partition they go to: (profile, bucket).
pub(super) fn by_partition(
    messages: &[ChatMessage],
) -> BTreeMap<(ProfileId, i64), Vec<&ChatMessage>> {
    let mut groups: BTreeMap<(ProfileId, i64), Vec<&ChatMessage>> = BTreeMap::new();
    for message in messages {
        groups
            .entry((message.profile_id, bucket_of_message(message)))
            .or_default()
            .push(message);
    }
    groups
}

/// `messages` cut into runs of at most `budget` estimated bytes; a message
/// larger than the budget goes alone.
pub(super) fn batches<'a, 'm>(
    messages: &'a [&'m ChatMessage],
    budget: usize,
) -> Vec<&'a [&'m ChatMessage]> {
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

fn values(message: &ChatMessage, bucket: i64) -> MessageValues<'_> {
    (
        message.profile_id.as_uuid(),
        bucket,
        message.id.as_uuid().into_bytes(),
        message.sender_id.as_uuid(),
        message.body.as_str(),
        message.sent_at_ms,
        &message.edge_id,
    )
}

impl CassandraStore {
    /// Stores messages; writing one again overwrites it with itself.
    pub(super) async fn append(&self, messages: &[ChatMessage]) -> Result<(), StoreError> {
        let s = &self.statements;
        for ((profile, bucket), group) in by_partition(messages) {
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
    async fn buckets_below(
        &self,
        profile: ProfileId,
        bound: i64,
        max: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let values = (profile.as_uuid(), bound, cql_limit(max));
        let result = self
            .run(
                &self.statements.buckets_below,
                values,
                "read history buckets",
            )
            .await?;
        rows::collect(result, |(bucket,): (i64,)| Ok(bucket))
    }

    async fn bucket_messages(
        &self,
        profile: ProfileId,
        bucket: i64,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let s = &self.statements;
        let (p, limit) = (profile.as_uuid(), cql_limit(limit));
        let result = match before {
            None => {
                self.run(&s.messages_in_bucket, (p, bucket, limit), "read history")
                    .await?
            }
            Some(before) => {
                let values = (p, bucket, before.as_uuid().into_bytes(), limit);
                self.run(&s.messages_in_bucket_before, values, "read history")
                    .await?
            }
        };
        rows::collect(result, |row: MessageRow| rows::message(profile, row))
    }
}

#[cfg(test)]
mod tests {
    use rill_domain::{MessageBody, UserId};

    use super::*;
    use crate::cassandra::buckets::BUCKET_MS;

    /// 2024-01-01T12:00:00Z.
    const NOON: u64 = 1_704_110_400_000;

    fn message_at(profile: ProfileId, ms: u64, body_bytes: usize) -> ChatMessage {
        let ts =
            uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000);
        ChatMessage {
            id: MessageId::from_uuid(Uuid::new_v7(ts)),
            profile_id: profile,
            sender_id: UserId::random(),
            body: MessageBody::parse("x".repeat(body_bytes), usize::MAX).expect("body"),
            sent_at_ms: 0,
            edge_id: "edge".into(),
        }
    }

    fn message(profile: ProfileId, body_bytes: usize) -> ChatMessage {
        message_at(profile, NOON, body_bytes)
    }

    #[test]
    fn messages_are_grouped_by_profile_and_day() {
        let (a, b) = (ProfileId::random(), ProfileId::random());
        let yesterday = NOON - BUCKET_MS as u64;
        let messages = vec![
            message_at(a, NOON, 1),
            message_at(b, NOON + 1, 1),
            message_at(a, yesterday, 1),
            message_at(a, NOON + 2, 1),
        ];
        let groups = by_partition(&messages);
        let sizes: Vec<usize> = groups.values().map(Vec::len).collect();
        assert_eq!(groups.len(), 3, "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 4);
        assert_eq!(
            groups.get(&(a, NOON as i64 - 12 * 3_600_000)).map(Vec::len),
            Some(2)
        );
        assert!(groups.iter().all(|((p, bucket), group)| {
            group
                .iter()
                .all(|m| m.profile_id == *p && bucket_of_message(m) == *bucket)
        }));
    }

    #[test]
    fn batches_stay_within_the_budget_and_keep_every_message_in_order() {
        let p = ProfileId::random();
        let owned: Vec<ChatMessage> = (0..50).map(|i| message(p, 100 + i * 40)).collect();
        let refs: Vec<&ChatMessage> = owned.iter().collect();
        let cut = batches(&refs, 4096);
        assert!(cut.len() > 1);
        for batch in &cut {
            let bytes: usize = batch.iter().map(|m| estimated_bytes(m)).sum();
            assert!(
                bytes <= 4096 || batch.len() == 1,
                "{bytes} bytes in {} messages",
                batch.len()
            );
        }
        let flat: Vec<MessageId> = cut.iter().flat_map(|b| b.iter().map(|m| m.id)).collect();
        assert_eq!(flat, owned.iter().map(|m| m.id).collect::<Vec<_>>());
    }

    #[test]
    fn a_message_over_the_budget_goes_alone() {
        let p = ProfileId::random();
        let owned = [message(p, 10), message(p, 10_000), message(p, 10)];
        let refs: Vec<&ChatMessage> = owned.iter().collect();
        let sizes: Vec<usize> = batches(&refs, 1024).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        assert!(batches(&[], 1024).is_empty());
    }

    #[test]
    fn values_carry_the_id_as_big_endian_bytes() {
        let m = message(ProfileId::random(), 5);
        let v = values(&m, 7);
        assert_eq!(v.0, m.profile_id.as_uuid());
        assert_eq!(v.1, 7);
        assert_eq!(v.2.to_vec(), m.id.to_bytes());
        assert_eq!(
            rows::message_id(&v.2).expect("id"),
            m.id,
            "what is written reads back"
        );
        assert_eq!((v.4, v.5, v.6), ("xxxxx", 0, "edge"));
    }
}
