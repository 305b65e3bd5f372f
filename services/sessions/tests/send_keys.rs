//! Idempotency keys against real Redis servers.

use std::time::Duration;

use rill_domain::{MessageId, UserId};
use rill_sessions::{Claim, Nodes, RedisSettings, SendKeys};
use rill_testkit::redis::Redis;

fn keys(servers: &[&Redis], window: Duration) -> SendKeys {
    let settings = RedisSettings {
        urls: servers.iter().map(|redis| redis.url()).collect(),
        ..RedisSettings::default()
    };
    SendKeys::new(Nodes::new(&settings).expect("nodes"), "test", window)
}

#[tokio::test]
async fn a_key_is_claimed_once_per_user_and_given_back_on_failure() {
    let redis = Redis::start();
    let keys = keys(&[&redis], Duration::from_secs(60));
    let (ada, bob) = (UserId::random(), UserId::random());
    let first = MessageId::now();
    assert_eq!(
        keys.claim(ada, "k1", first).await.expect("claim"),
        Claim::New
    );
    assert_eq!(
        keys.claim(ada, "k1", MessageId::now())
            .await
            .expect("claim"),
        Claim::Sent(first),
        "a retry gets the first id"
    );
    assert_eq!(
        keys.claim(bob, "k1", MessageId::now())
            .await
            .expect("claim"),
        Claim::New,
        "keys are per user"
    );
    keys.release(ada, "k1").await.expect("released");
    let again = MessageId::now();
    assert_eq!(
        keys.claim(ada, "k1", again).await.expect("claim"),
        Claim::New
    );
}

#[tokio::test]
async fn a_key_is_forgotten_after_the_window() {
    let redis = Redis::start();
    let keys = keys(&[&redis], Duration::from_millis(200));
    let ada = UserId::random();
    assert_eq!(
        keys.claim(ada, "k", MessageId::now()).await.expect("claim"),
        Claim::New
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if keys.claim(ada, "k", MessageId::now()).await.expect("claim") == Claim::New {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still claimed 10 s after a 200 ms window"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_three_servers_an_earlier_claim_on_any_wins() {
    let [a, b, c] = [Redis::start(), Redis::start(), Redis::start()];
    let keys3 = keys(&[&a, &b, &c], Duration::from_secs(60));
    let ada = UserId::random();
    let first = MessageId::now();
    c.process.pause();
    assert_eq!(
        keys3.claim(ada, "k", first).await.expect("two of three"),
        Claim::New
    );
    c.process.resume();
    assert_eq!(
        keys3
            .claim(ada, "k", MessageId::now())
            .await
            .expect("claim"),
        Claim::Sent(first)
    );
    b.process.pause();
    c.process.pause();
    assert!(
        keys3.claim(ada, "new", MessageId::now()).await.is_err(),
        "one server of three cannot grant a new key"
    );
    b.process.resume();
    c.process.resume();
}
