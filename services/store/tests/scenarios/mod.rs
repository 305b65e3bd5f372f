//! The scenarios of the store contract, written once for every backend.
//! Accounts in `accounts`, message history in `history`.

mod accounts;
mod history;

pub use accounts::*;
pub use history::*;

use std::collections::HashSet;

use rill_domain::{DirectoryChange, DirectoryEvent, Name, Profile, ProfileId, User, UserId};
use rill_store::{PageRequest, Store};

fn user(name: &str) -> User {
    User {
        id: UserId::random(),
        name: Name::parse(name).expect("name"),
        created_at_ms: 1,
        test_data: false,
    }
}

fn profile(name: &str) -> Profile {
    Profile {
        id: ProfileId::random(),
        name: Name::parse(name).expect("name"),
        created_at_ms: 1,
        test_data: false,
    }
}

async fn apply(store: &dyn Store, changes: Vec<DirectoryChange>) {
    let events: Vec<DirectoryEvent> = changes
        .into_iter()
        .map(|c| DirectoryEvent::new(c, 0))
        .collect();
    store.apply(&events).await.expect("apply");
}

pub async fn users_are_upserted_read_and_deleted_idempotently(store: &dyn Store) {
    let mut ada = user("Ada");
    apply(store, vec![DirectoryChange::UserUpserted(ada.clone())]).await;
    apply(store, vec![DirectoryChange::UserUpserted(ada.clone())]).await;
    assert_eq!(store.user(ada.id).await.expect("read"), Some(ada.clone()));

    ada.name = Name::parse("Ada L.").expect("name");
    apply(store, vec![DirectoryChange::UserUpserted(ada.clone())]).await;
    assert_eq!(
        store.user(ada.id).await.expect("read").map(|u| u.name),
        Some(ada.name.clone())
    );

    apply(store, vec![DirectoryChange::UserDeleted(ada.id)]).await;
    apply(store, vec![DirectoryChange::UserDeleted(ada.id)]).await;
    assert_eq!(store.user(ada.id).await.expect("read"), None);
    assert_eq!(store.user(UserId::random()).await.expect("read"), None);
}

pub async fn user_pages_cover_every_user_once(store: &dyn Store) {
    let users: Vec<User> = (0..23).map(|i| user(&format!("u{i}"))).collect();
    apply(
        store,
        users
            .iter()
            .cloned()
            .map(DirectoryChange::UserUpserted)
            .collect(),
    )
    .await;
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = store
            .users(PageRequest { after, limit: 10 })
            .await
            .expect("page");
        assert!(page.items.len() <= 10);
        seen.extend(page.items.iter().map(|u| u.id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let distinct: HashSet<UserId> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "no user twice");
    assert_eq!(
        distinct,
        users.iter().map(|u| u.id).collect::<HashSet<_>>(),
        "every user"
    );
}

pub async fn profiles_are_upserted_read_and_deleted(store: &dyn Store) {
    let room = profile("Room");
    apply(store, vec![DirectoryChange::ProfileUpserted(room.clone())]).await;
    assert_eq!(
        store.profile(room.id).await.expect("read"),
        Some(room.clone())
    );
    apply(store, vec![DirectoryChange::ProfileDeleted(room.id)]).await;
    assert_eq!(store.profile(room.id).await.expect("read"), None);
}

pub async fn profile_pages_cover_every_profile_once(store: &dyn Store) {
    let profiles: Vec<Profile> = (0..12).map(|i| profile(&format!("p{i}"))).collect();
    apply(
        store,
        profiles
            .iter()
            .cloned()
            .map(DirectoryChange::ProfileUpserted)
            .collect(),
    )
    .await;
    let first = store
        .profiles(PageRequest {
            after: None,
            limit: 5,
        })
        .await
        .expect("page");
    let second = store
        .profiles(PageRequest {
            after: first.next,
            limit: 5,
        })
        .await
        .expect("page");
    let third = store
        .profiles(PageRequest {
            after: second.next,
            limit: 5,
        })
        .await
        .expect("page");
    assert_eq!(
        (first.items.len(), second.items.len(), third.items.len()),
        (5, 5, 2)
    );
    assert_eq!(third.next, None);
    let seen: HashSet<ProfileId> = first
        .items
        .iter()
        .chain(&second.items)
        .chain(&third.items)
        .map(|p| p.id)
        .collect();
    assert_eq!(seen, profiles.iter().map(|p| p.id).collect::<HashSet<_>>());
}

pub async fn binding_and_unbinding(store: &dyn Store) {
    let (ada, bob) = (user("Ada"), user("Bob"));
    let (r1, r2) = (profile("r1"), profile("r2"));
    apply(
        store,
        vec![
            DirectoryChange::UserUpserted(ada.clone()),
            DirectoryChange::UserUpserted(bob.clone()),
            DirectoryChange::ProfileUpserted(r1.clone()),
            DirectoryChange::ProfileUpserted(r2.clone()),
            DirectoryChange::Bound {
                user: ada.id,
                profile: r1.id,
            },
            DirectoryChange::Bound {
                user: ada.id,
                profile: r1.id,
            },
            DirectoryChange::Bound {
                user: ada.id,
                profile: r2.id,
            },
            DirectoryChange::Bound {
                user: bob.id,
                profile: r1.id,
            },
        ],
    )
    .await;
    assert!(store.is_member(ada.id, r1.id).await.expect("read"));
    assert!(!store.is_member(bob.id, r2.id).await.expect("read"));
    let of_ada: HashSet<ProfileId> = store
        .profiles_of(ada.id, 10)
        .await
        .expect("read")
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(of_ada, HashSet::from([r1.id, r2.id]));
    assert_eq!(
        store.profiles_of(ada.id, 1).await.expect("read").len(),
        1,
        "the limit holds"
    );

    apply(
        store,
        vec![DirectoryChange::Unbound {
            user: ada.id,
            profile: r1.id,
        }],
    )
    .await;
    assert!(!store.is_member(ada.id, r1.id).await.expect("read"));
    assert!(
        store.is_member(bob.id, r1.id).await.expect("read"),
        "others stay bound"
    );
    let of_ada: Vec<ProfileId> = store
        .profiles_of(ada.id, 10)
        .await
        .expect("read")
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(of_ada, vec![r2.id]);
}

pub async fn binding_unknown_users_or_profiles_is_ignored(store: &dyn Store) {
    let ada = user("Ada");
    let room = profile("Room");
    let ghost_user = UserId::random();
    let ghost_profile = ProfileId::random();
    apply(
        store,
        vec![
            DirectoryChange::UserUpserted(ada.clone()),
            DirectoryChange::ProfileUpserted(room.clone()),
            DirectoryChange::Bound {
                user: ghost_user,
                profile: room.id,
            },
            DirectoryChange::Bound {
                user: ada.id,
                profile: ghost_profile,
            },
        ],
    )
    .await;
    assert!(!store.is_member(ghost_user, room.id).await.expect("read"));
    assert!(!store.is_member(ada.id, ghost_profile).await.expect("read"));
    assert!(
        store
            .profiles_of(ada.id, 10)
            .await
            .expect("read")
            .is_empty()
    );
    let members = store
        .members_of(
            room.id,
            PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .expect("read");
    assert!(members.items.is_empty());
}

pub async fn deleting_a_user_or_profile_removes_its_memberships(store: &dyn Store) {
    let (ada, bob) = (user("Ada"), user("Bob"));
    let (r1, r2) = (profile("r1"), profile("r2"));
    apply(
        store,
        vec![
            DirectoryChange::UserUpserted(ada.clone()),
            DirectoryChange::UserUpserted(bob.clone()),
            DirectoryChange::ProfileUpserted(r1.clone()),
            DirectoryChange::ProfileUpserted(r2.clone()),
            DirectoryChange::Bound {
                user: ada.id,
                profile: r1.id,
            },
            DirectoryChange::Bound {
                user: bob.id,
                profile: r1.id,
            },
            DirectoryChange::Bound {
                user: bob.id,
                profile: r2.id,
            },
            DirectoryChange::UserDeleted(ada.id),
            DirectoryChange::ProfileDeleted(r2.id),
        ],
    )
    .await;
    assert!(!store.is_member(ada.id, r1.id).await.expect("read"));
    assert!(!store.is_member(bob.id, r2.id).await.expect("read"));
    let members = store
        .members_of(
            r1.id,
            PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .expect("read");
    assert_eq!(members.items, vec![bob.id]);
    let of_bob: Vec<ProfileId> = store
        .profiles_of(bob.id, 10)
        .await
        .expect("read")
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(of_bob, vec![r1.id]);
    // Re-creating a deleted user does not bring its memberships back.
    apply(store, vec![DirectoryChange::UserUpserted(ada.clone())]).await;
    assert!(!store.is_member(ada.id, r1.id).await.expect("read"));
}

pub async fn member_pages_cover_every_member_once(store: &dyn Store) {
    let room = profile("Room");
    let users: Vec<User> = (0..7).map(|i| user(&format!("m{i}"))).collect();
    let mut changes = vec![DirectoryChange::ProfileUpserted(room.clone())];
    changes.extend(users.iter().cloned().map(DirectoryChange::UserUpserted));
    changes.extend(users.iter().map(|u| DirectoryChange::Bound {
        user: u.id,
        profile: room.id,
    }));
    apply(store, changes).await;
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .members_of(room.id, PageRequest { after, limit: 3 })
            .await
            .expect("page");
        seen.extend(page.items.iter().copied());
        match page.next {
            Some(next) if seen.len() < 100 => after = Some(next),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(
        seen.iter().copied().collect::<HashSet<_>>(),
        users.iter().map(|u| u.id).collect()
    );
}

pub async fn suggested_users_are_bound_to_two_or_more_profiles(store: &dyn Store) {
    let (ada, bob) = (user("Ada"), user("Bob"));
    let (r1, r2) = (profile("r1"), profile("r2"));
    apply(
        store,
        vec![
            DirectoryChange::UserUpserted(ada.clone()),
            DirectoryChange::UserUpserted(bob.clone()),
            DirectoryChange::ProfileUpserted(r1.clone()),
            DirectoryChange::ProfileUpserted(r2.clone()),
            DirectoryChange::Bound {
                user: ada.id,
                profile: r1.id,
            },
            DirectoryChange::Bound {
                user: ada.id,
                profile: r2.id,
            },
            DirectoryChange::Bound {
                user: bob.id,
                profile: r1.id,
            },
        ],
    )
    .await;
    let suggested: Vec<UserId> = store
        .suggested_users(10)
        .await
        .expect("read")
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(suggested, vec![ada.id]);
    apply(
        store,
        vec![DirectoryChange::Unbound {
            user: ada.id,
            profile: r2.id,
        }],
    )
    .await;
    assert!(store.suggested_users(10).await.expect("read").is_empty());
}

pub async fn test_data_lists_only_test_data(store: &dyn Store) {
    let mut fake = user("Fake");
    fake.test_data = true;
    let real = user("Real");
    let mut fake_room = profile("Fake room");
    fake_room.test_data = true;
    apply(
        store,
        vec![
            DirectoryChange::UserUpserted(fake.clone()),
            DirectoryChange::UserUpserted(real.clone()),
            DirectoryChange::ProfileUpserted(fake_room.clone()),
            DirectoryChange::ProfileUpserted(profile("Real room")),
        ],
    )
    .await;
    let (users, profiles) = store.test_data().await.expect("read");
    assert_eq!(users, vec![fake.id]);
    assert_eq!(profiles, vec![fake_room.id]);
    apply(store, vec![DirectoryChange::UserDeleted(fake.id)]).await;
    assert!(store.test_data().await.expect("read").0.is_empty());
}
