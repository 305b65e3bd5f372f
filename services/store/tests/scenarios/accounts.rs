//! The accounts part of the contract: unique by login key, found by login
//! and by user, rehashed, and gone with their user.

use std::sync::Arc;

use rill_domain::{DirectoryChange, UserId};
use rill_store::{Account, Store, StoreError};

use super::{apply, user};

fn account(login: &str, user: UserId, password_hash: &str) -> Account {
    Account {
        login: login.into(),
        user,
        password_hash: password_hash.into(),
        created_at_ms: 1_700_000_000_000,
    }
}

/// A PHC string of the shape the api stores.
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

pub async fn accounts_are_created_and_read_by_login_key(store: &dyn Store) {
    let ada = account("Ada", UserId::random(), HASH);
    assert!(store.create_account(&ada).await.expect("create"));
    for login in ["Ada", "ada", " ADA\t"] {
        assert_eq!(
            store.account(login).await.expect("read"),
            Some(ada.clone()),
            "{login:?}"
        );
    }
    assert_eq!(store.account("Bob").await.expect("read"), None);
    assert_eq!(store.account("   ").await.expect("read"), None);

    let blank = account(" \t", UserId::random(), HASH);
    assert!(matches!(
        store.create_account(&blank).await,
        Err(StoreError::EmptyLogin)
    ));
}

pub async fn a_taken_login_key_is_refused_and_the_account_kept(store: &dyn Store) {
    let ada = account("Ada", UserId::random(), HASH);
    assert!(store.create_account(&ada).await.expect("create"));
    for login in ["Ada", "ada ", "  aDA"] {
        let other = account(login, UserId::random(), "$argon2id$other");
        assert!(
            !store.create_account(&other).await.expect("create"),
            "{login:?} is taken"
        );
        assert_eq!(
            store.account_of_user(other.user).await.expect("read"),
            None,
            "the refused user has no account"
        );
    }
    assert_eq!(store.account("ada").await.expect("read"), Some(ada.clone()));

    // The same sign-up again (a retry after an error that hid its success)
    // finds its own account, not a taken name.
    assert!(store.create_account(&ada).await.expect("create again"));
    assert_eq!(store.account("ada").await.expect("read"), Some(ada));
}

/// Sign-ups of one name at once, in tasks of their own, through every
/// store in `stores` (several processes, each with its own connection or
/// session): exactly one succeeds.
pub async fn concurrent_sign_ups_of_one_name_create_one_account(stores: Vec<Arc<dyn Store>>) {
    const TASKS: usize = 12;
    let logins = ["Grace", "grace", "GRACE ", " grace"];
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let attempt = account(logins[i % logins.len()], UserId::random(), HASH);
            tokio::spawn(async move {
                let created = store.create_account(&attempt).await.expect("create");
                (attempt, created)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (attempt, created) = task.await.expect("task");
        if created {
            winners.push(attempt);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one sign-up wins: {winners:?}");
    let winner = winners.remove(0);
    for store in &stores {
        assert_eq!(
            store.account("grace").await.expect("read"),
            Some(winner.clone())
        );
        assert_eq!(
            store.account_of_user(winner.user).await.expect("read"),
            Some(winner.clone())
        );
    }
}

pub async fn the_password_hash_is_replaced(store: &dyn Store) {
    let ada = account("Ada", UserId::random(), HASH);
    assert!(store.create_account(&ada).await.expect("create"));
    let rehashed = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$bmV3";
    store
        .set_password_hash(" ADA ", rehashed)
        .await
        .expect("rehash");
    let read = store.account("ada").await.expect("read").expect("account");
    assert_eq!(read.password_hash, rehashed);
    assert_eq!(
        (read.login.as_str(), read.user, read.created_at_ms),
        ("Ada", ada.user, ada.created_at_ms),
        "nothing else changes"
    );

    // No account: nothing to rehash, and none made.
    store
        .set_password_hash("Nobody", rehashed)
        .await
        .expect("rehash nobody");
    assert_eq!(store.account("nobody").await.expect("read"), None);
    store
        .set_password_hash("  ", rehashed)
        .await
        .expect("blank");
}

pub async fn accounts_are_found_by_user(store: &dyn Store) {
    let (ada, bob) = (
        account("Ada", UserId::random(), HASH),
        account("Bob", UserId::random(), HASH),
    );
    assert!(store.create_account(&ada).await.expect("create"));
    assert!(store.create_account(&bob).await.expect("create"));
    assert_eq!(
        store.account_of_user(ada.user).await.expect("read"),
        Some(ada)
    );
    assert_eq!(
        store.account_of_user(bob.user).await.expect("read"),
        Some(bob)
    );
    assert_eq!(
        store.account_of_user(UserId::random()).await.expect("read"),
        None
    );
}

pub async fn deleting_a_user_deletes_its_account_and_frees_the_name(store: &dyn Store) {
    let (ada, bob) = (user("Ada"), user("Bob"));
    apply(
        store,
        vec![
            DirectoryChange::UserUpserted(ada.clone()),
            DirectoryChange::UserUpserted(bob.clone()),
        ],
    )
    .await;
    let ada_account = account("Ada", ada.id, HASH);
    let bob_account = account("Bob", bob.id, HASH);
    assert!(store.create_account(&ada_account).await.expect("create"));
    assert!(store.create_account(&bob_account).await.expect("create"));

    apply(store, vec![DirectoryChange::UserDeleted(ada.id)]).await;
    assert_eq!(store.account("ada").await.expect("read"), None);
    assert_eq!(store.account_of_user(ada.id).await.expect("read"), None);
    assert_eq!(
        store.account("bob").await.expect("read"),
        Some(bob_account),
        "other accounts stay"
    );

    // The name is free for someone else, whom a replay of the old
    // deletion leaves alone.
    let again = account("ADA", UserId::random(), "$argon2id$again");
    assert!(store.create_account(&again).await.expect("create"));
    apply(store, vec![DirectoryChange::UserDeleted(ada.id)]).await;
    assert_eq!(
        store.account("ada").await.expect("read"),
        Some(again.clone())
    );
    assert_eq!(
        store.account_of_user(again.user).await.expect("read"),
        Some(again)
    );
}

pub async fn account_debug_hides_the_password_hash(store: &dyn Store) {
    let ada = account("Ada", UserId::random(), HASH);
    assert!(store.create_account(&ada).await.expect("create"));
    let read = store.account("ada").await.expect("read").expect("account");
    for debug in [format!("{read:?}"), format!("{read:#?}")] {
        assert!(!debug.contains("argon2id"), "{debug}");
        assert!(!debug.contains("aGFzaGhhc2hoYXNo"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
        assert!(debug.contains("Ada"), "{debug}");
    }
}
