//! Time buckets of message history, and the walk over them that serves a
//! history read.
//!
//! A profile's messages are split into one partition per UTC day
//! (`messages_by_profile`, keyed by profile and bucket) so that no
//! partition grows with the age of the profile. A bucket is named by the
//! first Unix millisecond of its day rather than by a day number: the walk
//! never computes bucket names, it reads them from `message_buckets`, so a
//! later change of [`BUCKET_MS`] only affects new messages and old buckets
//! stay readable without a migration.
//!
//! Reading the list of a profile's buckets, instead of stepping back one
//! day at a time from today, means quiet profiles cost no empty reads,
//! messages from before the profile's `created_at_ms` or from an edge whose
//! clock runs ahead are still found, and history works for a profile whose
//! row is missing.

use rill_domain::{ChatMessage, MessageId, ProfileId};

use crate::StoreError;

/// The width of a bucket: one UTC day. A busy profile writes one partition
/// a day; a day of even a few messages a second stays well under the
/// ~100 MB a Cassandra partition should not outgrow.
pub(super) const BUCKET_MS: i64 = 24 * 60 * 60 * 1000;

/// How many bucket names one query of `message_buckets` returns.
pub(super) const BUCKETS_PER_QUERY: usize = 16;

/// The walk gives up after this many buckets in a row yielded nothing.
///
/// Every listed bucket holds at least one message, and every bucket older
/// than `before`'s holds only ids below `before`, so a healthy walk finds
/// something in every bucket but the first and visits at most `limit + 1`.
/// Empty buckets mean the listing and the messages disagree (a write that
/// failed between the two, ids that are not UUIDv7): this bound keeps such a
/// read from walking a profile's whole past to return nothing.
pub(super) const MAX_EMPTY_BUCKETS: usize = 32;

/// The bucket holding the Unix millisecond `ms`: the first millisecond of
/// its UTC day.
pub(super) fn bucket_of_ms(ms: i64) -> i64 {
    ms.saturating_sub(ms.rem_euclid(BUCKET_MS))
}

/// The Unix milliseconds of a UUIDv7 id; `None` for other UUID versions,
/// whose bits do not order by time.
pub(super) fn id_ms(id: MessageId) -> Option<i64> {
    if id.as_uuid().get_version_num() != 7 {
        return None;
    }
    id.timestamp_ms().and_then(|ms| i64::try_from(ms).ok())
}

/// The bucket a message is stored in: from its id's time, or from
/// `sent_at_ms` for an id that is not a UUIDv7.
pub(super) fn bucket_of_message(message: &ChatMessage) -> i64 {
    bucket_of_ms(id_ms(message.id).unwrap_or(message.sent_at_ms))
}

/// The exclusive upper bound of the buckets a read `before` an id starts
/// from: just past `before`'s bucket, or past every bucket when there is no
/// `before` (or it carries no time).
pub(super) fn first_bucket_bound(before: Option<MessageId>) -> i64 {
    match before.and_then(id_ms) {
        Some(ms) => bucket_of_ms(ms).saturating_add(1),
        None => i64::MAX,
    }
}

/// Where a history walk reads from.
pub(super) trait HistorySource {
    /// Up to `max` of `profile`'s buckets below `bound`, newest first.
    async fn buckets_below(
        &self,
        profile: ProfileId,
        bound: i64,
        max: usize,
    ) -> Result<Vec<i64>, StoreError>;

    /// Up to `limit` messages of one bucket with ids below `before` (all
    /// when `None`), newest first.
    async fn bucket_messages(
        &self,
        profile: ProfileId,
        bucket: i64,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError>;
}

/// A profile's messages with ids below `before`, newest first, at most
/// `limit`: bucket after bucket, newest bucket first, until `limit` is
/// filled, the buckets run out, or [`MAX_EMPTY_BUCKETS`] in a row were empty.
pub(super) async fn walk_history(
    source: &impl HistorySource,
    profile: ProfileId,
    before: Option<MessageId>,
    limit: usize,
) -> Result<Vec<ChatMessage>, StoreError> {
    let mut found = Vec::new();
    let mut bound = first_bucket_bound(before);
    let mut empty_in_a_row = 0;
    while found.len() < limit {
        let buckets = source
            .buckets_below(profile, bound, BUCKETS_PER_QUERY)
            .await?;
        for &bucket in &buckets {
            // Bucket names only decrease, so the walk can never revisit one.
            bound = bound.min(bucket);
            let batch = source
                .bucket_messages(profile, bucket, before, limit - found.len())
                .await?;
            if batch.is_empty() {
                empty_in_a_row += 1;
                if empty_in_a_row >= MAX_EMPTY_BUCKETS {
                    tracing::warn!(profile_id = %profile, bucket, "history: too many empty buckets, stopping");
                    return Ok(found);
                }
            } else {
                empty_in_a_row = 0;
                found.extend(batch);
            }
            if found.len() >= limit {
                break;
            }
        }
        if buckets.len() < BUCKETS_PER_QUERY {
            break;
        }
    }
    found.truncate(limit);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use rill_domain::{MessageBody, UserId};
    use uuid::{NoContext, Timestamp, Uuid};

    use super::*;

    const DAY: i64 = BUCKET_MS;
    /// 2024-01-01T00:00:00Z.
    const JAN_1: i64 = 1_704_067_200_000;

    fn id_at(ms: i64) -> MessageId {
        let ms = u64::try_from(ms).expect("positive");
        MessageId::from_uuid(Uuid::new_v7(Timestamp::from_unix(
            NoContext,
            ms / 1000,
            (ms % 1000) as u32 * 1_000_000,
        )))
    }

    fn message(profile: ProfileId, ms: i64) -> ChatMessage {
        ChatMessage {
            id: id_at(ms),
            profile_id: profile,
            sender_id: UserId::random(),
            body: MessageBody::parse(format!("at {ms}"), 100).expect("body"),
            sent_at_ms: ms,
            edge_id: "e".into(),
        }
    }

    #[test]
    fn buckets_start_at_utc_midnight() {
        assert_eq!(bucket_of_ms(JAN_1), JAN_1);
        assert_eq!(bucket_of_ms(JAN_1 + DAY - 1), JAN_1);
        assert_eq!(bucket_of_ms(JAN_1 + DAY), JAN_1 + DAY);
        assert_eq!(bucket_of_ms(0), 0);
        assert_eq!(
            bucket_of_ms(-1),
            -DAY,
            "times before 1970 round down, not toward zero"
        );
    }

    #[test]
    fn bucket_math_never_overflows() {
        assert!(
            bucket_of_ms(i64::MAX) < i64::MAX,
            "the no-before bound stays above every bucket"
        );
        assert_eq!(bucket_of_ms(i64::MIN), i64::MIN);
    }

    #[test]
    fn a_message_is_bucketed_by_its_id_time_not_its_sent_time() {
        let mut m = message(ProfileId::random(), JAN_1 + 5);
        m.sent_at_ms = JAN_1 + 3 * DAY;
        assert_eq!(bucket_of_message(&m), JAN_1);
    }

    #[test]
    fn an_id_that_is_not_v7_falls_back_to_the_sent_time() {
        let mut m = message(ProfileId::random(), JAN_1 + 2 * DAY + 7);
        m.id = MessageId::from_uuid(Uuid::new_v4());
        assert_eq!(id_ms(m.id), None);
        assert_eq!(bucket_of_message(&m), JAN_1 + 2 * DAY);
        assert_eq!(
            first_bucket_bound(Some(m.id)),
            i64::MAX,
            "an untimed before bounds nothing"
        );
    }

    #[test]
    fn the_first_bound_includes_befores_own_bucket() {
        assert_eq!(first_bucket_bound(Some(id_at(JAN_1 + 10))), JAN_1 + 1);
        assert_eq!(first_bucket_bound(None), i64::MAX);
    }

    /// Messages by bucket, newest first within each, like the real tables.
    #[derive(Default)]
    struct Fake {
        buckets: BTreeMap<i64, Vec<ChatMessage>>,
        bucket_reads: Cell<usize>,
    }

    impl Fake {
        fn with(messages: &[ChatMessage]) -> Self {
            let mut fake = Self::default();
            for m in messages {
                fake.buckets
                    .entry(bucket_of_message(m))
                    .or_default()
                    .push(m.clone());
            }
            for list in fake.buckets.values_mut() {
                list.sort_by_key(|m| std::cmp::Reverse(m.id));
            }
            fake
        }
    }

    impl HistorySource for Fake {
        async fn buckets_below(
            &self,
            _: ProfileId,
            bound: i64,
            max: usize,
        ) -> Result<Vec<i64>, StoreError> {
            Ok(self
                .buckets
                .range(..bound)
                .rev()
                .take(max)
                .map(|(b, _)| *b)
                .collect())
        }

        async fn bucket_messages(
            &self,
            _: ProfileId,
            bucket: i64,
            before: Option<MessageId>,
            limit: usize,
        ) -> Result<Vec<ChatMessage>, StoreError> {
            self.bucket_reads.set(self.bucket_reads.get() + 1);
            let all = self.buckets.get(&bucket).cloned().unwrap_or_default();
            Ok(all
                .into_iter()
                .filter(|m| before.is_none_or(|b| m.id < b))
                .take(limit)
                .collect())
        }
    }

    fn times(messages: &[ChatMessage]) -> Vec<i64> {
        messages.iter().map(|m| m.sent_at_ms).collect()
    }

    #[tokio::test]
    async fn the_walk_goes_newest_first_across_buckets() {
        let p = ProfileId::random();
        let at = [
            JAN_1 + 1,
            JAN_1 + 2,
            JAN_1 + 2 * DAY,
            JAN_1 + 9 * DAY,
            JAN_1 + 9 * DAY + 5,
        ];
        let fake = Fake::with(&at.map(|ms| message(p, ms)));
        let all = walk_history(&fake, p, None, 100).await.expect("walk");
        assert_eq!(times(&all), at.iter().rev().copied().collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn the_walk_stops_when_the_limit_is_filled() {
        let p = ProfileId::random();
        let fake = Fake::with(
            &(0..10)
                .map(|d| message(p, JAN_1 + d * DAY))
                .collect::<Vec<_>>(),
        );
        let page = walk_history(&fake, p, None, 3).await.expect("walk");
        assert_eq!(
            times(&page),
            vec![JAN_1 + 9 * DAY, JAN_1 + 8 * DAY, JAN_1 + 7 * DAY]
        );
        assert_eq!(fake.bucket_reads.get(), 3, "no bucket read past the limit");
    }

    #[tokio::test]
    async fn before_pages_within_and_across_buckets() {
        let p = ProfileId::random();
        let sent: Vec<ChatMessage> = [JAN_1 + 1, JAN_1 + 2, JAN_1 + DAY + 1, JAN_1 + DAY + 2]
            .iter()
            .map(|&ms| message(p, ms))
            .collect();
        let fake = Fake::with(&sent);
        let page = walk_history(&fake, p, Some(sent[3].id), 2)
            .await
            .expect("walk");
        assert_eq!(times(&page), vec![JAN_1 + DAY + 1, JAN_1 + 2]);
        let rest = walk_history(&fake, p, Some(page[1].id), 10)
            .await
            .expect("walk");
        assert_eq!(times(&rest), vec![JAN_1 + 1]);
    }

    #[tokio::test]
    async fn more_buckets_than_one_listing_query_are_walked() {
        let p = ProfileId::random();
        let days = BUCKETS_PER_QUERY as i64 * 2 + 3;
        let fake = Fake::with(
            &(0..days)
                .map(|d| message(p, JAN_1 + d * DAY))
                .collect::<Vec<_>>(),
        );
        let all = walk_history(&fake, p, None, 1000).await.expect("walk");
        assert_eq!(all.len(), days as usize);
        assert_eq!(all.last().map(|m| m.sent_at_ms), Some(JAN_1));
    }

    #[tokio::test]
    async fn a_run_of_empty_buckets_ends_the_walk() {
        let p = ProfileId::random();
        let mut fake = Fake::with(&[message(p, JAN_1)]);
        for d in 1..=(MAX_EMPTY_BUCKETS as i64 + 5) {
            fake.buckets.insert(JAN_1 + d * DAY, Vec::new());
        }
        let found = walk_history(&fake, p, None, 10).await.expect("walk");
        assert!(
            found.is_empty(),
            "the old message sits behind too many empty buckets"
        );
        assert_eq!(fake.bucket_reads.get(), MAX_EMPTY_BUCKETS);
    }

    #[tokio::test]
    async fn no_buckets_and_a_zero_limit_read_nothing() {
        let p = ProfileId::random();
        let fake = Fake::default();
        assert!(
            walk_history(&fake, p, None, 10)
                .await
                .expect("walk")
                .is_empty()
        );
        let fake = Fake::with(&[message(p, JAN_1)]);
        assert!(
            walk_history(&fake, p, None, 0)
                .await
                .expect("walk")
                .is_empty()
        );
        assert_eq!(fake.bucket_reads.get(), 0);
    }
}
