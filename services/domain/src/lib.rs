//! Rill's domain values and the protobuf schemas of everything on Kafka.
//!
//! Values are parsed once, at the boundary where they enter, and trusted
//! inside: a [`UserId`] is always a UUID, a [`MessageBody`] always fits the
//! size limit it was checked against.
//!
//! - [`ids`]: `UserId`, `ProfileId`, `MessageId` (time-ordered).
//! - [`body`]: `MessageBody`, a validated message text.
//! - [`message`]: `ChatMessage`, a chat message as the services see it, and
//!   its protobuf form.
//! - [`name`]: `Name`, a validated display name.
//! - [`position`]: `Position`, where a message stands in its profile's one
//!   order (the sequenced topic), and `Sequenced`, a message with it.
//! - [`directory`]: `User`, `Profile`, and `DirectoryEvent`s that change them.
//! - [`push`]: `Push`, an event the api publishes to live sessions.
//! - [`presence`]: `PresenceChange`, a live session opened or closed.
//! - [`proto`]: the code generated from `proto/`.

pub mod body;
pub mod directory;
pub mod ids;
pub mod message;
pub mod name;
pub mod position;
pub mod presence;
pub mod proto;
pub mod push;

pub use body::{BodyError, MessageBody};
pub use directory::{DirectoryChange, DirectoryEvent, Profile, User};
pub use ids::{IdError, LoginId, MessageId, ProfileId, UserId};
pub use message::{ChatMessage, DecodeError};
pub use name::{Name, NameError};
pub use position::{Position, PositionError, Sequenced, ordering_partition};
pub use presence::PresenceChange;
pub use push::{Push, PushTarget};
