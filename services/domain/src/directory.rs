//! Users, profiles and the events that change them, as the services see
//! them, and their protobuf form on the directory topic.

use prost::Message as _;
use serde::Serialize;

use crate::ids::{IdError, LoginId, MessageId, ProfileId, UserId};
use crate::message::DecodeError;
use crate::name::Name;
use crate::proto::v1;

/// A person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub name: Name,
    pub created_at_ms: i64,
    /// Made by the test-data generator, and dropped with it.
    pub test_data: bool,
}

/// A shared space users are bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub id: ProfileId,
    pub name: Name,
    pub created_at_ms: i64,
    pub test_data: bool,
}

/// One change to the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryChange {
    UserUpserted(User),
    UserDeleted(UserId),
    ProfileUpserted(Profile),
    ProfileDeleted(ProfileId),
    Bound {
        user: UserId,
        profile: ProfileId,
    },
    Unbound {
        user: UserId,
        profile: ProfileId,
    },
    /// One login of `user` ended (`Some`), or all of them (`None`): their
    /// live sessions end on every edge. Not stored.
    LoginsEnded {
        user: UserId,
        login: Option<LoginId>,
    },
}

/// A change with its id and time, as it travels on the directory topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEvent {
    pub id: MessageId,
    pub at_ms: i64,
    pub change: DirectoryChange,
}

impl DirectoryEvent {
    pub fn new(change: DirectoryChange, at_ms: i64) -> Self {
        Self {
            id: MessageId::now(),
            at_ms,
            change,
        }
    }

    /// The record key: the user id for user events, the profile id for
    /// profile and membership events (so that a profile's membership changes
    /// stay in order).
    pub fn key(&self) -> String {
        match &self.change {
            DirectoryChange::UserUpserted(user) => user.id.to_string(),
            DirectoryChange::UserDeleted(id) => id.to_string(),
            DirectoryChange::LoginsEnded { user, .. } => user.to_string(),
            DirectoryChange::ProfileUpserted(profile) => profile.id.to_string(),
            DirectoryChange::ProfileDeleted(id) => id.to_string(),
            DirectoryChange::Bound { profile, .. } | DirectoryChange::Unbound { profile, .. } => {
                profile.to_string()
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        use v1::directory_event::Change;
        let change = match &self.change {
            DirectoryChange::UserUpserted(u) => Change::UserUpserted(v1::User {
                id: u.id.to_bytes(),
                name: u.name.as_str().to_owned(),
                created_at_ms: u.created_at_ms,
                test_data: u.test_data,
            }),
            DirectoryChange::UserDeleted(id) => Change::UserDeleted(id.to_bytes()),
            DirectoryChange::ProfileUpserted(p) => Change::ProfileUpserted(v1::Profile {
                id: p.id.to_bytes(),
                name: p.name.as_str().to_owned(),
                created_at_ms: p.created_at_ms,
                test_data: p.test_data,
            }),
            DirectoryChange::ProfileDeleted(id) => Change::ProfileDeleted(id.to_bytes()),
            DirectoryChange::Bound { user, profile } => Change::Bound(membership(*user, *profile)),
            DirectoryChange::Unbound { user, profile } => {
                Change::Unbound(membership(*user, *profile))
            }
            DirectoryChange::LoginsEnded { user, login } => Change::LoginsEnded(v1::LoginsEnded {
                user_id: user.to_bytes(),
                login_id: login.map(|login| login.to_bytes()).unwrap_or_default(),
            }),
        };
        v1::DirectoryEvent {
            event_id: self.id.to_bytes(),
            at_ms: self.at_ms,
            change: Some(change),
        }
        .encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        use v1::directory_event::Change;
        let raw = v1::DirectoryEvent::decode(bytes)?;
        let change = match raw.change.ok_or(DecodeError::Missing("change"))? {
            Change::UserUpserted(u) => DirectoryChange::UserUpserted(User {
                id: UserId::from_slice(&u.id)?,
                name: Name::parse(&u.name)?,
                created_at_ms: u.created_at_ms,
                test_data: u.test_data,
            }),
            Change::UserDeleted(id) => DirectoryChange::UserDeleted(UserId::from_slice(&id)?),
            Change::ProfileUpserted(p) => DirectoryChange::ProfileUpserted(Profile {
                id: ProfileId::from_slice(&p.id)?,
                name: Name::parse(&p.name)?,
                created_at_ms: p.created_at_ms,
                test_data: p.test_data,
            }),
            Change::ProfileDeleted(id) => {
                DirectoryChange::ProfileDeleted(ProfileId::from_slice(&id)?)
            }
            Change::Bound(m) => {
                let (user, profile) = pair(&m)?;
                DirectoryChange::Bound { user, profile }
            }
            Change::Unbound(m) => {
                let (user, profile) = pair(&m)?;
                DirectoryChange::Unbound { user, profile }
            }
            Change::LoginsEnded(ended) => DirectoryChange::LoginsEnded {
                user: UserId::from_slice(&ended.user_id)?,
                login: match ended.login_id.is_empty() {
                    true => None,
                    false => Some(LoginId::from_slice(&ended.login_id)?),
                },
            },
        };
        Ok(Self {
            id: MessageId::from_slice(&raw.event_id)?,
            at_ms: raw.at_ms,
            change,
        })
    }
}

fn membership(user: UserId, profile: ProfileId) -> v1::Membership {
    v1::Membership {
        user_id: user.to_bytes(),
        profile_id: profile.to_bytes(),
    }
}

fn pair(m: &v1::Membership) -> Result<(UserId, ProfileId), IdError> {
    Ok((
        UserId::from_slice(&m.user_id)?,
        ProfileId::from_slice(&m.profile_id)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            id: UserId::random(),
            name: Name::parse("Ada").expect("name"),
            created_at_ms: 5,
            test_data: true,
        }
    }

    #[test]
    fn every_change_round_trips() {
        let (u, p) = (UserId::random(), ProfileId::random());
        let profile = Profile {
            id: p,
            name: Name::parse("Room").expect("name"),
            created_at_ms: 1,
            test_data: false,
        };
        for change in [
            DirectoryChange::UserUpserted(user()),
            DirectoryChange::UserDeleted(u),
            DirectoryChange::ProfileUpserted(profile),
            DirectoryChange::ProfileDeleted(p),
            DirectoryChange::Bound {
                user: u,
                profile: p,
            },
            DirectoryChange::Unbound {
                user: u,
                profile: p,
            },
            DirectoryChange::LoginsEnded {
                user: u,
                login: Some(LoginId::random()),
            },
            DirectoryChange::LoginsEnded {
                user: u,
                login: None,
            },
        ] {
            let event = DirectoryEvent::new(change, 42);
            assert_eq!(
                DirectoryEvent::decode(&event.encode()).expect("decodes"),
                event
            );
        }
    }

    #[test]
    fn keys_follow_the_design() {
        let u = user();
        let p = ProfileId::random();
        assert_eq!(
            DirectoryEvent::new(DirectoryChange::UserUpserted(u.clone()), 0).key(),
            u.id.to_string()
        );
        let bound = DirectoryEvent::new(
            DirectoryChange::Bound {
                user: u.id,
                profile: p,
            },
            0,
        );
        assert_eq!(bound.key(), p.to_string());
    }

    #[test]
    fn an_event_without_a_change_is_an_error() {
        let raw = v1::DirectoryEvent {
            event_id: MessageId::now().to_bytes(),
            at_ms: 0,
            change: None,
        };
        assert!(DirectoryEvent::decode(&raw.encode_to_vec()).is_err());
    }
}
