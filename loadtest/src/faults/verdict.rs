//! Each client's view against everything acknowledged: what it lost
//! (after a `gap`, which told it so, or silently), got twice or out of
//! order, and whom it lists as live that is not (a ghost) or misses.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;
use uuid::Uuid;

use crate::faults::log::{ClientLog, Outcome, QuitHow, SendLog};

/// A message sent this soon after a client's first session opened may
/// have been routed before the session joined: not expected of it.
pub const JOIN_GRACE_MS: u64 = 1_000;

/// A client that quits is not expected to get what was sent, or first
/// delivered to anyone, this soon before (a message held back by a fault,
/// e.g. the broker away, may reach everyone after a quitter left).
pub const QUIT_GRACE_MS: u64 = 2_000;

/// A user listed as live this long after its session ended is a ghost.
pub const GHOST_AFTER_MS: u64 = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct ClientVerdict {
    pub index: usize,
    pub user: Uuid,
    pub profile: Uuid,
    pub transport: &'static str,
    pub sessions: usize,
    pub resumed_sessions: usize,
    pub connect_failures: usize,
    pub connected_at_end: bool,
    pub quit: Option<QuitHow>,
    /// Acknowledged messages of its profile it should have received.
    pub expected: usize,
    pub received: usize,
    /// Expected, not received, and the client had a `gap` (it was told).
    pub lost_after_gap: usize,
    /// Expected, not received, and no `gap`.
    pub lost_silently: usize,
    pub duplicated: usize,
    /// Deliveries whose position is below the one before.
    pub out_of_order: usize,
    pub gaps: BTreeMap<String, u64>,
    /// Listed as live at the end, though their session ended more than
    /// [`GHOST_AFTER_MS`] before.
    pub ghosts: Vec<Uuid>,
    /// Live at the end, and not listed.
    pub missing_presence: Vec<Uuid>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub clients: usize,
    pub sends: usize,
    pub acked: usize,
    pub refused: BTreeMap<String, u64>,
    pub unknown: BTreeMap<String, u64>,
    pub expected: usize,
    pub received: usize,
    pub lost_after_gap: usize,
    pub lost_silently: usize,
    pub duplicated: usize,
    pub out_of_order: usize,
    pub ghosts: usize,
    pub missing_presence: usize,
    /// Refused or unanswered sends some client received anyway.
    pub delivered_unacked: usize,
    /// Acknowledged sends no client at all received.
    pub acked_never_delivered: usize,
}

/// Judges every client at `end_ms` (after the settle time).
pub fn judge(
    clients: &[ClientLog],
    sends: &[SendLog],
    end_ms: u64,
) -> (Vec<ClientVerdict>, Totals) {
    let mut acked_by_profile: HashMap<Uuid, Vec<&SendLog>> = HashMap::new();
    for send in sends {
        if matches!(send.outcome, Outcome::Acked(_)) {
            acked_by_profile.entry(send.profile).or_default().push(send);
        }
    }
    // Who is live at the end, and who left long enough ago.
    // By (user, profile): presence is a profile's, and one user may be
    // live on one profile and gone from another.
    let live: HashSet<(Uuid, Uuid)> = clients
        .iter()
        .filter(|c| c.connected())
        .map(|c| (c.user, c.profile))
        .collect();
    let gone: HashSet<(Uuid, Uuid)> = clients
        .iter()
        .filter(|c| !c.connected())
        .filter(|c| c.last_closed().is_none_or(|t| t + GHOST_AFTER_MS <= end_ms))
        .map(|c| (c.user, c.profile))
        .collect();
    // When each message first reached any client.
    let mut first_delivered: HashMap<u64, u64> = HashMap::new();
    for delivery in clients.iter().flat_map(|c| &c.deliveries) {
        first_delivered
            .entry(delivery.key)
            .and_modify(|at| *at = (*at).min(delivery.at_ms))
            .or_insert(delivery.at_ms);
    }
    let mut verdicts = Vec::with_capacity(clients.len());
    let mut delivered_keys: HashSet<u64> = HashSet::new();
    for client in clients {
        let keys: Vec<u64> = client.deliveries.iter().map(|d| d.key).collect();
        delivered_keys.extend(&keys);
        let received: HashSet<u64> = keys.iter().copied().collect();
        let from = client
            .first_opened()
            .map_or(u64::MAX, |t| t + JOIN_GRACE_MS);
        let until = client
            .quit
            .map_or(u64::MAX, |(t, _)| t.saturating_sub(QUIT_GRACE_MS));
        let expected: Vec<u64> = acked_by_profile
            .get(&client.profile)
            .into_iter()
            .flatten()
            .filter(|s| s.sent_ms > from && s.sent_ms < until)
            .filter(|s| {
                // A quitter: only what reached someone before it quit.
                client.quit.is_none() || first_delivered.get(&s.key).is_some_and(|at| *at < until)
            })
            .map(|s| s.key)
            .collect();
        let lost = expected.iter().filter(|k| !received.contains(k)).count();
        let (lost_after_gap, lost_silently) = if client.gaps.is_empty() {
            (0, lost)
        } else {
            (lost, 0)
        };
        let out_of_order = client
            .deliveries
            .windows(2)
            .filter(|w| w[1].offset < w[0].offset)
            .count();
        let view_of_others = || client.presence.iter().filter(|u| **u != client.user);
        let (ghosts, missing_presence) = if client.connected() {
            (
                view_of_others()
                    .filter(|u| gone.contains(&(**u, client.profile)))
                    .copied()
                    .collect(),
                live.iter()
                    .filter(|(u, profile)| *profile == client.profile && *u != client.user)
                    .filter(|(u, _)| !client.presence.contains(u))
                    .map(|(u, _)| *u)
                    .collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        verdicts.push(ClientVerdict {
            index: client.index,
            user: client.user,
            profile: client.profile,
            transport: client.transport,
            sessions: client.sessions.len(),
            resumed_sessions: client.sessions.iter().filter(|s| s.resumed).count(),
            connect_failures: client.connect_failures.len(),
            connected_at_end: client.connected(),
            quit: client.quit.map(|(_, how)| how),
            expected: expected.len(),
            received: received.len(),
            lost_after_gap,
            lost_silently,
            duplicated: keys.len() - received.len(),
            out_of_order,
            gaps: crate::faults::log::tally(client.gaps.iter().map(|(_, r)| r.as_str())),
            ghosts,
            missing_presence,
        });
    }
    let mut totals = Totals {
        clients: clients.len(),
        sends: sends.len(),
        ..Totals::default()
    };
    for send in sends {
        match &send.outcome {
            Outcome::Acked(_) => {
                totals.acked += 1;
                if !delivered_keys.contains(&send.key) {
                    totals.acked_never_delivered += 1;
                }
            }
            Outcome::Refused(code) | Outcome::Unknown(code) => {
                let counts = match &send.outcome {
                    Outcome::Refused(_) => &mut totals.refused,
                    _ => &mut totals.unknown,
                };
                *counts.entry(code.clone()).or_default() += 1;
                if delivered_keys.contains(&send.key) {
                    totals.delivered_unacked += 1;
                }
            }
            Outcome::Pending => {
                *totals.unknown.entry("pending".into()).or_default() += 1;
            }
        }
    }
    for v in &verdicts {
        totals.expected += v.expected;
        totals.received += v.received;
        totals.lost_after_gap += v.lost_after_gap;
        totals.lost_silently += v.lost_silently;
        totals.duplicated += v.duplicated;
        totals.out_of_order += v.out_of_order;
        totals.ghosts += v.ghosts.len();
        totals.missing_presence += v.missing_presence.len();
    }
    (verdicts, totals)
}

/// The store's history of each profile (message keys, in the order
/// read) against the sends: acknowledged and not stored, stored twice,
/// stored though refused or unanswered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stored {
    pub stored: usize,
    pub acked_not_stored: usize,
    pub stored_twice: usize,
    pub stored_unacked: usize,
}

pub fn judge_store(history: &HashMap<Uuid, Vec<u64>>, sends: &[SendLog]) -> Stored {
    let mut stored = Stored::default();
    let mut all: HashSet<u64> = HashSet::new();
    for keys in history.values() {
        let distinct: BTreeSet<u64> = keys.iter().copied().collect();
        stored.stored += distinct.len();
        stored.stored_twice += keys.len() - distinct.len();
        all.extend(distinct);
    }
    for send in sends {
        let here = all.contains(&send.key);
        match send.outcome {
            Outcome::Acked(_) if !here => stored.acked_not_stored += 1,
            Outcome::Refused(_) | Outcome::Unknown(_) | Outcome::Pending if here => {
                stored.stored_unacked += 1
            }
            _ => {}
        }
    }
    stored
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::log::{Delivery, SessionLog};

    fn client(index: usize, profile: Uuid, opened: u64, closed: Option<u64>) -> ClientLog {
        let mut c = ClientLog::new(index, Uuid::new_v4(), profile, "ws");
        c.sessions.push(SessionLog {
            opened_ms: opened,
            edge: "edge-1".into(),
            resumed: false,
            closed_ms: closed,
            end: None,
        });
        c
    }

    fn send(key: u64, profile: Uuid, sent_ms: u64, outcome: Outcome) -> SendLog {
        SendLog {
            key,
            profile,
            client: 0,
            sent_ms,
            answered_ms: Some(sent_ms + 5),
            outcome,
        }
    }

    fn got(c: &mut ClientLog, key: u64, offset: u64) {
        c.deliveries.push(Delivery {
            at_ms: 0,
            key,
            offset,
        });
    }

    #[test]
    fn lost_doubled_out_of_order_and_unacked_deliveries_are_counted() {
        let room = Uuid::new_v4();
        let acked = |k| Outcome::Acked(format!("id{k}"));
        let sends = vec![
            send(1, room, 500, acked(1)), // before the client joined (+grace)
            send(2, room, 2_000, acked(2)),
            send(3, room, 3_000, acked(3)),
            send(4, room, 4_000, acked(4)),
            send(5, room, 5_000, Outcome::Refused("unavailable".into())),
            send(6, room, 6_000, Outcome::Unknown("closed".into())),
        ];
        let mut a = client(0, room, 0, None);
        got(&mut a, 2, 10);
        got(&mut a, 4, 12);
        got(&mut a, 2, 10); // twice, and below the one before
        got(&mut a, 6, 14); // unanswered, delivered anyway
        let mut b = client(1, room, 0, None);
        for (key, offset) in [(2, 10), (3, 11), (4, 12)] {
            got(&mut b, key, offset);
        }
        b.gaps.push((3_500, "too_many".into()));
        let (verdicts, totals) = judge(&[a, b], &sends, 100_000);
        assert_eq!(
            (
                verdicts[0].expected,
                verdicts[0].lost_silently,
                verdicts[0].duplicated,
                verdicts[0].out_of_order
            ),
            (3, 1, 1, 1),
            "sends 2-4 expected, 3 lost silently"
        );
        assert_eq!(
            (verdicts[1].lost_after_gap, verdicts[1].lost_silently),
            (0, 0)
        );
        assert_eq!(totals.acked, 4);
        assert_eq!(totals.refused.get("unavailable"), Some(&1));
        assert_eq!(totals.delivered_unacked, 1);
        assert_eq!(totals.acked_never_delivered, 1, "send 1 reached nobody");
    }

    #[test]
    fn a_quitter_is_not_expected_to_get_what_reached_others_only_after_it_left() {
        let room = Uuid::new_v4();
        let acked = |k| Outcome::Acked(format!("id{k}"));
        // Both sent well before the quit; 2 was held back (say, the broker
        // was away) and reached the others only after it.
        let sends = vec![
            send(1, room, 2_000, acked(1)),
            send(2, room, 3_000, acked(2)),
            send(3, room, 4_000, acked(3)),
        ];
        let mut quitter = client(0, room, 0, Some(20_000));
        quitter.quit = Some((20_000, QuitHow::Closed));
        let mut stayer = client(1, room, 0, None);
        for (key, offset, at_ms) in [(1, 10, 2_100), (2, 11, 25_000), (3, 12, 4_100)] {
            stayer.deliveries.push(Delivery { at_ms, key, offset });
        }
        got(&mut quitter, 1, 10);
        let (verdicts, _) = judge(&[quitter, stayer], &sends, 100_000);
        assert_eq!(
            (verdicts[0].expected, verdicts[0].lost_silently),
            (2, 1),
            "1 and 3 reached others in time: 3 is lost; 2 came too late to expect"
        );
        assert_eq!((verdicts[1].expected, verdicts[1].lost_silently), (3, 0));
    }

    #[test]
    fn presence_is_judged_per_profile() {
        let (here, there) = (Uuid::new_v4(), Uuid::new_v4());
        let mut stays_here = client(0, here, 0, None);
        let mut left_there = client(1, there, 0, Some(10_000));
        left_there.user = stays_here.user;
        let mut watcher_here = client(2, here, 0, None);
        watcher_here.presence = [stays_here.user].into_iter().collect();
        stays_here.presence = [watcher_here.user].into_iter().collect();
        let watcher_there = client(3, there, 0, None);
        let (verdicts, totals) = judge(
            &[stays_here, left_there, watcher_here, watcher_there],
            &[],
            100_000,
        );
        assert!(verdicts[2].ghosts.is_empty(), "live here: not a ghost here");
        assert!(
            verdicts[3].missing_presence.is_empty(),
            "gone from there: not missed there"
        );
        assert_eq!((totals.ghosts, totals.missing_presence), (0, 0));
    }

    #[test]
    fn a_user_listed_ten_seconds_after_it_left_is_a_ghost() {
        let room = Uuid::new_v4();
        let left_long_ago = client(0, room, 0, Some(10_000));
        let left_just_now = client(1, room, 0, Some(95_000));
        let still_here = client(2, room, 0, None);
        let mut watcher = client(3, room, 0, None);
        watcher.presence = [left_long_ago.user, left_just_now.user, watcher.user]
            .into_iter()
            .collect();
        let (verdicts, totals) = judge(
            &[
                left_long_ago.clone(),
                left_just_now,
                still_here.clone(),
                watcher,
            ],
            &[],
            100_000,
        );
        assert_eq!(verdicts[3].ghosts, [left_long_ago.user]);
        assert_eq!(verdicts[3].missing_presence, [still_here.user]);
        assert_eq!((totals.ghosts, totals.missing_presence), (1, 2));
    }

    #[test]
    fn the_store_is_checked_against_the_sends() {
        let room = Uuid::new_v4();
        let sends = [
            send(1, room, 1, Outcome::Acked("a".into())),
            send(2, room, 2, Outcome::Acked("b".into())),
            send(3, room, 3, Outcome::Refused("unavailable".into())),
        ];
        let history = HashMap::from([(room, vec![1, 1, 3])]);
        let stored = judge_store(&history, &sends);
        assert_eq!(
            (
                stored.stored,
                stored.acked_not_stored,
                stored.stored_twice,
                stored.stored_unacked
            ),
            (2, 1, 1, 1)
        );
    }
}
