//! `/api/testdata`: make N random users and M profiles, some users bound to
//! several profiles; and drop everything made that way.

use rand::Rng as _;
use rand::seq::IndexedRandom as _;
use rill_domain::{DirectoryChange, Name, Profile, ProfileId, User, UserId};
use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;

use super::{parse_body, written};
use crate::directory::{Visibility, now_ms};
use crate::error::ApiError;
use crate::state::ApiState;

/// Each test user is bound to between 1 and this many profiles.
const MAX_BINDINGS_PER_USER: usize = 3;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    users: usize,
    profiles: usize,
}

#[derive(Debug, Serialize)]
struct Created {
    users: Vec<UserId>,
    profiles: Vec<ProfileId>,
    bindings: usize,
}

#[derive(Debug, Serialize)]
struct Dropped {
    users: usize,
    profiles: usize,
}

pub async fn create(
    state: &ApiState,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let request: CreateRequest = parse_body(content_type, body)?;
    let limits = &state.settings.limits;
    if request.users > limits.max_test_users {
        return Err(ApiError::OverLimit {
            field: "users",
            value: request.users,
            max: limits.max_test_users,
        });
    }
    if request.profiles > limits.max_test_profiles {
        return Err(ApiError::OverLimit {
            field: "profiles",
            value: request.profiles,
            max: limits.max_test_profiles,
        });
    }
    if request.users > 0 && request.profiles == 0 {
        return Err(ApiError::Invalid {
            field: "profiles",
            reason: "must be at least 1 when users is more than 0: each test user is bound \
                     to a profile"
                .into(),
        });
    }
    let now = now_ms();
    let users: Vec<User> = (0..request.users)
        .map(|i| User {
            id: UserId::random(),
            name: test_name("Test user", i),
            created_at_ms: now,
            test_data: true,
        })
        .collect();
    let profiles: Vec<Profile> = (0..request.profiles)
        .map(|i| Profile {
            id: ProfileId::random(),
            name: test_name("Test room", i),
            created_at_ms: now,
            test_data: true,
        })
        .collect();
    let bindings = random_bindings(&users, &profiles);

    // Users and profiles first, and visible, so that no bind reaches the
    // store before its user or profile (they travel on other partitions).
    let mut upserts: Vec<DirectoryChange> = users
        .iter()
        .cloned()
        .map(DirectoryChange::UserUpserted)
        .collect();
    upserts.extend(
        profiles
            .iter()
            .cloned()
            .map(DirectoryChange::ProfileUpserted),
    );
    state.directory.publish(upserts).await?;
    let mut visibility = Visibility::Visible;
    for user in &users {
        let id = user.id;
        visibility = state
            .directory
            .wait_until(|s| async move { Ok(s.user(id).await?.is_some()) })
            .await?;
        if visibility == Visibility::Pending {
            break;
        }
    }
    for profile in &profiles {
        let id = profile.id;
        if visibility == Visibility::Pending {
            break;
        }
        visibility = state
            .directory
            .wait_until(|s| async move { Ok(s.profile(id).await?.is_some()) })
            .await?;
    }
    state
        .directory
        .publish(
            bindings
                .iter()
                .map(|&(user, profile)| DirectoryChange::Bound { user, profile })
                .collect(),
        )
        .await?;
    if let (Visibility::Visible, Some(&(user, profile))) = (visibility, bindings.last()) {
        visibility = state
            .directory
            .wait_until(|s| async move { s.is_member(user, profile).await })
            .await?;
    }
    tracing::info!(
        users = users.len(),
        profiles = profiles.len(),
        bindings = bindings.len(),
        "test data created"
    );
    let body = Created {
        users: users.iter().map(|u| u.id).collect(),
        profiles: profiles.iter().map(|p| p.id).collect(),
        bindings: bindings.len(),
    };
    Ok(written(visibility, StatusCode::CREATED, &body))
}

pub async fn drop_all(state: &ApiState) -> Result<Response, ApiError> {
    let (users, profiles) = state.store().test_data().await?;
    let mut deletes: Vec<DirectoryChange> = users
        .iter()
        .copied()
        .map(DirectoryChange::UserDeleted)
        .collect();
    deletes.extend(
        profiles
            .iter()
            .copied()
            .map(DirectoryChange::ProfileDeleted),
    );
    state.directory.publish(deletes).await?;
    let visibility = state
        .directory
        .wait_until(|s| async move {
            let (users, profiles) = s.test_data().await?;
            Ok(users.is_empty() && profiles.is_empty())
        })
        .await?;
    tracing::info!(
        users = users.len(),
        profiles = profiles.len(),
        "test data dropped"
    );
    let body = Dropped {
        users: users.len(),
        profiles: profiles.len(),
    };
    Ok(written(visibility, StatusCode::OK, &body))
}

fn test_name(prefix: &str, i: usize) -> Name {
    Name::parse(&format!("{prefix} {:04}", i + 1)).expect("test names are short printable ASCII")
}

/// Each user bound to 1..=3 distinct random profiles (fewer if there are
/// fewer profiles), so some users are bound to several.
fn random_bindings(users: &[User], profiles: &[Profile]) -> Vec<(UserId, ProfileId)> {
    let mut rng = rand::rng();
    let mut out = Vec::new();
    for user in users {
        let count = rng.random_range(1..=MAX_BINDINGS_PER_USER.min(profiles.len()));
        for profile in profiles.choose_multiple(&mut rng, count) {
            out.push((user.id, profile.id));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_gets_one_to_three_distinct_profiles() {
        let now = 0;
        let users: Vec<User> = (0..200)
            .map(|i| User {
                id: UserId::random(),
                name: test_name("u", i),
                created_at_ms: now,
                test_data: true,
            })
            .collect();
        let profiles: Vec<Profile> = (0..5)
            .map(|i| Profile {
                id: ProfileId::random(),
                name: test_name("p", i),
                created_at_ms: now,
                test_data: true,
            })
            .collect();
        let bindings = random_bindings(&users, &profiles);
        for user in &users {
            let mine: Vec<ProfileId> = bindings
                .iter()
                .filter(|(u, _)| *u == user.id)
                .map(|(_, p)| *p)
                .collect();
            let distinct: std::collections::HashSet<_> = mine.iter().collect();
            assert!((1..=3).contains(&mine.len()), "{}", mine.len());
            assert_eq!(distinct.len(), mine.len());
        }
        assert!(
            users
                .iter()
                .any(|u| bindings.iter().filter(|(b, _)| *b == u.id).count() >= 2),
            "with 200 users some are bound to two or more profiles"
        );
    }
}
