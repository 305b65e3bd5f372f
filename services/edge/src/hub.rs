//! The hub: which local sessions are on which profile, and delivery of an
//! event to all of them. It knows nothing of WebSocket, SSE or Kafka.
//!
//! Each session has a queue bounded in events (`limits.session_queue_depth`)
//! and in bytes (`limits.session_queue_bytes`). Delivery never waits: when
//! a session's queue is full the event is dropped for that session, and the
//! session's next event is a `gap` notice telling the client to fetch
//! history. A session that stays behind for `limits.slow_client_secs` is
//! ended.
//!
//! Sessions end from outside through their [`SessionHandle`]: an unbind,
//! a lost lock, the drain.
//!
//! Nothing per message or per beat walks every session under one lock
//! (centrifuge's hub is the model): sessions are indexed by profile (for
//! delivery) and by user (pushes to a user, evictions), each index in
//! [`SHARDS`] shards under locks of their own, and kept in [`SHARDS`]
//! shards by session number (one shard per heartbeat turn). Joining or
//! leaving costs the same in a room of two or of twenty thousand.
//!
//! The hub also keeps time for heartbeats: one timer for the edge
//! ([`Hub::beat`]) gives each session a [`Next::Heartbeat`] once per
//! interval, a 64th of the sessions at a time, instead of a timer in every
//! session (112 bytes each, and a larger task).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::Poll;
use std::time::Duration;

use futures_util::task::AtomicWaker;
use rill_domain::{LoginId, ProfileId, UserId};
use rill_runtime::shutdown::CancellationToken;
use tokio::time::Instant;

use crate::disconnect::Disconnect;
use crate::events::{Outbound, ServerEvent};
use crate::metrics::EdgeMetrics;

/// Heartbeats go out in this many turns per interval, so that not every
/// socket is pinged in the same instant.
pub const HEARTBEAT_TURNS: u64 = 64;

/// Shards of each index, and of the sessions by number (one per heartbeat
/// turn).
pub const SHARDS: usize = HEARTBEAT_TURNS as usize;

/// Sessions by their number.
type Slots = HashMap<u64, Arc<Slot>>;

/// One shard of an index: the sessions of each key in it.
type Shard<K> = RwLock<HashMap<K, Slots>>;

/// The local sessions of this edge.
#[derive(Debug)]
pub struct Hub {
    /// Every session, by number, in the shard of its heartbeat turn.
    by_turn: Box<[RwLock<Slots>]>,
    by_profile: Index<ProfileId>,
    by_user: Index<UserId>,
    next_slot: AtomicU64,
    slow_after: Duration,
    /// `limits.session_queue_bytes`: most bytes queued for one session.
    queue_bytes: usize,
    /// The hub's clock starts here; slots keep times as ms since.
    epoch: Instant,
    metrics: Arc<EdgeMetrics>,
}

/// Sessions by a key (a profile, a user), in shards by the key.
#[derive(Debug)]
struct Index<K> {
    shards: Box<[Shard<K>]>,
}

/// An id that picks its shard from its own bits, without hashing
/// (a delivery would otherwise hash the profile twice).
trait ShardKey: Hash + Eq + Copy {
    fn bits(&self) -> u64;

    /// Fibonacci hashing: the top bits of the product, so that ids that
    /// differ only in their low bits still spread.
    fn shard(&self) -> usize {
        (self.bits().wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARDS.trailing_zeros())) as usize
    }
}

impl ShardKey for ProfileId {
    fn bits(&self) -> u64 {
        let (high, low) = self.as_uuid().as_u64_pair();
        high ^ low
    }
}

impl ShardKey for UserId {
    fn bits(&self) -> u64 {
        let (high, low) = self.as_uuid().as_u64_pair();
        high ^ low
    }
}

impl<K: ShardKey> Index<K> {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }

    fn shard(&self, key: &K) -> &Shard<K> {
        &self.shards[key.shard()]
    }

    fn insert(&self, key: K, slot: &Arc<Slot>) {
        let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
        shard.entry(key).or_default().insert(slot.id, slot.clone());
    }

    fn remove(&self, key: K, id: u64) {
        let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
        if let Some(slots) = shard.get_mut(&key) {
            slots.remove(&id);
            if slots.is_empty() {
                shard.remove(&key);
            }
        }
    }

    /// Calls `f` with the sessions of `key` (none: not called), under the
    /// shard's read lock; its answer, or the default.
    fn with<T: Default>(&self, key: K, f: impl FnOnce(&Slots) -> T) -> T {
        let shard = self.shard(&key).read().unwrap_or_else(|e| e.into_inner());
        shard.get(&key).map(f).unwrap_or_default()
    }

    /// Every session, with its key, shard by shard.
    fn for_each(&self, mut f: impl FnMut(K, &Arc<Slot>)) {
        for shard in &self.shards {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            for (key, slots) in shard.iter() {
                slots.values().for_each(|slot| f(*key, slot));
            }
        }
    }
}

#[derive(Debug)]
struct Slot {
    id: u64,
    user: UserId,
    profile: ProfileId,
    /// The login the session's cookie stands for (none for a session opened
    /// with a connection token): its end ends the session.
    login: OnceLock<LoginId>,
    /// Events waiting for the session, at most `depth` of them and the
    /// hub's `queue_bytes`. A plain deque and a waker rather than a tokio
    /// mpsc channel: an idle session's queue then costs no allocation (the
    /// channel took ~0.7 KiB per session).
    queue: Mutex<Queue>,
    depth: usize,
    /// The session's task, woken when an event is queued or the session
    /// must end.
    waker: AtomicWaker,
    /// Set when the session must end, to why. (Not a cancellation token:
    /// that is one more allocation in every session.)
    reason: OnceLock<Disconnect>,
    /// Set when an event was dropped for this session.
    gap: AtomicBool,
    /// Set when the session's heartbeat is due.
    heartbeat: AtomicBool,
    /// When this session first had an event dropped since its queue was
    /// last empty (ms since the hub's epoch, plus one); 0 when none.
    behind_since: AtomicU64,
}

/// A session's queued events and their bytes.
#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<Arc<Outbound>>,
    bytes: usize,
}

impl Queue {
    /// Whether `event` fits under `depth` events and `max_bytes` bytes. An
    /// empty queue takes any event: one larger than `max_bytes` (a message
    /// at the body limit, escaped) would otherwise never be delivered.
    fn fits(&self, event: &Outbound, depth: usize, max_bytes: usize) -> bool {
        self.events.is_empty()
            || (self.events.len() < depth && self.bytes + event.json.len() <= max_bytes)
    }

    fn push(&mut self, event: Arc<Outbound>) {
        self.bytes += event.json.len();
        self.events.push_back(event);
    }

    fn pop(&mut self) -> Option<Arc<Outbound>> {
        let event = self.events.pop_front()?;
        self.bytes -= event.json.len();
        Some(event)
    }
}

impl Slot {
    fn end(&self, reason: Disconnect) {
        let _ = self.reason.set(reason);
        self.waker.wake();
    }
}

impl Hub {
    /// A hub whose sessions' queues hold at most the default
    /// `limits.session_queue_bytes` (see [`Hub::with_queue_bytes`]).
    pub fn new(slow_after: Duration, metrics: Arc<EdgeMetrics>) -> Arc<Self> {
        let queue_bytes = crate::settings::Limits::default().session_queue_bytes;
        Self::with_queue_bytes(slow_after, queue_bytes, metrics)
    }

    /// A hub whose sessions' queues hold at most `queue_bytes` bytes
    /// (`limits.session_queue_bytes`) each.
    pub fn with_queue_bytes(
        slow_after: Duration,
        queue_bytes: usize,
        metrics: Arc<EdgeMetrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            by_turn: (0..SHARDS).map(|_| RwLock::default()).collect(),
            by_profile: Index::new(),
            by_user: Index::new(),
            next_slot: AtomicU64::new(0),
            slow_after,
            queue_bytes,
            epoch: Instant::now(),
            metrics,
        })
    }

    /// Adds a session of `user` on `profile` with a queue of `depth` events.
    pub fn subscribe(
        self: &Arc<Self>,
        profile: ProfileId,
        user: UserId,
        depth: usize,
    ) -> Subscription {
        let slot = Arc::new(Slot {
            id: self.next_slot.fetch_add(1, Ordering::Relaxed),
            user,
            profile,
            login: OnceLock::new(),
            queue: Mutex::default(),
            depth,
            waker: AtomicWaker::new(),
            reason: OnceLock::new(),
            gap: AtomicBool::new(false),
            heartbeat: AtomicBool::new(false),
            behind_since: AtomicU64::new(0),
        });
        self.turn_of(slot.id)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(slot.id, slot.clone());
        self.by_profile.insert(profile, &slot);
        self.by_user.insert(user, &slot);
        Subscription {
            hub: self.clone(),
            slot,
        }
    }

    /// Queues `event` for every session on `profile`; returns how many
    /// sessions it was queued for.
    pub fn deliver(&self, profile: ProfileId, event: &Arc<Outbound>) -> usize {
        self.by_profile
            .with(profile, |slots| self.offer(slots.values(), event))
    }

    /// Queues `event` for every session of `user`, on any profile; returns
    /// how many sessions it was queued for.
    pub fn deliver_to_user(&self, user: UserId, event: &Arc<Outbound>) -> usize {
        self.by_user
            .with(user, |slots| self.offer(slots.values(), event))
    }

    /// Queues `event` for each of `slots` without waiting: a full queue (in
    /// events or in bytes) drops it for that session and marks the gap.
    fn offer<'a>(
        &self,
        slots: impl Iterator<Item = &'a Arc<Slot>>,
        event: &Arc<Outbound>,
    ) -> usize {
        let mut queued = 0;
        for slot in slots {
            let mut queue = slot.queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.fits(event, slot.depth, self.queue_bytes) {
                queue.push(event.clone());
                drop(queue);
                slot.waker.wake();
                queued += 1;
            } else {
                drop(queue);
                {
                    slot.gap.store(true, Ordering::Release);
                    let now = self.now_ms() + 1;
                    let _ = slot.behind_since.compare_exchange(
                        0,
                        now,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    self.metrics.dropped_events.inc();
                }
            }
        }
        self.metrics.queued_events.inc_by(queued as u64);
        self.metrics
            .queued_bytes
            .inc_by((queued * event.json.len()) as i64);
        queued
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The (user, profile) pair of every local session (every few seconds,
    /// to refresh the registry: a walk over all, one shard at a time).
    pub fn pairs(&self) -> Vec<(UserId, ProfileId)> {
        let mut pairs = Vec::new();
        self.by_profile
            .for_each(|profile, slot| pairs.push((slot.user, profile)));
        pairs
    }

    /// A handle on every local session (for the drain).
    pub fn sessions(&self) -> Vec<SessionHandle> {
        let mut sessions = Vec::new();
        for shard in &self.by_turn {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            sessions.extend(shard.values().map(|s| SessionHandle(s.clone())));
        }
        sessions
    }

    /// Ends `user`'s sessions on `profile` (unbound); how many.
    pub fn evict_member(&self, user: UserId, profile: ProfileId) -> usize {
        self.by_user.with(user, |slots| {
            end_all(
                slots.values().filter(|s| s.profile == profile),
                Disconnect::NotAMember,
            )
        })
    }

    /// Ends every session of `user` (deleted); how many.
    pub fn evict_user(&self, user: UserId) -> usize {
        self.by_user.with(user, |slots| {
            end_all(slots.values(), Disconnect::NotAMember)
        })
    }

    /// Ends the sessions of `login` of `user` (logged out); how many.
    pub fn evict_login(&self, user: UserId, login: LoginId) -> usize {
        self.by_user.with(user, |slots| {
            let of_login = slots
                .values()
                .filter(|slot| slot.login.get() == Some(&login));
            end_all(of_login, Disconnect::LoggedOut)
        })
    }

    /// Ends every session of `user` ("log out everywhere"); how many.
    pub fn evict_logins(&self, user: UserId) -> usize {
        self.by_user
            .with(user, |slots| end_all(slots.values(), Disconnect::LoggedOut))
    }

    /// Ends every session on `profile` (deleted); how many.
    pub fn evict_profile(&self, profile: ProfileId) -> usize {
        self.by_profile.with(profile, |slots| {
            end_all(slots.values(), Disconnect::NotAMember)
        })
    }

    /// Gives every session a heartbeat once per `interval`, in
    /// [`HEARTBEAT_TURNS`] turns (by session number), until `shutdown`.
    pub async fn beat(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval / HEARTBEAT_TURNS as u32);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for turn in (0..HEARTBEAT_TURNS).cycle() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.heartbeat(turn),
            }
        }
    }

    /// The heartbeat of the sessions whose turn it is: one shard.
    pub fn heartbeat(&self, turn: u64) {
        let shard = self.by_turn[turn as usize % SHARDS]
            .read()
            .unwrap_or_else(|e| e.into_inner());
        for slot in shard.values() {
            slot.heartbeat.store(true, Ordering::Release);
            slot.waker.wake();
        }
    }

    /// Number of sessions on `profile`.
    pub fn sessions_on(&self, profile: ProfileId) -> usize {
        self.by_profile.with(profile, HashMap::len)
    }

    /// The shard of session `id`: that of its heartbeat turn.
    fn turn_of(&self, id: u64) -> &RwLock<Slots> {
        &self.by_turn[(id % HEARTBEAT_TURNS) as usize]
    }

    fn unsubscribe(&self, slot: &Slot) {
        self.turn_of(slot.id)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&slot.id);
        self.by_profile.remove(slot.profile, slot.id);
        self.by_user.remove(slot.user, slot.id);
    }
}

/// Ends each of `slots` for `reason`; how many.
fn end_all<'a>(slots: impl Iterator<Item = &'a Arc<Slot>>, reason: Disconnect) -> usize {
    let mut ended = 0;
    for slot in slots {
        slot.end(reason);
        ended += 1;
    }
    ended
}

/// Ends one session from outside it.
#[derive(Debug, Clone)]
pub struct SessionHandle(Arc<Slot>);

impl SessionHandle {
    pub fn end(&self, reason: Disconnect) {
        self.0.end(reason);
    }

    pub fn is_ended(&self) -> bool {
        self.0.reason.get().is_some()
    }
}

/// One session's place in the hub; leaving it (drop) unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<Hub>,
    slot: Arc<Slot>,
}

impl Subscription {
    /// This session's number in the hub, unique on this edge.
    pub fn id(&self) -> u64 {
        self.slot.id
    }

    pub fn handle(&self) -> SessionHandle {
        SessionHandle(self.slot.clone())
    }

    /// Marks the session as `login`'s, so that the login's end ends it.
    pub fn belongs_to(&self, login: LoginId) {
        let _ = self.slot.login.set(login);
    }

    /// The next thing for this session: a `gap` notice first if events were
    /// dropped since the last call, then queued events; `End` once the
    /// session must end.
    pub async fn next(&mut self) -> Next {
        // A waker in the slot rather than a `Notify`: the future of a
        // `notified()` holds a waiter node, in every idle session's task.
        std::future::poll_fn(|cx| {
            // Registered before looking: an event queued (or an end) after
            // the look wakes this task.
            self.slot.waker.register(cx.waker());
            self.next_now().map_or(Poll::Pending, Poll::Ready)
        })
        .await
    }

    fn next_now(&mut self) -> Option<Next> {
        if let Some(end) = self.ended() {
            return Some(Next::End(end));
        }
        if self.slot.heartbeat.swap(false, Ordering::AcqRel) {
            return Some(Next::Heartbeat);
        }
        if self.slot.gap.swap(false, Ordering::AcqRel) {
            return Some(Next::Event(
                ServerEvent::Gap {
                    reason: "slow_client",
                }
                .to_outbound(),
            ));
        }
        self.try_next().map(Next::Event)
    }

    /// The oldest queued event, if there is one, without waiting.
    pub fn try_next(&mut self) -> Option<Arc<Outbound>> {
        let (event, emptied) = self.pop()?;
        self.hub
            .metrics
            .queued_bytes
            .dec_by(event.json.len() as i64);
        if emptied {
            self.slot.behind_since.store(0, Ordering::Release);
        }
        Some(event)
    }

    /// The oldest queued event, and whether the queue is empty after it.
    /// An emptied queue gives its buffer back: an idle session keeps none.
    fn pop(&self) -> Option<(Arc<Outbound>, bool)> {
        let mut queue = self.slot.queue.lock().unwrap_or_else(|e| e.into_inner());
        let event = queue.pop()?;
        let emptied = queue.events.is_empty();
        if emptied {
            *queue = Queue::default();
        }
        Some((event, emptied))
    }

    /// Why the session must end, if it must: ended from outside, or behind
    /// for too long.
    fn ended(&self) -> Option<Disconnect> {
        if let Some(reason) = self.slot.reason.get() {
            return Some(*reason);
        }
        let since = self.slot.behind_since.load(Ordering::Acquire);
        let behind =
            since > 0 && self.hub.now_ms() + 1 - since > self.hub.slow_after.as_millis() as u64;
        behind.then_some(Disconnect::TooSlow)
    }
}

/// What a session gets from the hub.
#[derive(Debug)]
pub enum Next {
    Event(Arc<Outbound>),
    /// Time to ping the client (and to check it was heard from).
    Heartbeat,
    End(Disconnect),
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.slot);
        let queue = std::mem::take(&mut *self.slot.queue.lock().unwrap_or_else(|e| e.into_inner()));
        self.hub.metrics.queued_bytes.dec_by(queue.bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ServerEvent;

    fn hub_with(metrics: Arc<EdgeMetrics>) -> Arc<Hub> {
        Hub::new(Duration::from_secs(10), metrics)
    }

    fn hub() -> Arc<Hub> {
        hub_with(Arc::new(EdgeMetrics::default()))
    }

    fn name(next: Next) -> &'static str {
        match next {
            Next::Event(out) => out.name,
            Next::Heartbeat => "heartbeat",
            Next::End(_) => "end",
        }
    }

    fn event() -> Arc<Outbound> {
        ServerEvent::Pong.to_outbound()
    }

    #[tokio::test]
    async fn delivers_only_to_sessions_on_the_profile() {
        let hub = hub();
        let (a, b) = (ProfileId::random(), ProfileId::random());
        let mut on_a = hub.subscribe(a, UserId::random(), 4);
        let on_b = hub.subscribe(b, UserId::random(), 4);
        assert_eq!(hub.deliver(a, &event()), 1);
        assert_eq!(name(on_a.next().await), "pong");
        assert!(on_b.pop().is_none(), "b must not get a's event");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_then_reports_a_gap() {
        let metrics = Arc::new(EdgeMetrics::default());
        let hub = hub_with(metrics.clone());
        let p = ProfileId::random();
        let mut sub = hub.subscribe(p, UserId::random(), 2);
        for _ in 0..5 {
            hub.deliver(p, &event());
        }
        assert_eq!(metrics.dropped_events.get(), 3);
        let size = event().json.len() as i64;
        assert_eq!(metrics.queued_bytes.get(), 2 * size);
        assert_eq!(name(sub.next().await), "gap");
        assert_eq!(name(sub.next().await), "pong");
        assert_eq!(name(sub.next().await), "pong");
        assert!(sub.pop().is_none());
        assert_eq!(metrics.queued_bytes.get(), 0);
    }

    #[tokio::test]
    async fn a_queue_past_its_bytes_drops_and_then_reports_a_gap() {
        let metrics = Arc::new(EdgeMetrics::default());
        let size = event().json.len();
        // Room for two events' bytes, and for ten by count.
        let hub = Hub::with_queue_bytes(Duration::from_secs(10), 2 * size + 1, metrics.clone());
        let p = ProfileId::random();
        let mut sub = hub.subscribe(p, UserId::random(), 10);
        for _ in 0..5 {
            hub.deliver(p, &event());
        }
        assert_eq!(metrics.dropped_events.get(), 3);
        assert_eq!(metrics.queued_bytes.get(), 2 * size as i64);
        assert_eq!(name(sub.next().await), "gap");
        assert_eq!(name(sub.next().await), "pong");
        assert_eq!(name(sub.next().await), "pong");
        assert!(sub.pop().is_none());
        // Drained: room again.
        assert_eq!(hub.deliver(p, &event()), 1);
    }

    #[tokio::test]
    async fn an_empty_queue_takes_an_event_larger_than_its_bytes() {
        let hub =
            Hub::with_queue_bytes(Duration::from_secs(10), 4, Arc::new(EdgeMetrics::default()));
        let p = ProfileId::random();
        let mut sub = hub.subscribe(p, UserId::random(), 10);
        assert_eq!(hub.deliver(p, &event()), 1, "taken: the queue was empty");
        assert_eq!(hub.deliver(p, &event()), 0, "dropped: past the bytes");
        assert_eq!(name(sub.next().await), "gap");
        assert_eq!(name(sub.next().await), "pong");
    }

    #[tokio::test]
    async fn a_dropped_subscription_gives_back_its_queued_bytes() {
        let metrics = Arc::new(EdgeMetrics::default());
        let hub = hub_with(metrics.clone());
        let p = ProfileId::random();
        let sub = hub.subscribe(p, UserId::random(), 4);
        hub.deliver(p, &event());
        hub.deliver(p, &event());
        assert!(metrics.queued_bytes.get() > 0);
        drop(sub);
        assert_eq!(metrics.queued_bytes.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_behind_for_too_long_ends() {
        let hub = hub();
        let p = ProfileId::random();
        let mut sub = hub.subscribe(p, UserId::random(), 1);
        hub.deliver(p, &event());
        hub.deliver(p, &event()); // dropped: behind from now
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(name(sub.next().await), "gap");
        assert_eq!(
            name(sub.next().await),
            "pong",
            "caught up: no longer behind"
        );
        hub.deliver(p, &event());
        hub.deliver(p, &event()); // behind again
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(matches!(sub.next().await, Next::End(Disconnect::TooSlow)));
    }

    #[tokio::test]
    async fn eviction_ends_only_the_matching_sessions() {
        let hub = hub();
        let (p, q) = (ProfileId::random(), ProfileId::random());
        let (ada, bob) = (UserId::random(), UserId::random());
        let mut ada_on_p = hub.subscribe(p, ada, 1);
        let ada_on_q = hub.subscribe(q, ada, 1);
        let bob_on_p = hub.subscribe(p, bob, 1);
        assert_eq!(hub.evict_member(ada, p), 1);
        assert!(matches!(
            ada_on_p.next().await,
            Next::End(Disconnect::NotAMember)
        ));
        assert!(!ada_on_q.handle().is_ended());
        assert!(!bob_on_p.handle().is_ended());
        assert_eq!(hub.evict_profile(p), 2, "ada's (ended already) and bob's");
        assert!(bob_on_p.handle().is_ended());
        assert_eq!(hub.evict_user(ada), 2);
        assert!(ada_on_q.handle().is_ended());
    }

    #[tokio::test]
    async fn a_logout_ends_only_the_sessions_of_its_login() {
        let hub = hub();
        let (p, q) = (ProfileId::random(), ProfileId::random());
        let ada = UserId::random();
        let (laptop, phone) = (LoginId::random(), LoginId::random());
        let mut on_laptop = hub.subscribe(p, ada, 1);
        on_laptop.belongs_to(laptop);
        let on_phone = hub.subscribe(q, ada, 1);
        on_phone.belongs_to(phone);
        let with_token = hub.subscribe(q, ada, 1);
        assert_eq!(hub.evict_login(ada, laptop), 1);
        assert!(matches!(
            on_laptop.next().await,
            Next::End(Disconnect::LoggedOut)
        ));
        assert!(!on_phone.handle().is_ended());
        assert!(!with_token.handle().is_ended());
        assert_eq!(hub.evict_login(UserId::random(), phone), 0, "ada's login");
        assert_eq!(hub.evict_logins(ada), 3, "everywhere: every session");
        assert!(on_phone.handle().is_ended() && with_token.handle().is_ended());
    }

    #[tokio::test]
    async fn a_handle_ends_its_session_with_its_reason() {
        let hub = hub();
        let p = ProfileId::random();
        let mut sub = hub.subscribe(p, UserId::random(), 1);
        let handles = hub.sessions();
        assert_eq!(handles.len(), 1);
        handles[0].end(Disconnect::Reconnect(
            crate::disconnect::ReconnectReason::Draining,
        ));
        assert!(matches!(
            sub.next().await,
            Next::End(Disconnect::Reconnect(
                crate::disconnect::ReconnectReason::Draining
            ))
        ));
    }

    #[tokio::test]
    async fn a_session_waiting_for_events_wakes_when_ended() {
        let hub = hub();
        let mut sub = hub.subscribe(ProfileId::random(), UserId::random(), 1);
        let handle = sub.handle();
        let waiting = tokio::spawn(async move { sub.next().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "nothing to return yet");
        handle.end(Disconnect::TooSlow);
        let next = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken by the end")
            .expect("task");
        assert!(matches!(next, Next::End(Disconnect::TooSlow)));
    }

    #[tokio::test]
    async fn each_session_gets_one_heartbeat_per_round_of_turns() {
        let hub = hub();
        let profile = ProfileId::random();
        let mut subs: Vec<Subscription> = (0..3)
            .map(|_| hub.subscribe(profile, UserId::random(), 4))
            .collect();
        hub.heartbeat(subs[1].id() % HEARTBEAT_TURNS);
        assert!(matches!(subs[1].next().await, Next::Heartbeat));
        for other in [0, 2] {
            assert!(subs[other].next_now().is_none(), "not its turn");
        }
        for turn in 0..HEARTBEAT_TURNS {
            hub.heartbeat(turn);
        }
        for sub in &mut subs {
            assert!(matches!(sub.next().await, Next::Heartbeat));
            assert!(sub.next_now().is_none(), "one per round");
        }
    }

    #[tokio::test]
    async fn delivery_to_a_user_reaches_all_their_sessions_only() {
        let hub = hub();
        let (p, q) = (ProfileId::random(), ProfileId::random());
        let (ada, bob) = (UserId::random(), UserId::random());
        let mut ada_p = hub.subscribe(p, ada, 2);
        let mut ada_q = hub.subscribe(q, ada, 2);
        let bob_p = hub.subscribe(p, bob, 2);
        assert_eq!(hub.deliver_to_user(ada, &event()), 2);
        assert_eq!(name(ada_p.next().await), "pong");
        assert_eq!(name(ada_q.next().await), "pong");
        assert!(bob_p.pop().is_none());
        let mut pairs = hub.pairs();
        pairs.sort();
        let mut expected = vec![(ada, p), (ada, q), (bob, p)];
        expected.sort();
        assert_eq!(pairs, expected);
    }

    #[tokio::test]
    async fn dropping_a_subscription_unsubscribes() {
        let hub = hub();
        let p = ProfileId::random();
        let sub = hub.subscribe(p, UserId::random(), 1);
        assert_eq!(hub.sessions_on(p), 1);
        let user = sub.slot.user;
        drop(sub);
        assert_eq!(hub.sessions_on(p), 0);
        assert_eq!(hub.deliver(p, &event()), 0);
        assert_eq!(hub.deliver_to_user(user, &event()), 0);
        assert!(hub.sessions().is_empty() && hub.pairs().is_empty());
    }
}
