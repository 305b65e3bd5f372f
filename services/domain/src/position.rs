//! Where a message stands in its profile's one order.
//!
//! The edges produce chat messages keyed by sender; the sequencer copies
//! each one to the sequenced topic, into the partition that orders its
//! profile ([`ordering_partition`]). A message's offset there is its
//! **position**: every reader of that partition sees a profile's messages
//! in the same order, and a client resumes after the last position it saw.
//!
//! A profile's positions increase but are not consecutive (its partition
//! orders other profiles too), so a reader cannot see a gap from positions
//! alone: only one that holds every record of the partition from the
//! client's position on can replay exactly. To make sure a position names
//! the record the client really saw (and not the same offset of a topic
//! recreated since, or of another partition after the partition count
//! changed), a [`Position`] carries a check of its message's id, compared
//! with the record at that offset before a replay is trusted.

use std::fmt;
use std::str::FromStr;

use crate::ids::{MessageId, ProfileId};
use crate::message::ChatMessage;

/// A message's place in its profile's order: the offset of its record in
/// the sequenced topic, and a check of its message id. Written as
/// `{offset}-{check}` (check: 8 hex digits), e.g. `1234-9f3a2c1d`: the SSE
/// event id, the `message` event's `position`, what a client resumes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    pub offset: u64,
    pub check: u32,
}

impl Position {
    /// The position of message `id` at `offset`.
    pub fn new(offset: u64, id: MessageId) -> Self {
        Self {
            offset,
            check: check_of(id),
        }
    }

    /// Whether this position names message `id` (its offset aside).
    pub fn names(&self, id: MessageId) -> bool {
        self.check == check_of(id)
    }
}

/// The last four bytes of a message id: random in a UUIDv7, so two
/// messages at the same offset of two topics differ here but for a chance
/// of one in four billion.
fn check_of(id: MessageId) -> u32 {
    let bytes = id.as_uuid().into_bytes();
    u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]])
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:08x}", self.offset, self.check)
    }
}

/// A position that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a position is an offset and 8 hex digits, as in 1234-9f3a2c1d")]
pub struct PositionError;

impl FromStr for Position {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (offset, check) = s.split_once('-').ok_or(PositionError)?;
        let all_digits = |s: &str, radix| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
        if !all_digits(offset, 10) || check.len() != 8 || !all_digits(check, 16) {
            return Err(PositionError);
        }
        Ok(Self {
            offset: offset.parse().map_err(|_| PositionError)?,
            check: u32::from_str_radix(check, 16).map_err(|_| PositionError)?,
        })
    }
}

impl serde::Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A chat message with its place in its profile's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequenced {
    pub message: ChatMessage,
    /// The offset of its record in the sequenced topic.
    pub offset: u64,
}

impl Sequenced {
    pub fn position(&self) -> Position {
        Position::new(self.offset, self.message.id)
    }
}

/// The partition of the sequenced topic (of `partitions`) that orders
/// `profile`. The sequencer writes there and the edges look there: both
/// must agree, so it is written once, here, and does not depend on a
/// client library's partitioner.
pub fn ordering_partition(profile: ProfileId, partitions: i32) -> i32 {
    let bytes = profile.as_uuid().into_bytes();
    let low = u64::from_be_bytes([
        bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
    ]);
    let partitions = u64::try_from(partitions.max(1)).unwrap_or(1);
    // The remainder is below `partitions`, an i32.
    i32::try_from(low % partitions).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back_as_written() {
        let id = MessageId::now();
        let position = Position::new(1234, id);
        let text = position.to_string();
        assert!(text.starts_with("1234-"), "{text}");
        assert_eq!(text.len(), "1234-".len() + 8);
        assert_eq!(text.parse::<Position>(), Ok(position));
        assert!(position.names(id));
        assert!(!position.names(MessageId::now()));
    }

    #[test]
    fn malformed_positions_are_refused() {
        for bad in [
            "",
            "1234",
            "-9f3a2c1d",
            "1234-",
            "1234-9f3a2c1",
            "1234-9f3a2c1dd",
            "12a4-9f3a2c1d",
            "1234-9f3a2c1g",
            "+123-9f3a2c1d",
            "99999999999999999999999-9f3a2c1d",
            "018f3a2c-1d2e-7000-8000-000000000000",
        ] {
            assert_eq!(bad.parse::<Position>(), Err(PositionError), "{bad:?}");
        }
    }

    #[test]
    fn a_profile_has_one_partition_within_range() {
        for _ in 0..1000 {
            let profile = ProfileId::random();
            let partition = ordering_partition(profile, 6);
            assert!((0..6).contains(&partition));
            assert_eq!(ordering_partition(profile, 6), partition);
        }
        assert_eq!(ordering_partition(ProfileId::random(), 1), 0);
    }

    #[test]
    fn profiles_spread_over_partitions() {
        let mut seen = [0_u32; 4];
        for _ in 0..400 {
            let p = ordering_partition(ProfileId::random(), 4);
            seen[usize::try_from(p).expect("in range")] += 1;
        }
        assert!(seen.iter().all(|&n| n > 40), "{seen:?}");
    }
}
