//! The live-session lock against a real Redis.

use std::time::Duration;

use rill_domain::{ProfileId, UserId};
use rill_sessions::LockManager;
use rill_testkit::redis::Redis;

async fn locks(redis: &Redis, ttl: Duration) -> LockManager {
    LockManager::connect(&redis.url(), "test", ttl)
        .await
        .expect("connect")
}

#[tokio::test]
async fn one_holder_per_pair_until_released() {
    let redis = Redis::start();
    let (a, b) = (
        locks(&redis, Duration::from_secs(30)).await,
        locks(&redis, Duration::from_secs(30)).await,
    );
    let (user, profile) = (UserId::random(), ProfileId::random());
    let first = a
        .acquire(user, profile)
        .await
        .expect("redis")
        .expect("free");
    assert!(
        b.acquire(user, profile).await.expect("redis").is_none(),
        "held by a"
    );
    assert!(
        b.acquire(user, ProfileId::random())
            .await
            .expect("redis")
            .is_some(),
        "other pairs are free"
    );
    assert!(a.release(&first).await.expect("redis"));
    assert!(!a.release(&first).await.expect("redis"), "already released");
    let second = b
        .acquire(user, profile)
        .await
        .expect("redis")
        .expect("free again");
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
    let short = locks(&redis, Duration::from_millis(300)).await;
    let (user, profile) = (UserId::random(), ProfileId::random());
    let old = short
        .acquire(user, profile)
        .await
        .expect("redis")
        .expect("free");
    assert!(
        short.refresh(&old).await.expect("redis"),
        "a held lock refreshes"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let new = short
        .acquire(user, profile)
        .await
        .expect("redis")
        .expect("expired, so free");
    assert!(
        !short.refresh(&old).await.expect("redis"),
        "the old holder lost it"
    );
    assert!(
        !short.release(&old).await.expect("redis"),
        "and cannot release the new one"
    );
    assert!(
        short.acquire(user, profile).await.expect("redis").is_none(),
        "the new holder still has it"
    );
    assert!(short.release(&new).await.expect("redis"));
}
