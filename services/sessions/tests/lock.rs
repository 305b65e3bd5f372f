//! The live-session lock against real Redis servers: one, and three
//! independent ones (Redlock) of which some are killed.

use std::time::Duration;

use rill_domain::{ProfileId, UserId};
use rill_sessions::{Incarnation, LockError, LockManager, Nodes, RedisSettings, Refresh};
use rill_testkit::redis::Redis;

fn locks(servers: &[&Redis], ttl: Duration) -> LockManager {
    let settings = RedisSettings {
        urls: servers.iter().map(|r| r.url()).collect(),
        timeout_ms: std::time::Duration::from_millis(300),
        ..RedisSettings::default()
    };
    LockManager::new(Nodes::new(&settings).expect("urls"), "test", ttl)
}

/// The edge incarnation that holds the tests' locks.
static ME: std::sync::LazyLock<Incarnation> = std::sync::LazyLock::new(|| Incarnation::new("test"));

fn pair() -> (UserId, ProfileId) {
    (UserId::random(), ProfileId::random())
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn one_holder_per_pair_until_released() {
    let redis = Redis::start();
    let (a, b) = (locks(&[&redis], LONG), locks(&[&redis], LONG));
    let (user, profile) = pair();
    let first = a.acquire(&ME, user, profile).await.expect("free");
    assert!(
        matches!(b.acquire(&ME, user, profile).await, Err(LockError::Busy)),
        "held by a"
    );
    b.acquire(&ME, user, ProfileId::random())
        .await
        .expect("other pairs are free");
    a.release(std::slice::from_ref(&first)).await;
    let second = b.acquire(&ME, user, profile).await.expect("free again");
    assert!(
        second.fence > first.fence,
        "fencing numbers grow: {} then {}",
        first.fence,
        second.fence
    );
}

#[tokio::test]
async fn an_expired_lock_can_be_taken_and_the_old_holder_cannot_touch_it() {
    let redis = Redis::start();
    let short = locks(&[&redis], Duration::from_millis(300));
    let (user, profile) = pair();
    let old = short.acquire(&ME, user, profile).await.expect("free");
    assert_eq!(
        short.refresh(std::slice::from_ref(&old)).await,
        [Refresh::Held]
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let new = short
        .acquire(&ME, user, profile)
        .await
        .expect("expired, so free");
    assert_eq!(
        short.refresh(&[old.clone(), new.clone()]).await,
        [Refresh::Lost, Refresh::Held],
        "the old holder lost it, the new one holds it"
    );
    short.release(std::slice::from_ref(&old)).await;
    assert!(
        matches!(
            short.acquire(&ME, user, profile).await,
            Err(LockError::Busy)
        ),
        "releasing the old lock left the new one alone"
    );
}

#[tokio::test]
async fn a_majority_of_three_servers_is_enough_and_needed() {
    let (a, b, c) = (Redis::start(), Redis::start(), Redis::start());
    let locks = locks(&[&a, &b, &c], LONG);
    let (user, profile) = pair();
    let held = locks
        .acquire(&ME, user, profile)
        .await
        .expect("all three up");

    drop(a); // killed
    let (user2, profile2) = pair();
    let second = locks
        .acquire(&ME, user2, profile2)
        .await
        .expect("two of three still make a majority");
    assert!(second.fence > held.fence);
    assert!(
        matches!(
            locks.acquire(&ME, user, profile).await,
            Err(LockError::Busy)
        ),
        "the lock taken on three servers still holds on the two left"
    );
    assert_eq!(
        locks.refresh(std::slice::from_ref(&held)).await,
        [Refresh::Held]
    );

    drop(b); // killed: one of three left
    let refused = locks
        .acquire(&ME, UserId::random(), ProfileId::random())
        .await;
    assert!(
        matches!(
            refused,
            Err(LockError::NoQuorum {
                granted_or_busy: 1,
                servers: 3,
                needed: 2
            })
        ),
        "one server of three must not grant a lock: {refused:?}"
    );
    assert_eq!(
        locks.refresh(std::slice::from_ref(&held)).await,
        [Refresh::Unknown],
        "one server cannot confirm a lock either"
    );
    let c_key_count = {
        let client = redis::Client::open(c.url()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("c is up");
        redis::cmd("KEYS")
            .arg("test:lock:*")
            .query_async::<Vec<String>>(&mut conn)
            .await
            .expect("keys")
            .len()
    };
    assert_eq!(c_key_count, 2, "the refused attempt left no lock behind");
}

#[tokio::test]
async fn fences_grow_when_the_majority_changes_and_servers_lose_their_data() {
    let (a, b, c) = (Redis::start(), Redis::start(), Redis::start());
    let (a_addr, c_addr) = (a.addr, c.addr);
    let locks = locks(&[&a, &b, &c], LONG);
    let (user, profile) = pair();
    let first = locks.acquire(&ME, user, profile).await.expect("all up");
    locks.release(std::slice::from_ref(&first)).await;

    drop(a);
    let second = locks.acquire(&ME, user, profile).await.expect("b and c");
    locks.release(std::slice::from_ref(&second)).await;
    assert!(second.fence > first.fence);

    // a and c come back empty (no persistence), b dies: the new majority
    // has never seen the counters of the last acquisition.
    let _a = Redis::start_on(a_addr);
    drop(c);
    let _c = Redis::start_on(c_addr);
    drop(b);
    // Connections to restarted servers come back on the next command after
    // a failed one, as for any client: try a few times.
    let mut third = locks.acquire(&ME, user, profile).await;
    for _ in 0..20 {
        if third.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        third = locks.acquire(&ME, user, profile).await;
    }
    let third = third.expect("a and c, empty");
    assert!(
        third.fence > second.fence,
        "fences never go back: {} after {}",
        third.fence,
        second.fence
    );
}

#[tokio::test]
async fn many_locks_are_released_in_one_call_and_only_our_own() {
    let redis = Redis::start();
    let long = locks(&[&redis], LONG);
    let short = locks(&[&redis], Duration::from_millis(300));
    let (user, profile) = pair();
    let stale = short.acquire(&ME, user, profile).await.expect("free");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let _theirs = long
        .acquire(&ME, user, profile)
        .await
        .expect("expired, so free");
    // More locks than one script call takes, and one that is no longer ours.
    let mut batch = vec![stale];
    for _ in 0..600 {
        let (u, p) = pair();
        batch.push(long.acquire(&ME, u, p).await.expect("free"));
    }
    long.release(&batch).await;
    for lock in &batch[1..] {
        long.acquire(&ME, lock.user, lock.profile)
            .await
            .expect("released, so free");
    }
    assert!(
        matches!(long.acquire(&ME, user, profile).await, Err(LockError::Busy)),
        "a stale token does not release the current holder's lock"
    );
}

/// The keys of one lock's holder record and the pair's lock, as the
/// scripts name them (prefix `test`).
fn lock_key(user: UserId, profile: ProfileId) -> String {
    format!("test:lock:{user}:{profile}")
}

async fn raw(redis: &Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("the server is up")
}

#[tokio::test]
async fn a_lock_its_server_lost_is_taken_again_by_the_refresh_unless_its_holder_is_dead() {
    let mut redis = Redis::start();
    let locks = locks(&[&redis], LONG);
    let (user, profile) = pair();
    let lock = locks.acquire(&ME, user, profile).await.expect("free");
    let dead = Incarnation::new("dead");
    let (dead_user, dead_profile) = pair();
    let dead_lock = locks
        .acquire(&dead, dead_user, dead_profile)
        .await
        .expect("free");

    // The server restarts without its data.
    redis.start_again();
    let both = [lock.clone(), dead_lock.clone()];
    let mut outcomes = locks.refresh(&both).await;
    // The connection comes back with the command after a failed one.
    for _ in 0..20 {
        if outcomes != [Refresh::Unknown, Refresh::Unknown] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        outcomes = locks.refresh(&both).await;
    }
    assert_eq!(outcomes[0], Refresh::Held, "taken again");
    assert!(
        matches!(
            locks.acquire(&ME, user, profile).await,
            Err(LockError::Busy)
        ),
        "the lock holds again: {outcomes:?}"
    );
    let mut conn = raw(&redis).await;
    let record: Option<String> = redis::cmd("HGET")
        .arg(format!("test:edge:{}:sessions", ME.as_str()))
        .arg(format!("{:032x}", lock_token(&mut conn, &lock).await))
        .query_async(&mut conn)
        .await
        .expect("hget");
    assert_eq!(
        record,
        Some(format!("{user}:{profile}:{}", lock.fence)),
        "with its holder's record, for a survivor should the edge die"
    );

    // A lock of an incarnation declared dead (by a survivor, which freed
    // it) is not taken again.
    let _: () = redis::cmd("SET")
        .arg(format!("test:edge:{}:dead", dead.as_str()))
        .arg("1")
        .query_async(&mut conn)
        .await
        .expect("mark dead");
    let _: () = redis::cmd("DEL")
        .arg(lock_key(dead_user, dead_profile))
        .query_async(&mut conn)
        .await
        .expect("del");
    assert_eq!(
        locks.refresh(std::slice::from_ref(&dead_lock)).await,
        [Refresh::Lost]
    );
    let exists: bool = redis::cmd("EXISTS")
        .arg(lock_key(dead_user, dead_profile))
        .query_async(&mut conn)
        .await
        .expect("exists");
    assert!(!exists, "a dead holder's lock stays free");
}

/// The token a lock holds on the server, as a number.
async fn lock_token(
    conn: &mut redis::aio::MultiplexedConnection,
    lock: &rill_sessions::Lock,
) -> u128 {
    let text: String = redis::cmd("GET")
        .arg(lock_key(lock.user, lock.profile))
        .query_async(conn)
        .await
        .expect("the lock is there");
    u128::from_str_radix(&text, 16).expect("a hex token")
}

#[tokio::test]
async fn an_acquisition_a_paused_server_runs_late_leaves_no_lock_behind() {
    let redis = Redis::start();
    let locks = locks(&[&redis], LONG);
    let (user, profile) = pair();
    // The server has never released a lock (no release script of its own).
    redis.process.pause();
    let refused = locks.acquire(&ME, user, profile).await;
    assert!(
        matches!(refused, Err(LockError::NoQuorum { .. })),
        "{refused:?}"
    );
    redis.process.resume();
    // The acquisition ran when the server woke; the release queued behind
    // it frees the lock, long before its TTL.
    let since = std::time::Instant::now();
    loop {
        match locks.acquire(&ME, user, profile).await {
            Ok(_) => break,
            Err(err) => assert!(
                since.elapsed() < Duration::from_secs(10),
                "the late acquisition still holds the lock: {err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
