//! The history part of the contract: messages stored at their positions
//! (offsets of the sequenced topic) and read back in position order, newest
//! first below a position and oldest first above one; stored once; each
//! profile's apart.
//!
//! Positions far apart (`k << 16`) put messages in different Cassandra
//! buckets, so the paging scenarios walk many of them, more than one
//! listing query returns.

use rill_domain::{
    ChatMessage, DirectoryChange, MessageBody, MessageId, ProfileId, Sequenced, UserId,
};
use rill_store::Store;

use super::{apply, profile};

/// A message of `profile` at `offset`, with an id of `unix_ms`.
fn message_at(profile: ProfileId, offset: u64, unix_ms: u64, body: &str) -> Sequenced {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        unix_ms / 1000,
        ((unix_ms % 1000) * 1_000_000) as u32,
    );
    Sequenced {
        message: ChatMessage {
            id: MessageId::from_uuid(uuid::Uuid::new_v7(ts)),
            profile_id: profile,
            sender_id: UserId::random(),
            body: MessageBody::parse(body, 200).expect("body"),
            sent_at_ms: unix_ms as i64,
            edge_id: "edge-test".into(),
        },
        offset,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// A message of `profile` at `offset`, its id of now.
fn at(profile: ProfileId, offset: u64, body: &str) -> Sequenced {
    message_at(profile, offset, now_ms(), body)
}

/// `n` messages on `profile` at `offset(i)`, one millisecond apart, in
/// order of `i`; bodies `m{i}`.
fn messages(profile: ProfileId, n: u64, offset: impl Fn(u64) -> u64) -> Vec<Sequenced> {
    let start = now_ms() - 60_000;
    (0..n)
        .map(|i| message_at(profile, offset(i), start + i, &format!("m{i}")))
        .collect()
}

fn bodies(messages: &[Sequenced]) -> Vec<&str> {
    messages.iter().map(|s| s.message.body.as_str()).collect()
}

fn expected(range: impl Iterator<Item = u64>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

/// Every page of `profile`'s history newest first, `limit` at a time, each
/// from the last position of the one before.
async fn pages_before(store: &dyn Store, profile: ProfileId, limit: usize) -> Vec<Vec<Sequenced>> {
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .history(profile, before, limit)
            .await
            .expect("history");
        assert!(page.len() <= limit);
        before = page.last().map(|s| s.offset);
        let last = page.len() < limit;
        pages.push(page);
        if last || pages.len() > 1000 {
            return pages;
        }
    }
}

/// Every page of `profile`'s history oldest first from above `after`.
async fn pages_after(
    store: &dyn Store,
    profile: ProfileId,
    mut after: u64,
    limit: usize,
) -> Vec<Vec<Sequenced>> {
    let mut pages = Vec::new();
    loop {
        let page = store
            .history_after(profile, after, limit)
            .await
            .expect("history after");
        assert!(page.len() <= limit);
        after = page.last().map_or(after, |s| s.offset);
        let last = page.len() < limit;
        pages.push(page);
        if last || pages.len() > 1000 {
            return pages;
        }
    }
}

pub async fn history_is_newest_first_and_pages_with_before(store: &dyn Store) {
    let room = ProfileId::random();
    let other = ProfileId::random();
    let sent = messages(room, 25, |i| 10 + 3 * i);
    store.append_messages(&sent).await.expect("append");
    // The other profile's messages sit between this one's positions.
    let others = messages(other, 3, |i| 11 + 3 * i);
    store.append_messages(&others).await.expect("append");

    let newest = store.history(room, None, 10).await.expect("history");
    assert_eq!(bodies(&newest), expected((15..25).rev()));
    assert_eq!(
        newest[0], sent[24],
        "messages come back whole, at their positions"
    );
    let older = store
        .history(room, newest.last().map(|s| s.offset), 10)
        .await
        .expect("history");
    assert_eq!(bodies(&older), expected((5..15).rev()));
    let oldest = store
        .history(room, older.last().map(|s| s.offset), 10)
        .await
        .expect("history");
    assert_eq!(bodies(&oldest), expected((0..5).rev()));
    assert!(
        store
            .history(room, Some(10), 10)
            .await
            .expect("history")
            .is_empty(),
        "nothing below the first position"
    );
    assert!(
        store
            .history(ProfileId::random(), None, 10)
            .await
            .expect("history")
            .is_empty()
    );
}

pub async fn history_after_is_oldest_first_and_pages_with_after(store: &dyn Store) {
    let room = ProfileId::random();
    let sent = messages(room, 12, |i| 2 * i);
    store.append_messages(&sent).await.expect("append");

    let first = store
        .history_after(room, 3, 4)
        .await
        .expect("history after");
    assert_eq!(
        bodies(&first),
        expected(2..6),
        "strictly above 3: from 4 on"
    );
    assert_eq!(
        first[0], sent[2],
        "messages come back whole, at their positions"
    );
    let next = store
        .history_after(room, first[3].offset, 4)
        .await
        .expect("history after");
    assert_eq!(bodies(&next), expected(6..10));
    let last = store
        .history_after(room, next[3].offset, 4)
        .await
        .expect("history after");
    assert_eq!(bodies(&last), expected(10..12));
    let from_zero = store
        .history_after(room, 0, 100)
        .await
        .expect("history after");
    assert_eq!(
        bodies(&from_zero),
        expected(1..12),
        "0 itself is not above 0"
    );
    assert!(
        store
            .history_after(room, 22, 10)
            .await
            .expect("history after")
            .is_empty(),
        "nothing above the last position"
    );
    assert!(
        store
            .history_after(room, u64::MAX, 10)
            .await
            .expect("history after")
            .is_empty()
    );
    let all = store
        .history(room, Some(u64::MAX), 100)
        .await
        .expect("history");
    assert_eq!(bodies(&all), expected((0..12).rev()), "below u64::MAX: all");
}

/// Positions, not ids, order history: the sequencer may place a message
/// the edges accepted earlier (an older id, an edge with a slow clock)
/// after a newer one.
pub async fn history_follows_positions_not_message_ids(store: &dyn Store) {
    let room = ProfileId::random();
    let now = now_ms();
    let sent = vec![
        message_at(room, 100, now - 1_000, "first"),
        message_at(room, 101, now - 3 * 86_400_000, "older id, later position"),
        message_at(room, 102 << 16, now - 5_000, "far later position"),
        message_at(room, 103 << 16, now - 86_400_000, "latest position"),
    ];
    assert!(sent[1].message.id < sent[0].message.id);
    store.append_messages(&sent).await.expect("append");

    let newest = store.history(room, None, 10).await.expect("history");
    let in_order: Vec<Sequenced> = sent.iter().rev().cloned().collect();
    assert_eq!(newest, in_order, "newest position first");
    let oldest = store
        .history_after(room, 0, 10)
        .await
        .expect("history after");
    assert_eq!(oldest, sent, "oldest position first");
    let below = store
        .history(room, Some(102 << 16), 10)
        .await
        .expect("history");
    assert_eq!(bodies(&below), vec!["older id, later position", "first"]);
    let above = store
        .history_after(room, 100, 2)
        .await
        .expect("history after");
    assert_eq!(
        bodies(&above),
        vec!["older id, later position", "far later position"]
    );
}

/// Many messages in many buckets (two per `1 << 16` offsets, over more
/// buckets than one Cassandra listing query returns), paged both ways with
/// a page size that does not divide them: every message once, in order.
pub async fn paging_both_ways_covers_every_message_once_across_buckets(store: &dyn Store) {
    let room = ProfileId::random();
    let n = 44;
    let sent = messages(room, n, |i| ((i / 2) << 16) + (i % 2) * 7 + 5);
    store.append_messages(&sent).await.expect("append");

    let newest_first: Vec<Sequenced> = sent.iter().rev().cloned().collect();
    for limit in [1, 3, 10, 100] {
        let pages = pages_before(store, room, limit).await;
        let read: Vec<Sequenced> = pages.concat();
        assert_eq!(read, newest_first, "before, {limit} at a time");

        let pages = pages_after(store, room, 0, limit).await;
        let read: Vec<Sequenced> = pages.concat();
        assert_eq!(read, sent, "after, {limit} at a time");
    }
    // From the middle of a bucket, both ways.
    let middle = sent[21].offset;
    let below = store.history(room, Some(middle), 3).await.expect("history");
    assert_eq!(bodies(&below), expected((18..21).rev()));
    let above = store
        .history_after(room, middle, 3)
        .await
        .expect("history after");
    assert_eq!(bodies(&above), expected(22..25));
}

/// Persist replays a batch after a crash: the same messages at the same
/// positions, whole or in part. Nothing changes. A different message at a
/// taken position (a sequenced topic recreated under the store) is kept
/// beside the first.
pub async fn appending_the_same_messages_again_changes_nothing(store: &dyn Store) {
    let room = ProfileId::random();
    let sent = messages(room, 5, |i| (i << 16) + 1);
    store.append_messages(&sent).await.expect("append");
    store.append_messages(&sent).await.expect("append again");
    store
        .append_messages(&sent[1..3])
        .await
        .expect("append a part again");
    let newest_first: Vec<Sequenced> = sent.iter().rev().cloned().collect();
    assert_eq!(
        store.history(room, None, 100).await.expect("history"),
        newest_first
    );
    assert_eq!(
        store
            .history_after(room, 0, 100)
            .await
            .expect("history after"),
        sent
    );

    let same_offset = at(room, sent[2].offset, "after a recreated topic");
    store
        .append_messages(std::slice::from_ref(&same_offset))
        .await
        .expect("append");
    let history = store.history(room, None, 100).await.expect("history");
    assert_eq!(history.len(), 6);
    assert!(history.contains(&same_offset) && history.contains(&sent[2]));
}

pub async fn history_keeps_messages_that_arrive_out_of_order(store: &dyn Store) {
    let room = ProfileId::random();
    let sent = messages(room, 6, |i| (i % 3) << 16 | i);
    let shuffled = [4, 1, 5, 0, 3, 2].map(|i| sent[i].clone());
    for message in shuffled {
        store.append_messages(&[message]).await.expect("append");
    }
    let history = store.history(room, None, 100).await.expect("history");
    let mut by_position = sent.clone();
    by_position.sort_by_key(|s| std::cmp::Reverse(s.offset));
    assert_eq!(history, by_position);
    assert_eq!(bodies(&history), vec!["m5", "m2", "m4", "m1", "m3", "m0"]);
}

/// Profiles that share positions' ranges (one partition of the sequenced
/// topic orders both) each read only their own, both ways; deleting one
/// deletes its history and leaves the other's.
pub async fn profiles_keep_their_histories_apart(store: &dyn Store) {
    let (a, b) = (profile("A"), profile("B"));
    apply(
        store,
        vec![
            DirectoryChange::ProfileUpserted(a.clone()),
            DirectoryChange::ProfileUpserted(b.clone()),
        ],
    )
    .await;
    let of_a = messages(a.id, 10, |i| ((i / 2) << 16) + 2 * i);
    let of_b = messages(b.id, 10, |i| ((i / 2) << 16) + 2 * i + 1);
    store
        .append_messages(&[of_a.clone(), of_b.clone()].concat())
        .await
        .expect("append");

    for (id, own) in [(a.id, &of_a), (b.id, &of_b)] {
        let newest = store.history(id, None, 100).await.expect("history");
        assert_eq!(newest, own.iter().rev().cloned().collect::<Vec<_>>());
        let oldest = store
            .history_after(id, 0, 100)
            .await
            .expect("history after");
        let own_above_0: Vec<Sequenced> = own.iter().filter(|s| s.offset > 0).cloned().collect();
        assert_eq!(oldest, own_above_0);
        let page = store
            .history(id, Some(own[6].offset), 3)
            .await
            .expect("history");
        assert_eq!(page, own[3..6].iter().rev().cloned().collect::<Vec<_>>());
    }

    apply(store, vec![DirectoryChange::ProfileDeleted(a.id)]).await;
    assert!(
        store
            .history(a.id, None, 100)
            .await
            .expect("history")
            .is_empty()
    );
    assert!(
        store
            .history_after(a.id, 0, 100)
            .await
            .expect("history after")
            .is_empty()
    );
    assert_eq!(
        store.history(b.id, None, 100).await.expect("history").len(),
        10
    );
}

/// More messages at once than one write carries (the Cassandra backend
/// cuts a partition's messages into batches of at most 32 KiB).
pub async fn a_burst_larger_than_one_write_is_stored_whole(store: &dyn Store) {
    let room = ProfileId::random();
    let start = now_ms() - 60_000;
    let sent: Vec<Sequenced> = (0..600)
        .map(|i| {
            let body = format!("{i:04} {}", "x".repeat(90));
            message_at(room, 1000 + 2 * i, start + i, &body)
        })
        .collect();
    store.append_messages(&sent).await.expect("append");
    let history = store.history(room, None, 1000).await.expect("history");
    let newest_first: Vec<Sequenced> = sent.into_iter().rev().collect();
    assert!(
        history == newest_first,
        "every message, whole, newest first"
    );
}
