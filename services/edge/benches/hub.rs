//! The hub with 20,000 local sessions (2,000 profiles of 10, plus one room
//! of 2,000): what one delivery, one heartbeat turn, a join and a leave, and
//! an eviction cost. `cargo bench -p rill-edge --bench hub`; the numbers
//! measured before and after the hub was sharded and indexed are in
//! docs/PERFORMANCE.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rill_domain::{ProfileId, UserId};
use rill_edge::bench::{Hub, Outbound, Subscription, event, hub};

const ROOMS: usize = 2_000;
const PER_ROOM: usize = 10;
const BIG_ROOM: usize = 2_000;

/// A hub with `ROOMS` rooms of `PER_ROOM` sessions and one room of
/// `BIG_ROOM`; the subscriptions (kept alive), a small room and its
/// sessions, the big room and a user with a session.
struct Loaded {
    hub: Arc<Hub>,
    subscriptions: Vec<Subscription>,
    room: ProfileId,
    room_sessions: Vec<usize>,
    big_room: ProfileId,
    user: UserId,
}

fn loaded() -> Loaded {
    let hub = hub();
    let mut subscriptions = Vec::with_capacity(ROOMS * PER_ROOM + BIG_ROOM);
    let rooms: Vec<ProfileId> = (0..ROOMS).map(|_| ProfileId::random()).collect();
    let users: Vec<UserId> = (0..ROOMS * PER_ROOM).map(|_| UserId::random()).collect();
    for (n, user) in users.iter().enumerate() {
        // Each user is in one small room; sessions of one room are spread
        // over the hub's life, as they are when people come and go.
        subscriptions.push(hub.subscribe(rooms[n % ROOMS], *user, 256));
    }
    let big_room = ProfileId::random();
    for user in users.iter().take(BIG_ROOM) {
        subscriptions.push(hub.subscribe(big_room, *user, 256));
    }
    let room = ROOMS / 2;
    Loaded {
        hub,
        subscriptions,
        room: rooms[room],
        room_sessions: (0..PER_ROOM).map(|k| room + k * ROOMS).collect(),
        big_room,
        user: users[ROOMS * PER_ROOM / 2],
    }
}

fn bench(c: &mut Criterion) {
    let mut loaded = loaded();
    let hub = loaded.hub.clone();
    let message: Arc<Outbound> = event();

    c.bench_function(
        "deliver to a room of 10, each takes it (20k sessions)",
        |b| {
            b.iter(|| {
                black_box(hub.deliver(loaded.room, &message));
                for &n in &loaded.room_sessions {
                    black_box(loaded.subscriptions[n].try_next());
                }
            });
        },
    );
    c.bench_function("deliver to a user, who takes it (20k sessions)", |b| {
        let user = loaded.user;
        let session = ROOMS * PER_ROOM / 2;
        b.iter(|| {
            black_box(hub.deliver_to_user(user, &message));
            black_box(loaded.subscriptions[session].try_next());
        });
    });
    c.bench_function("one heartbeat turn (20k sessions)", |b| {
        let mut turn = 0;
        b.iter(|| {
            hub.heartbeat(turn % 64);
            turn += 1;
        });
    });
    c.bench_function("join and leave the room of 2,000 (20k sessions)", |b| {
        b.iter(|| {
            drop(black_box(hub.subscribe(
                loaded.big_room,
                UserId::random(),
                256,
            )))
        });
    });
    c.bench_function("evict a member who has no session (20k sessions)", |b| {
        let (user, room) = (UserId::random(), loaded.room);
        b.iter(|| black_box(rill_edge::bench::evict(&hub, user, room)));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
