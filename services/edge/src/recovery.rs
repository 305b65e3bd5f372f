//! What a reconnecting client missed: the messages after its last seen one,
//! from the store's history and from the edge's window of recent messages
//! (those persist may not have written yet), without a gap and without
//! a message twice.
//!
//! The window keeps, for every profile this edge saw a message on, the
//! last `recovery.window_messages` messages of the last
//! `recovery.window_secs`: every edge reads every message, so a client that
//! lands on another edge (its own died) finds them there too.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_domain::{MessageId, ProfileId};
use rill_store::Store;
use tokio::time::Instant;

use crate::events::{Outbound, ServerEvent};
use crate::settings::Recovery;

/// History pages read per round trip to the store.
const HISTORY_PAGE: usize = 500;

/// The edge's window of recent messages, per profile.
#[derive(Debug)]
pub struct RecentMessages {
    per_profile: usize,
    max_age: Duration,
    inner: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    profiles: HashMap<ProfileId, VecDeque<Entry>>,
    next_sweep: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    id: MessageId,
    at: Instant,
    event: Arc<Outbound>,
}

impl RecentMessages {
    pub fn new(settings: &Recovery) -> Self {
        Self {
            per_profile: settings.window_messages,
            max_age: settings.window_secs,
            inner: Mutex::default(),
        }
    }

    /// Remembers message `id` of `profile`. Drops what fell out of the
    /// window; sweeps profiles that went quiet once per window.
    pub fn push(&self, profile: ProfileId, id: MessageId, event: &Arc<Outbound>) {
        let now = Instant::now();
        let mut window = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entries = window.profiles.entry(profile).or_default();
        if entries.len() == self.per_profile {
            entries.pop_front();
        }
        entries.push_back(Entry {
            id,
            at: now,
            event: event.clone(),
        });
        match window.next_sweep {
            Some(at) if at > now => {}
            _ => {
                let max_age = self.max_age;
                window.profiles.retain(|_, entries| {
                    entries.retain(|e| now.duration_since(e.at) < max_age);
                    !entries.is_empty()
                });
                window.next_sweep = Some(now + max_age);
            }
        }
    }

    /// The messages of `profile` in the window with ids from `since` on.
    pub fn since(&self, profile: ProfileId, since: MessageId) -> Vec<(MessageId, Arc<Outbound>)> {
        let now = Instant::now();
        let window = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        window
            .profiles
            .get(&profile)
            .into_iter()
            .flatten()
            .filter(|e| e.id >= since && now.duration_since(e.at) < self.max_age)
            .map(|e| (e.id, e.event.clone()))
            .collect()
    }
}

/// Where replay starts for a client whose last seen message is `last_id`:
/// `slack_ms` before it.
pub fn replay_from(last_id: MessageId, settings: &Recovery) -> MessageId {
    let ms = last_id.timestamp_ms().unwrap_or(0);
    let slack_ms = u64::try_from(settings.slack_ms.as_millis()).unwrap_or(u64::MAX);
    MessageId::first_at(ms.saturating_sub(slack_ms))
}

/// The messages to replay to a reconnecting client, oldest first.
#[derive(Debug, Default)]
pub struct Replay {
    pub events: Vec<Arc<Outbound>>,
    /// Their ids: the same messages arriving live are not sent again.
    pub ids: HashSet<MessageId>,
    /// More was missed than `recovery.max_replay`: the oldest are left out
    /// and the client is told of the gap.
    pub gap: bool,
}

/// Merges the store's history from `since` on with `recent` (the window's
/// messages from `since` on), newest `max_replay` kept.
pub async fn replay(
    store: &dyn Store,
    profile: ProfileId,
    since: MessageId,
    recent: Vec<(MessageId, Arc<Outbound>)>,
    max_replay: usize,
) -> Result<Replay, rill_store::StoreError> {
    let mut by_id: std::collections::BTreeMap<MessageId, Arc<Outbound>> =
        recent.into_iter().collect();
    let mut before = None;
    let mut gap = false;
    'pages: loop {
        let page = store.history(profile, before, HISTORY_PAGE).await?;
        let full = page.len() == HISTORY_PAGE;
        for message in page {
            if message.id < since {
                break 'pages;
            }
            before = Some(message.id);
            by_id
                .entry(message.id)
                .or_insert_with(|| ServerEvent::from_message(&message).to_outbound());
            if by_id.len() > max_replay {
                gap = true;
                break 'pages;
            }
        }
        if !full {
            break;
        }
    }
    while by_id.len() > max_replay {
        by_id.pop_first();
        gap = true;
    }
    Ok(Replay {
        ids: by_id.keys().copied().collect(),
        events: by_id.into_values().collect(),
        gap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_domain::UserId;

    fn message(profile: ProfileId, id: MessageId) -> Arc<Outbound> {
        ServerEvent::Message {
            id,
            profile_id: profile,
            sender_id: UserId::random(),
            body: "hi",
            sent_at: 0,
        }
        .to_outbound()
    }

    fn settings(window_messages: usize) -> Recovery {
        Recovery {
            window_messages,
            ..Recovery::default()
        }
    }

    #[tokio::test]
    async fn the_window_keeps_the_newest_per_profile() {
        let recent = RecentMessages::new(&settings(2));
        let (p, q) = (ProfileId::random(), ProfileId::random());
        let ids: Vec<MessageId> = (0..3).map(|_| MessageId::now()).collect();
        for id in &ids {
            recent.push(p, *id, &message(p, *id));
        }
        let kept: Vec<MessageId> = recent
            .since(p, ids[0])
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(kept, ids[1..]);
        assert!(recent.since(q, ids[0]).is_empty());
        let after: Vec<MessageId> = recent
            .since(p, ids[2])
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(after, ids[2..], "since is inclusive");
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_forgets_old_messages() {
        let recent = RecentMessages::new(&settings(10));
        let p = ProfileId::random();
        let old = MessageId::first_at(1);
        recent.push(p, old, &message(p, old));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(recent.since(p, old).is_empty());
    }

    #[test]
    fn replay_starts_slack_before_the_last_seen_id() {
        let last = MessageId::first_at(10_000);
        let from = replay_from(last, &Recovery::default());
        assert_eq!(from.timestamp_ms(), Some(8_000));
        assert_eq!(
            replay_from(MessageId::first_at(5), &Recovery::default()).timestamp_ms(),
            Some(0)
        );
    }
}
