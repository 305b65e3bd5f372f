//! The registry of live sessions against a real Redis server.

use rill_domain::{ProfileId, UserId};
use rill_sessions::{LiveSessions, RedisSettings};
use rill_testkit::redis::Redis;

#[tokio::test]
async fn many_pairs_are_registered_listed_in_part_and_unregistered() {
    let redis = Redis::start();
    let settings = RedisSettings {
        urls: vec![redis.url()],
        ..RedisSettings::default()
    };
    let redis = rill_sessions::connect(&settings).await.expect("redis");
    let live = LiveSessions::new(redis, &settings.key_prefix, settings.session_ttl_secs);
    // More pairs than one pipeline holds, over three profiles.
    let profiles = [
        ProfileId::random(),
        ProfileId::random(),
        ProfileId::random(),
    ];
    let pairs: Vec<(UserId, ProfileId)> = (0..600)
        .map(|i| (UserId::random(), profiles[i % 3]))
        .collect();
    live.register(&pairs).await.expect("registered");
    for profile in profiles {
        assert_eq!(live.live_users(profile).await.expect("read").len(), 200);
    }

    let (some, truncated) = live.some_live_users(profiles[0], 10).await.expect("read");
    assert_eq!(some.len(), 10);
    assert!(truncated, "200 live, 10 listed");
    let everyone: Vec<UserId> = pairs
        .iter()
        .filter(|(_, p)| *p == profiles[0])
        .map(|(u, _)| *u)
        .collect();
    assert!(some.iter().all(|u| everyone.contains(u)), "only live users");

    let (all, truncated) = live.some_live_users(profiles[1], 200).await.expect("read");
    assert_eq!((all.len(), truncated), (200, false), "exactly the limit");

    let (gone, staying) = pairs.split_at(550);
    live.unregister(gone).await.expect("unregistered");
    let left: usize = {
        let mut n = 0;
        for profile in profiles {
            n += live.live_users(profile).await.expect("read").len();
        }
        n
    };
    assert_eq!(left, staying.len(), "only the pairs not unregistered stay");
    assert!(live.launched(gone[0].0).await.expect("read").is_empty());
    assert_eq!(
        live.launched(staying[0].0).await.expect("read"),
        [staying[0].1]
    );
}
