//! What a reconnecting client missed: exactly the messages of its profile
//! after its last seen position, in order, or a `gap`.
//!
//! Every edge reads every partition of the sequenced topic, and keeps a
//! window of its recent records: per partition, every record from
//! `complete_from` on, whatever its profile (a client may land here from
//! an edge that died). So a client's position is either inside a window,
//! and what follows it is known exactly, or it is not, and the client is
//! told of the gap. At start-up the edge reads `recovery.window_secs`
//! back, so a new edge can replay too; sessions open once it has caught
//! up.
//!
//! A position is trusted only if the window holds the record at its
//! offset and that record is the client's message (same profile, same id
//! check): a position from a recreated topic, from another partition (the
//! partition count changed) or made up gets a `gap`, never a wrong replay.
//!
//! Memory: at most `recovery.window_bytes`, shared equally by the
//! partitions, each dropping its oldest records first; records older than
//! `recovery.window_secs` go too.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_domain::{MessageId, Position, ProfileId, ordering_partition};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::events::Outbound;
use crate::settings::Recovery;

/// What a window entry costs beyond its event's JSON: the entry, the
/// event's `Outbound` and its allocation headers (measured sizes, rounded
/// up).
const ENTRY_OVERHEAD: usize = 128;

/// The edge's windows of recent records, one per partition of the
/// sequenced topic.
#[derive(Debug)]
pub struct RecentMessages {
    partitions: Vec<Mutex<Window>>,
    budget: usize,
    max_age: Duration,
    caught_up: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Window {
    entries: VecDeque<Entry>,
    /// Every record of the partition from this offset on is in `entries`
    /// (offsets between entries were transaction markers).
    complete_from: u64,
    /// Bytes of `entries`, counted as [`ENTRY_OVERHEAD`] plus the JSON.
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    offset: u64,
    profile: ProfileId,
    id: MessageId,
    at: Instant,
    event: Arc<Outbound>,
}

impl Entry {
    fn bytes(&self) -> usize {
        ENTRY_OVERHEAD + self.event.json.len()
    }
}

/// Why a client's position cannot be replayed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The position fell out of the window (older than `window_secs` or
    /// pushed out by `window_bytes`).
    TooOld,
    /// The window's record at that offset is not the client's message: a
    /// recreated topic, a changed partition count, or a made-up position.
    UnknownPosition,
    /// More was missed than `max_replay` / `max_replay_bytes`.
    TooMany,
}

impl GapReason {
    /// The `reason` of the `gap` event.
    pub fn code(self) -> &'static str {
        match self {
            Self::TooOld => "too_old",
            Self::UnknownPosition => "unknown_position",
            Self::TooMany => "too_many",
        }
    }
}

/// What a reconnecting client gets, oldest first.
#[derive(Debug, Default)]
pub struct Replay {
    pub events: Vec<Arc<Outbound>>,
    /// Set when the client missed more than `events`: it is told so first.
    pub gap: Option<GapReason>,
    /// The session's live queue may hold records up to this offset again
    /// (they arrived while the replay was read): those are not sent twice.
    pub up_to: Option<u64>,
}

impl RecentMessages {
    pub fn new(settings: &Recovery, partitions: usize) -> Self {
        let partitions = partitions.max(1);
        Self {
            partitions: (0..partitions).map(|_| Mutex::default()).collect(),
            budget: settings.window_bytes / partitions,
            max_age: settings.window_secs,
            caught_up: watch::Sender::new(false),
        }
    }

    fn window(&self, partition: i32) -> Option<std::sync::MutexGuard<'_, Window>> {
        let window = self.partitions.get(usize::try_from(partition).ok()?)?;
        Some(window.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The partition's reading starts at `offset`: the window is complete
    /// from there.
    pub fn start(&self, partition: i32, offset: u64) {
        if let Some(mut window) = self.window(partition) {
            *window = Window {
                complete_from: offset,
                ..Window::default()
            };
        }
    }

    /// The start-up read caught up with every partition: replays may go.
    pub fn set_caught_up(&self) {
        self.caught_up.send_replace(true);
    }

    /// Whether the start-up read has caught up.
    pub fn is_caught_up(&self) -> bool {
        *self.caught_up.borrow()
    }

    /// Keeps the record at `offset` of `partition` (message `id` of
    /// `profile`), dropping what falls out of the window.
    pub fn push(
        &self,
        partition: i32,
        offset: u64,
        profile: ProfileId,
        id: MessageId,
        event: &Arc<Outbound>,
    ) {
        let Some(mut window) = self.window(partition) else {
            return;
        };
        let now = Instant::now();
        let entry = Entry {
            offset,
            profile,
            id,
            at: now,
            event: event.clone(),
        };
        window.bytes += entry.bytes();
        window.entries.push_back(entry);
        while let Some(oldest) = window.entries.front() {
            let too_old = now.duration_since(oldest.at) >= self.max_age;
            if window.bytes <= self.budget && !too_old {
                break;
            }
            let bytes = oldest.bytes();
            window.complete_from = oldest.offset + 1;
            window.bytes -= bytes;
            window.entries.pop_front();
        }
    }

    /// Waits (at most `wait`) until the start-up read has caught up; false
    /// if it has not by then.
    pub async fn wait_caught_up(&self, wait: Duration) -> bool {
        let mut caught_up = self.caught_up.subscribe();
        let ready = tokio::time::timeout(wait, caught_up.wait_for(|ready| *ready)).await;
        matches!(ready, Ok(Ok(_)))
    }

    /// What a client of `profile` whose last seen message is at `position`
    /// missed. Call once [caught up](Self::wait_caught_up).
    pub fn replay(&self, profile: ProfileId, position: Position, limits: &Recovery) -> Replay {
        let partitions = i32::try_from(self.partitions.len()).unwrap_or(i32::MAX);
        let Some(window) = self.window(ordering_partition(profile, partitions)) else {
            return Replay::default();
        };
        window.replay(profile, position, limits, Instant::now(), self.max_age)
    }
}

impl Window {
    fn replay(
        &self,
        profile: ProfileId,
        position: Position,
        limits: &Recovery,
        now: Instant,
        max_age: Duration,
    ) -> Replay {
        let fresh = |e: &&Entry| now.duration_since(e.at) < max_age;
        if position.offset < self.complete_from {
            return self.gap(profile, GapReason::TooOld, limits);
        }
        let at = self.entries.partition_point(|e| e.offset < position.offset);
        let seen = self.entries.get(at).filter(fresh);
        if !seen.is_some_and(|e| {
            e.offset == position.offset && e.profile == profile && position.names(e.id)
        }) {
            return self.gap(profile, GapReason::UnknownPosition, limits);
        }
        let mut replay = Replay {
            up_to: Some(position.offset),
            ..Replay::default()
        };
        let mut bytes = 0;
        for entry in self
            .entries
            .range(at + 1..)
            .filter(|e| e.profile == profile)
        {
            bytes += entry.event.json.len();
            if replay.events.len() == limits.max_replay || bytes > limits.max_replay_bytes {
                return self.gap(profile, GapReason::TooMany, limits);
            }
            replay.events.push(entry.event.clone());
            replay.up_to = Some(entry.offset);
        }
        replay
    }

    /// A `gap`, then the newest `gap_page` messages of `profile`.
    fn gap(&self, profile: ProfileId, reason: GapReason, limits: &Recovery) -> Replay {
        let newest: Vec<&Entry> = self
            .entries
            .iter()
            .rev()
            .filter(|e| e.profile == profile)
            .take(limits.gap_page)
            .collect();
        Replay {
            up_to: newest.first().map(|e| e.offset),
            events: newest.iter().rev().map(|e| e.event.clone()).collect(),
            gap: Some(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ServerEvent;
    use rill_domain::UserId;

    /// A message event of `profile`, as the edge makes it.
    fn message(profile: ProfileId, id: MessageId, offset: u64) -> Arc<Outbound> {
        ServerEvent::Message {
            id,
            position: Position::new(offset, id),
            profile_id: profile,
            sender_id: UserId::random(),
            body: "hi",
            sent_at: 0,
        }
        .to_outbound()
    }

    /// One partition, caught up, with `profile`'s messages at `offsets`
    /// (and another profile's between them); their ids.
    fn window_with(
        settings: &Recovery,
        profile: ProfileId,
        offsets: &[u64],
    ) -> (RecentMessages, Vec<MessageId>) {
        let recent = RecentMessages::new(settings, 1);
        recent.start(0, offsets.first().copied().unwrap_or(0));
        let other = ProfileId::random();
        let mut ids = Vec::new();
        for offset in offsets {
            let id = MessageId::now();
            recent.push(0, *offset, profile, id, &message(profile, id, *offset));
            let noise = MessageId::now();
            recent.push(
                0,
                offset + 1,
                other,
                noise,
                &message(other, noise, offset + 1),
            );
            ids.push(id);
        }
        recent.set_caught_up();
        (recent, ids)
    }

    fn positions(replay: &Replay) -> Vec<u64> {
        replay
            .events
            .iter()
            .map(|e| e.position.expect("a message").offset)
            .collect()
    }

    #[tokio::test]
    async fn a_replay_is_exactly_what_follows_the_position() {
        let settings = Recovery::default();
        let p = ProfileId::random();
        let (recent, ids) = window_with(&settings, p, &[10, 20, 30, 40]);
        let replay = recent.replay(p, Position::new(20, ids[1]), &settings);
        assert_eq!(replay.gap, None);
        assert_eq!(positions(&replay), [30, 40]);
        assert_eq!(replay.up_to, Some(40));
        let last = recent.replay(p, Position::new(40, ids[3]), &settings);
        assert_eq!(last.gap, None);
        assert!(last.events.is_empty());
        assert_eq!(last.up_to, Some(40), "nothing live at or before it again");
    }

    #[tokio::test]
    async fn a_position_that_is_not_the_clients_message_is_a_gap() {
        let settings = Recovery::default();
        let p = ProfileId::random();
        let (recent, ids) = window_with(&settings, p, &[10, 20, 30]);
        for (position, why) in [
            (Position::new(20, MessageId::now()), "another id there"),
            (Position::new(21, ids[1]), "another profile's record"),
            (Position::new(25, ids[1]), "no record there"),
            (Position::new(99, ids[1]), "beyond the end"),
        ] {
            let replay = recent.replay(p, position, &settings);
            assert_eq!(replay.gap, Some(GapReason::UnknownPosition), "{why}");
            assert_eq!(positions(&replay), [10, 20, 30], "{why}: the newest page");
        }
        let other = recent.replay(ProfileId::random(), Position::new(20, ids[1]), &settings);
        assert_eq!(
            other.gap,
            Some(GapReason::UnknownPosition),
            "another profile"
        );
        assert!(other.events.is_empty());
    }

    #[tokio::test]
    async fn a_position_out_of_the_window_is_a_gap_with_the_newest_page() {
        // Room for four entries (all the same size: two-digit offsets).
        let one = ENTRY_OVERHEAD
            + message(ProfileId::random(), MessageId::now(), 10)
                .json
                .len();
        let settings = Recovery {
            window_bytes: 4 * one,
            gap_page: 2,
            ..Recovery::default()
        };
        let p = ProfileId::random();
        let (recent, ids) = window_with(&settings, p, &[10, 20, 30, 40, 50]);
        let replay = recent.replay(p, Position::new(10, ids[0]), &settings);
        assert_eq!(replay.gap, Some(GapReason::TooOld));
        assert_eq!(positions(&replay), [40, 50]);
        assert_eq!(replay.up_to, Some(50));
        let kept = recent.replay(p, Position::new(40, ids[3]), &settings);
        assert_eq!(kept.gap, None, "still in the window");
        assert_eq!(positions(&kept), [50]);
    }

    #[tokio::test]
    async fn too_much_to_replay_is_a_gap() {
        let settings = Recovery {
            max_replay: 2,
            gap_page: 1,
            ..Recovery::default()
        };
        let p = ProfileId::random();
        let (recent, ids) = window_with(&settings, p, &[10, 20, 30, 40]);
        let replay = recent.replay(p, Position::new(10, ids[0]), &settings);
        assert_eq!(replay.gap, Some(GapReason::TooMany));
        assert_eq!(positions(&replay), [40]);
        let two = recent.replay(p, Position::new(20, ids[1]), &settings);
        assert_eq!(two.gap, None);
        assert_eq!(positions(&two), [30, 40]);
    }

    #[tokio::test]
    async fn sessions_wait_for_the_start_up_read() {
        let recent = Arc::new(RecentMessages::new(&Recovery::default(), 2));
        assert!(!recent.wait_caught_up(Duration::ZERO).await);
        let waiting = tokio::spawn({
            let recent = recent.clone();
            async move { recent.wait_caught_up(Duration::from_secs(60)).await }
        });
        recent.set_caught_up();
        assert!(waiting.await.expect("joined"), "woken by the catch-up");
        assert!(recent.is_caught_up());
    }

    #[tokio::test(start_paused = true)]
    async fn old_records_leave_the_window() {
        let settings = Recovery {
            window_secs: Duration::from_secs(60),
            ..Recovery::default()
        };
        let p = ProfileId::random();
        let (recent, ids) = window_with(&settings, p, &[10]);
        tokio::time::advance(Duration::from_secs(61)).await;
        let id = MessageId::now();
        recent.push(0, 100, p, id, &message(p, id, 100));
        let replay = recent.replay(p, Position::new(10, ids[0]), &settings);
        assert_eq!(replay.gap, Some(GapReason::TooOld));
        assert_eq!(positions(&replay), [100]);
    }
}
