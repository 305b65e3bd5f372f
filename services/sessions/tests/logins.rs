//! Logins against real Redis servers: started, checked, ended one by one
//! and all at once, and a majority needed when there are several servers.

use std::time::Duration;

use rill_domain::{LoginId, UserId};
use rill_sessions::{Logins, Nodes, RedisSettings};
use rill_testkit::redis::Redis;

fn logins(servers: &[&Redis], ttl: Duration) -> Logins {
    let settings = RedisSettings {
        urls: servers.iter().map(|redis| redis.url()).collect(),
        ..RedisSettings::default()
    };
    Logins::new(Nodes::new(&settings).expect("nodes"), "test", ttl)
}

#[tokio::test]
async fn a_login_is_live_until_it_is_ended() {
    let redis = Redis::start();
    let logins = logins(&[&redis], Duration::from_secs(60));
    let ada = UserId::random();
    let first = logins.start(ada).await.expect("started");
    let second = logins.start(ada).await.expect("started");
    assert!(logins.is_live(ada, first).await.expect("read"));
    assert!(
        !logins.is_live(ada, LoginId::random()).await.expect("read"),
        "a login never started is not live"
    );
    assert!(
        !logins.is_live(UserId::random(), first).await.expect("read"),
        "a login is live only for its own user"
    );

    logins.end(ada, first).await.expect("ended");
    assert!(!logins.is_live(ada, first).await.expect("read"));
    assert!(
        logins.is_live(ada, second).await.expect("read"),
        "the other login goes on"
    );
}

#[tokio::test]
async fn logging_out_everywhere_ends_every_earlier_login_and_no_later_one() {
    let redis = Redis::start();
    let logins = logins(&[&redis], Duration::from_secs(60));
    let (ada, bob) = (UserId::random(), UserId::random());
    let earlier = [
        logins.start(ada).await.expect("started"),
        logins.start(ada).await.expect("started"),
    ];
    let bobs = logins.start(bob).await.expect("started");
    logins.end_all(ada).await.expect("ended");
    let later = logins.start(ada).await.expect("started");
    for login in earlier {
        assert!(!logins.is_live(ada, login).await.expect("read"));
    }
    assert!(logins.is_live(ada, later).await.expect("read"));
    assert!(logins.is_live(bob, bobs).await.expect("read"), "only ada's");
}

#[tokio::test]
async fn a_login_expires_with_its_cookie() {
    let redis = Redis::start();
    let logins = logins(&[&redis], Duration::from_millis(300));
    let ada = UserId::random();
    let login = logins.start(ada).await.expect("started");
    assert!(logins.is_live(ada, login).await.expect("read"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while logins.is_live(ada, login).await.expect("read") {
        assert!(
            std::time::Instant::now() < deadline,
            "still live 10 s after a 300 ms lifetime"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_three_servers_a_majority_decides() {
    let [a, b, c] = [Redis::start(), Redis::start(), Redis::start()];
    let logins = logins(&[&a, &b, &c], Duration::from_secs(60));
    let ada = UserId::random();
    let login = logins.start(ada).await.expect("started on three");

    // One server paused (it keeps what it has): two of three still say
    // live, and an end still reaches a majority.
    c.process.pause();
    assert!(logins.is_live(ada, login).await.expect("two answer"));
    logins.end(ada, login).await.expect("ended on two");
    c.process.resume();
    assert!(
        !logins.is_live(ada, login).await.expect("three answer"),
        "the server that missed the end cannot bring the login back alone"
    );

    // Two servers paused: no majority, an error rather than a guess.
    b.process.pause();
    c.process.pause();
    assert!(logins.start(ada).await.is_err());
    assert!(logins.is_live(ada, login).await.is_err());
    b.process.resume();
    c.process.resume();
}

#[tokio::test]
async fn failed_logins_are_counted_in_a_window_and_cleared() {
    let redis = Redis::start();
    let logins = logins(&[&redis], Duration::from_secs(60));
    assert_eq!(logins.failures("ada").await.expect("read").0, 0);
    let window = Duration::from_secs(300);
    for _ in 0..3 {
        logins.count_failure("ada", window).await.expect("counted");
    }
    let (count, left) = logins.failures("ada").await.expect("read");
    assert_eq!(count, 3);
    assert!(
        left > Duration::from_secs(290) && left <= window,
        "the window runs from the first failure: {left:?}"
    );
    assert_eq!(logins.failures("bob").await.expect("read").0, 0, "per key");
    logins.clear_failures("ada").await.expect("cleared");
    assert_eq!(logins.failures("ada").await.expect("read").0, 0);
}
