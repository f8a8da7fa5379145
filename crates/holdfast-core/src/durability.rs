//! How durable a request must be before the caller is told it is queued:
//! `none` (Redis has it in memory), `fsync` (on disk on the primary) or
//! `replicas:N` (copied to N replicas). The forms are the ones the
//! `Holdfast-Durability` header and `--durability` take and report.

use std::fmt;
use std::str::FromStr;

/// A durability level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Acknowledged once the primary has it in memory.
    #[default]
    None,
    /// Written to the primary's append-only file and fsynced.
    Fsync,
    /// Copied to at least this many replicas.
    Replicas(u32),
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::None => f.write_str("none"),
            Durability::Fsync => f.write_str("fsync"),
            Durability::Replicas(n) => write!(f, "replicas:{n}"),
        }
    }
}

/// Why a durability level does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("durability {0:?} is not one of none, fsync, replicas:N (N from 1 to 16)")]
pub struct DurabilityError(pub String);

/// Most replicas a request may wait for.
pub const MAX_REPLICAS: u32 = 16;

impl FromStr for Durability {
    type Err = DurabilityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        match trimmed {
            "none" => Ok(Durability::None),
            "fsync" => Ok(Durability::Fsync),
            other => other
                .strip_prefix("replicas:")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| (1..=MAX_REPLICAS).contains(n))
                .map(Durability::Replicas)
                .ok_or_else(|| DurabilityError(text.to_owned())),
        }
    }
}

/// Written as text (`"replicas:1"`), the form the header and the flag take.
impl serde::Serialize for Durability {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Durability {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_read_back_as_they_are_written() {
        for level in [Durability::None, Durability::Fsync, Durability::Replicas(2)] {
            assert_eq!(level.to_string().parse::<Durability>(), Ok(level));
        }
        for bad in ["", "replicas:0", "replicas:17", "replicas:x", "always"] {
            assert!(bad.parse::<Durability>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&Durability::Replicas(1)).unwrap();
        assert_eq!(json, r#""replicas:1""#);
        assert_eq!(
            serde_json::from_str::<Durability>(&json).unwrap(),
            Durability::Replicas(1)
        );
        assert!(serde_json::from_str::<Durability>(r#""always""#).is_err());
    }
}
