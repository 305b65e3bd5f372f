//! Redis over TLS with an ACL user (issue 16.4): a server started with
//! certificates the test made, no plaintext port and its `default` user
//! off. Locks work over `rediss://user:password@…` checked against the
//! test's CA; a wrong password, a plaintext client and a client that
//! trusts another CA are refused.

use std::time::Duration;

use rill_domain::{ProfileId, UserId};
use rill_sessions::{Incarnation, LockError, LockManager, Nodes, RedisSettings, SessionsError};
use rill_testkit::certs::TestCerts;
use rill_testkit::redis::Redis;

const USER: &str = "rill-edge";
const PASSWORD: &str = "acl-test-password";

fn settings(url: String, ca_file: String) -> RedisSettings {
    RedisSettings {
        urls: vec![url],
        ca_file,
        timeout_ms: Duration::from_secs(2),
        ..RedisSettings::default()
    }
}

/// What a PING through `settings` gets: Ok, or the error's text.
async fn ping(settings: &RedisSettings) -> Result<(), String> {
    let nodes = Nodes::new(settings).map_err(|e| e.to_string())?;
    let answer = nodes
        .on_each(|mut conn| async move { redis::cmd("PING").query_async::<()>(&mut conn).await })
        .await
        .pop()
        .expect("one server");
    answer.map_err(|e| e.to_string())
}

#[tokio::test]
async fn locks_work_over_tls_with_an_acl_user_and_others_are_refused() {
    let certs = TestCerts::new();
    let redis = Redis::start_tls(&certs, USER, PASSWORD);
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let ca = certs.ca().display().to_string();
    let good = settings(url.clone(), ca.clone());
    good.validate().expect("valid settings");
    assert!(!format!("{good:?}").contains(PASSWORD), "{good:?}");

    let nodes = rill_sessions::connect(&good).await.expect("connects");
    let locks = LockManager::new(nodes, "tls-test", Duration::from_secs(30));
    let me = Incarnation::new("tls-test");
    let (user, profile) = (UserId::random(), ProfileId::random());
    let lock = locks.acquire(&me, user, profile).await.expect("free");
    assert!(
        matches!(
            locks.acquire(&me, user, profile).await,
            Err(LockError::Busy)
        ),
        "held"
    );
    locks.release(std::slice::from_ref(&lock)).await;
    locks
        .acquire(&me, user, profile)
        .await
        .expect("free again after release");

    let wrong_password = url.replace(PASSWORD, "not-the-password");
    let err = ping(&settings(wrong_password.clone(), ca.clone()))
        .await
        .expect_err("a wrong password is refused");
    assert!(err.contains("Password authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    assert!(
        matches!(
            rill_sessions::connect(&settings(wrong_password, ca.clone())).await,
            Err(SessionsError::NoQuorum { up: 0, .. })
        ),
        "a service does not start with a wrong password"
    );

    let plaintext = format!("redis://{USER}:{PASSWORD}@{}", redis.addr);
    ping(&settings(plaintext, String::new()))
        .await
        .expect_err("a plaintext client is refused");

    let other_ca = certs.other_ca().display().to_string();
    let err = ping(&settings(url.clone(), other_ca))
        .await
        .expect_err("a server certificate from another CA is refused");
    assert!(err.contains("certificate verify failed"), "{err}");

    // The default user is off: TLS alone does not let anyone in.
    let anonymous = format!("rediss://{}", redis.addr);
    let err = ping(&settings(anonymous, ca))
        .await
        .expect_err("no anonymous user");
    assert!(err.contains("NOAUTH"), "{err}");
}
