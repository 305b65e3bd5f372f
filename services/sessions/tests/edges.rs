//! Edges' heartbeats and the end of a dead edge's sessions, against real
//! Redis servers: one, and three independent ones of which some lose the
//! heartbeat or die.

use std::time::{Duration, Instant};

use rill_domain::{ProfileId, UserId};
use rill_sessions::{
    Beat, Edges, Incarnation, LiveSessions, Lock, LockError, LockManager, Nodes, RedisSettings,
    Refresh,
};
use rill_testkit::redis::Redis;

const PREFIX: &str = "test";
const LONG: Duration = Duration::from_secs(30);
const DEAD_AFTER: Duration = Duration::from_millis(300);

struct Cluster {
    edges: Edges,
    locks: LockManager,
    registry: LiveSessions,
}

fn cluster(servers: &[&Redis], lock_ttl: Duration) -> Cluster {
    let settings = RedisSettings {
        urls: servers.iter().map(|r| r.url()).collect(),
        timeout_ms: Duration::from_millis(300),
        ..RedisSettings::default()
    };
    let nodes = Nodes::new(&settings).expect("urls");
    Cluster {
        edges: Edges::new(nodes.clone(), PREFIX, DEAD_AFTER, LONG),
        locks: LockManager::new(nodes.clone(), PREFIX, lock_ttl),
        registry: LiveSessions::new(nodes, PREFIX, LONG),
    }
}

fn pair() -> (UserId, ProfileId) {
    (UserId::random(), ProfileId::random())
}

/// Asks `silent` until it lists `edge` (or panics after 10 s).
async fn until_silent(edges: &Edges, me: &Incarnation, edge: &Incarnation) -> Duration {
    let started = Instant::now();
    loop {
        if edges.silent(me).await.expect("a majority").contains(edge) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{edge} never fell silent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn raw(redis: &Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("up")
}

#[tokio::test]
async fn a_silent_edge_is_claimed_once_and_its_sessions_ended_without_touching_newer_ones() {
    let redis = Redis::start();
    let c = cluster(&[&redis], LONG);
    let short = cluster(&[&redis], Duration::from_millis(200));
    let (dead, b, c_edge) = (
        Incarnation::new("edge-a"),
        Incarnation::new("edge-b"),
        Incarnation::new("edge-c"),
    );
    // Three sessions of the soon dead edge: one whose lock expired and
    // went to a newer session, one whose lock just expired, one whose lock
    // it still holds. (The long lock last: each acquisition sets the
    // records' expiry to its lock's TTL.)
    let (taken, expired, held) = (pair(), pair(), pair());
    let taken_old = short
        .locks
        .acquire(&dead, taken.0, taken.1)
        .await
        .expect("free");
    let expired_old = short
        .locks
        .acquire(&dead, expired.0, expired.1)
        .await
        .expect("free");
    let held_old = c.locks.acquire(&dead, held.0, held.1).await.expect("free");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let newer = c
        .locks
        .acquire(&b, taken.0, taken.1)
        .await
        .expect("expired, so free");
    c.registry
        .register(&[taken, expired, held])
        .await
        .expect("registered");
    for edge in [&dead, &b, &c_edge] {
        assert_eq!(c.edges.beat(edge).await, Beat::Alive);
    }
    assert!(
        c.edges.silent(&b).await.expect("answers").is_empty(),
        "everyone beats"
    );

    // The edge stops beating; b keeps on.
    let found_in = until_silent(&c.edges, &b, &dead).await;
    assert!(
        !c.edges
            .silent(&dead)
            .await
            .expect("answers")
            .contains(&dead),
        "an edge never watches itself"
    );
    println!("silent after {found_in:?} (dead_after {DEAD_AFTER:?})");
    let (by_b, by_c) = tokio::join!(c.edges.claim(&dead, &b), c.edges.claim(&dead, &c_edge));
    assert!(by_b ^ by_c, "exactly one survivor claims it: {by_b} {by_c}");
    let (me, other) = if by_b { (&b, &c_edge) } else { (&c_edge, &b) };
    assert!(!c.edges.claim(&dead, other).await, "claimed already");

    // Declared dead: it beats no more, takes no lock.
    assert_eq!(c.edges.beat(&dead).await, Beat::DeclaredDead);
    assert!(matches!(
        c.locks
            .acquire(&dead, UserId::random(), ProfileId::random())
            .await,
        Err(LockError::HolderDead)
    ));

    let mut records = c.edges.sessions_of(&dead).await.expect("records");
    records.sort_by_key(|l| l.fence);
    let by_fence = |l: &Lock| (l.user, l.profile, l.fence);
    assert_eq!(
        records.iter().map(by_fence).collect::<Vec<_>>(),
        [&taken_old, &expired_old, &held_old]
            .into_iter()
            .map(by_fence)
            .collect::<Vec<_>>(),
        "every lock it took, with its fence"
    );
    let outcomes = c.locks.take_over(&records).await;
    assert_eq!(outcomes, [Refresh::Lost, Refresh::Held, Refresh::Held]);
    for (user, profile) in [expired, held] {
        assert!(
            matches!(
                c.locks.acquire(&b, user, profile).await,
                Err(LockError::Busy)
            ),
            "held for the leave"
        );
    }
    // The dead edge's own refresh finds what the survivor holds for it
    // (its token) but never the newer session's.
    assert_eq!(
        c.locks.refresh(std::slice::from_ref(&taken_old)).await,
        [Refresh::Lost]
    );

    c.locks.release(&records).await;
    c.edges.forget(&dead, me).await;
    for (user, profile) in [expired, held] {
        c.locks
            .acquire(&b, user, profile)
            .await
            .expect("released: free");
        assert!(
            c.registry.launched(user).await.expect("read").is_empty(),
            "its registry entry went with it"
        );
    }
    assert!(
        matches!(
            c.locks.acquire(&b, taken.0, taken.1).await,
            Err(LockError::Busy)
        ),
        "the newer session kept its lock"
    );
    assert_eq!(
        c.registry.launched(taken.0).await.expect("read"),
        [taken.1],
        "and its registry entry"
    );
    assert!(
        !c.edges.silent(&b).await.expect("answers").contains(&dead),
        "forgotten"
    );
    assert!(c.edges.sessions_of(&dead).await.expect("read").is_empty());
    // The old holder's refresh of a reaped lock neither extends it nor
    // brings its registry entry back.
    assert_eq!(
        c.locks.refresh(std::slice::from_ref(&held_old)).await,
        [Refresh::Lost]
    );
    c.locks.release(std::slice::from_ref(&newer)).await;
    assert!(c.registry.launched(taken.0).await.expect("read").is_empty());
}

#[tokio::test]
async fn a_refresh_keeps_registry_entries_only_while_the_lock_is_ours() {
    let redis = Redis::start();
    let c = cluster(&[&redis], Duration::from_millis(300));
    let me = Incarnation::new("edge-a");
    let (user, profile) = pair();
    let lock = c.locks.acquire(&me, user, profile).await.expect("free");
    c.registry
        .register(&[(user, profile)])
        .await
        .expect("registered");
    let mut conn = raw(&redis).await;
    let launched = format!("{PREFIX}:launched:{user}");
    let _: () = redis::cmd("DEL")
        .arg(&launched)
        .query_async(&mut conn)
        .await
        .expect("del");
    assert_eq!(
        c.locks.refresh(std::slice::from_ref(&lock)).await,
        [Refresh::Held]
    );
    assert_eq!(
        c.registry.launched(user).await.expect("read"),
        [profile],
        "the refresh re-added the entry"
    );
    // Another takes the pair after the lock expired: the old holder's
    // refresh no longer re-adds anything, and its release leaves the
    // newer session's entry alone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = Incarnation::new("edge-b");
    let newer = c
        .locks
        .acquire(&other, user, profile)
        .await
        .expect("expired");
    let _: () = redis::cmd("DEL")
        .arg(&launched)
        .query_async(&mut conn)
        .await
        .expect("del");
    assert_eq!(
        c.locks.refresh(std::slice::from_ref(&lock)).await,
        [Refresh::Lost]
    );
    assert!(c.registry.launched(user).await.expect("read").is_empty());
    c.registry
        .register(&[(user, profile)])
        .await
        .expect("registered");
    c.locks.release(std::slice::from_ref(&lock)).await;
    assert_eq!(c.registry.launched(user).await.expect("read"), [profile]);
    c.locks.release(std::slice::from_ref(&newer)).await;
    assert!(c.registry.launched(user).await.expect("read").is_empty());
}

#[tokio::test]
async fn an_edge_that_stops_cleanly_leaves_nothing_to_reap() {
    let redis = Redis::start();
    let c = cluster(&[&redis], LONG);
    let (a, b, watcher) = (
        Incarnation::new("edge-a"),
        Incarnation::new("edge-b"),
        Incarnation::new("edge-w"),
    );
    c.edges.beat(&a).await;
    c.edges.beat(&b).await;
    let released = c
        .locks
        .acquire(&a, UserId::random(), ProfileId::random())
        .await
        .expect("free");
    c.locks.release(std::slice::from_ref(&released)).await;
    c.locks
        .acquire(&b, UserId::random(), ProfileId::random())
        .await
        .expect("free");
    c.edges.retire(&a).await;
    c.edges.retire(&b).await;
    assert_eq!(
        c.edges.silent(&watcher).await.expect("answers"),
        [b],
        "a released everything and is gone; b left a lock behind, to reap at once"
    );
}

#[tokio::test]
async fn with_three_servers_a_heartbeat_counts_on_a_majority() {
    let (x, y, z) = (Redis::start(), Redis::start(), Redis::start());
    let c = cluster(&[&x, &y, &z], LONG);
    // A long heartbeat: only what the test removes goes.
    let edges = Edges::new(
        Nodes::new(&RedisSettings {
            urls: vec![x.url(), y.url(), z.url()],
            timeout_ms: Duration::from_millis(300),
            ..RedisSettings::default()
        })
        .expect("urls"),
        PREFIX,
        LONG,
        LONG,
    );
    let (a, me) = (Incarnation::new("edge-a"), Incarnation::new("edge-b"));
    assert_eq!(edges.beat(&a).await, Beat::Alive);
    let (user, profile) = pair();
    let lock = c.locks.acquire(&a, user, profile).await.expect("free");
    let alive = format!("{PREFIX}:edge:{a}:alive");
    let drop_heartbeat = |server: &Redis| {
        let alive = alive.clone();
        let url = server.url();
        async move {
            let mut conn = redis::Client::open(url)
                .expect("url")
                .get_multiplexed_async_connection()
                .await
                .expect("up");
            let _: () = redis::cmd("DEL")
                .arg(alive)
                .query_async(&mut conn)
                .await
                .expect("del");
        }
    };

    drop_heartbeat(&z).await;
    assert!(
        edges.silent(&me).await.expect("answers").is_empty(),
        "beating on two of three: alive"
    );
    assert!(!edges.claim(&a, &me).await, "nor can it be claimed");
    assert_eq!(
        edges.beat(&a).await,
        Beat::Alive,
        "a minority claim was given back"
    );

    drop_heartbeat(&z).await;
    drop_heartbeat(&y).await;
    assert_eq!(
        edges.silent(&me).await.expect("answers"),
        std::slice::from_ref(&a)
    );
    drop(x); // killed: the claim needs y and z
    assert!(edges.claim(&a, &me).await, "y and z make a majority");
    assert_eq!(edges.beat(&a).await, Beat::DeclaredDead);
    let records = edges.sessions_of(&a).await.expect("y and z answer");
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].user, records[0].profile), (user, profile));
    assert_eq!(records[0].fence, lock.fence);
    assert_eq!(c.locks.take_over(&records).await, [Refresh::Held]);
    c.locks.release(&records).await;
    c.locks
        .acquire(&me, user, profile)
        .await
        .expect("released on y and z: a majority");

    drop(y); // one of three left: nothing can be decided
    assert!(
        edges.silent(&me).await.is_err(),
        "one server is no majority"
    );
    assert_eq!(edges.beat(&me).await, Beat::Unknown);
}
