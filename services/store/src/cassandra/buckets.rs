//! Buckets of positions, and the walk over them that serves a history read
//! either way (newest first below a position, oldest first above one).
//!
//! A profile's messages are split into one partition per bucket of
//! positions (`messages_by_position`, keyed by profile and bucket) so that
//! no partition grows with the age of the profile. A position's bucket is
//! its offset shifted right by [`BUCKET_BITS`].
//!
//! The walk reads the list of a profile's buckets (`position_buckets`)
//! instead of stepping from one bucket number to the next: a profile
//! shares its partition of the sequenced topic with many others, so most
//! bucket numbers hold none of its messages, and a quiet profile costs no
//! empty reads.

use rill_domain::{ProfileId, Sequenced};

use crate::StoreError;

/// A bucket spans `1 << BUCKET_BITS` offsets of the sequenced topic's
/// partition (16,384), so it holds at most that many messages of one
/// profile, and only when the profile alone writes to its partition: at the
/// edges' default body limit (4 KiB) under 70 MB, the size a Cassandra
/// partition should stay below (~100 MB); at a few hundred bytes a message,
/// a few MB. Changing it moves new messages to other bucket numbers than
/// the old ones of the same positions: a change needs a new table.
pub(super) const BUCKET_BITS: u32 = 14;

/// How many bucket names one query of `position_buckets` returns.
pub(super) const BUCKETS_PER_QUERY: usize = 16;

/// The walk gives up after this many buckets in a row yielded nothing.
///
/// Every listed bucket holds at least one message, and every bucket past
/// the first lies wholly beyond the bound, so a healthy walk finds
/// something in every bucket but the first. Empty buckets mean the listing
/// and the messages disagree (a write that failed between the two): this
/// bound keeps such a read from walking a profile's whole past to return
/// nothing.
pub(super) const MAX_EMPTY_BUCKETS: usize = 32;

/// The bucket of a stored position.
pub(super) fn bucket_of(position: i64) -> i64 {
    position >> BUCKET_BITS
}

/// Which way a history read goes from its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    /// Positions below the bound, newest first (`Store::history`).
    Older,
    /// Positions above the bound, oldest first (`Store::history_after`).
    Newer,
}

/// Where a read starts: the direction and the stored position it goes
/// from, exclusive. The constructors give `None` when nothing can lie that
/// way (below 0, above the largest storable position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cursor {
    pub direction: Direction,
    pub position: i64,
}

impl Cursor {
    /// Below `before`, or everything when `None`. A `before` past every
    /// storable position bounds nothing; one at 0 has nothing below it.
    pub fn before(before: Option<u64>) -> Option<Self> {
        let position = match before.map(i64::try_from) {
            None | Some(Err(_)) => i64::MAX,
            Some(Ok(0)) => return None,
            Some(Ok(b)) => b,
        };
        Some(Self {
            direction: Direction::Older,
            position,
        })
    }

    /// Above `after`; nothing lies above the largest storable position.
    pub fn after(after: u64) -> Option<Self> {
        let position = i64::try_from(after).ok().filter(|&a| a < i64::MAX)?;
        Some(Self {
            direction: Direction::Newer,
            position,
        })
    }

    /// The exclusive bound of the first bucket listing: one bucket past the
    /// bucket of the nearest position that may be read, so that it is
    /// listed.
    pub fn first_bucket_bound(&self) -> i64 {
        match self.direction {
            // `position` is at least 1 here: the nearest is `position - 1`.
            Direction::Older => bucket_of(self.position - 1) + 1,
            // `position` is below i64::MAX here.
            Direction::Newer => bucket_of(self.position + 1) - 1,
        }
    }
}

/// Where a history walk reads from.
pub(super) trait HistorySource {
    /// Up to `max` of `profile`'s buckets beyond `bound` (exclusive) in
    /// `direction`, nearest first.
    async fn buckets(
        &self,
        profile: ProfileId,
        direction: Direction,
        bound: i64,
        max: usize,
    ) -> Result<Vec<i64>, StoreError>;

    /// Up to `limit` messages of one bucket beyond `cursor`, nearest first.
    async fn bucket_messages(
        &self,
        profile: ProfileId,
        bucket: i64,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Vec<Sequenced>, StoreError>;
}

/// A profile's messages beyond `cursor`, nearest first, at most `limit`:
/// bucket after bucket, nearest bucket first, until `limit` is filled, the
/// buckets run out, or [`MAX_EMPTY_BUCKETS`] in a row were empty.
pub(super) async fn walk_history(
    source: &impl HistorySource,
    profile: ProfileId,
    cursor: Option<Cursor>,
    limit: usize,
) -> Result<Vec<Sequenced>, StoreError> {
    let mut found = Vec::new();
    let Some(cursor) = cursor else {
        return Ok(found);
    };
    let mut bound = cursor.first_bucket_bound();
    let mut empty_in_a_row = 0;
    while found.len() < limit {
        let buckets = source
            .buckets(profile, cursor.direction, bound, BUCKETS_PER_QUERY)
            .await?;
        for &bucket in &buckets {
            // The listing goes one way only, so the walk never revisits a
            // bucket.
            bound = bucket;
            let batch = source
                .bucket_messages(profile, bucket, cursor, limit - found.len())
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

    use rill_domain::{ChatMessage, MessageBody, MessageId, UserId};

    use super::*;

    const SPAN: i64 = 1 << BUCKET_BITS;

    fn at(profile: ProfileId, position: i64) -> Sequenced {
        Sequenced {
            message: ChatMessage {
                id: MessageId::now(),
                profile_id: profile,
                sender_id: UserId::random(),
                body: MessageBody::parse(format!("at {position}"), 100).expect("body"),
                sent_at_ms: 0,
                edge_id: "e".into(),
            },
            offset: u64::try_from(position).expect("positive"),
        }
    }

    /// Messages by bucket, newest first within each, like the real tables.
    #[derive(Default)]
    struct Fake {
        buckets: BTreeMap<i64, Vec<Sequenced>>,
        bucket_reads: Cell<usize>,
    }

    impl Fake {
        fn with(messages: &[Sequenced]) -> Self {
            let mut fake = Self::default();
            for m in messages {
                let bucket = bucket_of(i64::try_from(m.offset).expect("stored"));
                fake.buckets.entry(bucket).or_default().push(m.clone());
            }
            for list in fake.buckets.values_mut() {
                list.sort_by_key(|m| std::cmp::Reverse(m.offset));
            }
            fake
        }
    }

    impl HistorySource for Fake {
        async fn buckets(
            &self,
            _: ProfileId,
            direction: Direction,
            bound: i64,
            max: usize,
        ) -> Result<Vec<i64>, StoreError> {
            let names = self.buckets.keys().copied();
            Ok(match direction {
                Direction::Older => names.filter(|&b| b < bound).rev().take(max).collect(),
                Direction::Newer => names.filter(|&b| b > bound).take(max).collect(),
            })
        }

        async fn bucket_messages(
            &self,
            _: ProfileId,
            bucket: i64,
            cursor: Cursor,
            limit: usize,
        ) -> Result<Vec<Sequenced>, StoreError> {
            self.bucket_reads.set(self.bucket_reads.get() + 1);
            let mut all = self.buckets.get(&bucket).cloned().unwrap_or_default();
            if cursor.direction == Direction::Newer {
                all.reverse();
            }
            let beyond = |m: &Sequenced| {
                let p = i64::try_from(m.offset).expect("stored");
                match cursor.direction {
                    Direction::Older => p < cursor.position,
                    Direction::Newer => p > cursor.position,
                }
            };
            Ok(all.into_iter().filter(beyond).take(limit).collect())
        }
    }

    fn positions(messages: &[Sequenced]) -> Vec<i64> {
        messages.iter().map(|m| m.offset as i64).collect()
    }

    #[test]
    fn buckets_split_positions_by_their_high_bits() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(SPAN - 1), 0);
        assert_eq!(bucket_of(SPAN), 1);
        assert_eq!(bucket_of(i64::MAX), i64::MAX >> BUCKET_BITS);
    }

    #[test]
    fn cursors_start_in_the_bucket_of_the_nearest_position() {
        let before = Cursor::before(Some(SPAN as u64)).expect("below");
        assert_eq!(before.first_bucket_bound(), 1, "bucket 0 is listed");
        let before = Cursor::before(Some(SPAN as u64 + 1)).expect("below");
        assert_eq!(before.first_bucket_bound(), 2, "bucket 1 is listed");
        let all = Cursor::before(None).expect("everything");
        assert_eq!(all.position, i64::MAX);
        assert_eq!(all.first_bucket_bound(), bucket_of(i64::MAX - 1) + 1);
        assert_eq!(Cursor::before(Some(u64::MAX)), Some(all));
        assert_eq!(Cursor::before(Some(0)), None, "nothing below 0");

        let after = Cursor::after(SPAN as u64 - 1).expect("above");
        assert_eq!(after.first_bucket_bound(), 0, "bucket 1 is listed");
        let after = Cursor::after(SPAN as u64 - 2).expect("above");
        assert_eq!(after.first_bucket_bound(), -1, "bucket 0 is listed");
        assert_eq!(Cursor::after(i64::MAX as u64), None);
        assert_eq!(Cursor::after(u64::MAX), None);
    }

    #[tokio::test]
    async fn the_walk_goes_both_ways_across_buckets() {
        let p = ProfileId::random();
        let at_positions = [1, 2, SPAN + 3, 9 * SPAN, 9 * SPAN + 5];
        let fake = Fake::with(&at_positions.map(|o| at(p, o)));
        let newest = walk_history(&fake, p, Cursor::before(None), 100).await;
        let oldest = walk_history(&fake, p, Cursor::after(0), 100).await;
        let mut expected = at_positions.to_vec();
        assert_eq!(positions(&oldest.expect("walk")), expected);
        expected.reverse();
        assert_eq!(positions(&newest.expect("walk")), expected);
    }

    #[tokio::test]
    async fn bounds_page_within_and_across_buckets() {
        let p = ProfileId::random();
        let fake = Fake::with(&[1, 2, SPAN + 1, SPAN + 2].map(|o| at(p, o)));
        let older = walk_history(&fake, p, Cursor::before(Some(SPAN as u64 + 2)), 2).await;
        assert_eq!(positions(&older.expect("walk")), vec![SPAN + 1, 2]);
        let newer = walk_history(&fake, p, Cursor::after(1), 2).await;
        assert_eq!(positions(&newer.expect("walk")), vec![2, SPAN + 1]);
        let none = walk_history(&fake, p, Cursor::after(SPAN as u64 + 2), 2).await;
        assert!(none.expect("walk").is_empty());
    }

    #[tokio::test]
    async fn the_walk_stops_when_the_limit_is_filled() {
        let p = ProfileId::random();
        let fake = Fake::with(&(0..10).map(|b| at(p, b * SPAN)).collect::<Vec<_>>());
        let page = walk_history(&fake, p, Cursor::before(None), 3).await;
        assert_eq!(
            positions(&page.expect("walk")),
            vec![9 * SPAN, 8 * SPAN, 7 * SPAN]
        );
        assert_eq!(fake.bucket_reads.get(), 3, "no bucket read past the limit");
    }

    #[tokio::test]
    async fn more_buckets_than_one_listing_query_are_walked() {
        let p = ProfileId::random();
        let count = BUCKETS_PER_QUERY as i64 * 2 + 3;
        let fake = Fake::with(&(0..count).map(|b| at(p, b * SPAN)).collect::<Vec<_>>());
        let all = walk_history(&fake, p, Cursor::before(None), 1000)
            .await
            .expect("walk");
        assert_eq!(all.len(), count as usize);
        let all = walk_history(&fake, p, Cursor::after(0), 1000)
            .await
            .expect("walk");
        assert_eq!(all.len(), count as usize - 1, "all but position 0");
    }

    #[tokio::test]
    async fn a_run_of_empty_buckets_ends_the_walk() {
        let p = ProfileId::random();
        let mut fake = Fake::with(&[at(p, 0)]);
        for b in 1..=(MAX_EMPTY_BUCKETS as i64 + 5) {
            fake.buckets.insert(b, Vec::new());
        }
        let found = walk_history(&fake, p, Cursor::before(None), 10).await;
        assert!(
            found.expect("walk").is_empty(),
            "the old message sits behind too many empty buckets"
        );
        assert_eq!(fake.bucket_reads.get(), MAX_EMPTY_BUCKETS);
    }

    #[tokio::test]
    async fn no_buckets_a_zero_limit_or_no_cursor_read_nothing() {
        let p = ProfileId::random();
        let walk = walk_history(&Fake::default(), p, Cursor::before(None), 10).await;
        assert!(walk.expect("walk").is_empty());
        let fake = Fake::with(&[at(p, 0)]);
        let walk = walk_history(&fake, p, Cursor::before(None), 0).await;
        assert!(walk.expect("walk").is_empty());
        let walk = walk_history(&fake, p, None, 10).await;
        assert!(walk.expect("walk").is_empty());
        assert_eq!(fake.bucket_reads.get(), 0);
    }
}
