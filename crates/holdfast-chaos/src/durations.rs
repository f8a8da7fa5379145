//! Durations in scenario files, written as people write them (`250ms`,
//! `2s`, `5m`): read with [`holdfast_core::parse_duration`], written with
//! [`holdfast_core::format_duration`], so what is written reads back the
//! same.
//!
//! Used as `#[serde(with = "crate::durations::text")]`, or
//! `crate::durations::optional_text` for an optional one.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

fn to_text(duration: &Duration) -> String {
    holdfast_core::format_duration(*duration)
}

fn from_text<E: serde::de::Error>(raw: &str) -> Result<Duration, E> {
    holdfast_core::parse_duration(raw).map_err(E::custom)
}

/// A required duration.
pub(crate) mod text {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(duration: &Duration, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&to_text(duration))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        from_text(&String::deserialize(de)?)
    }
}

/// An optional duration: absent (or `None`) when not written.
pub(crate) mod optional_text {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        ser: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => ser.serialize_some(&to_text(duration)),
            None => ser.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        de: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(de)?
            .map(|raw| from_text(&raw))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_duration_reads_back_the_same() {
        for duration in [
            Duration::from_secs(3),
            Duration::from_millis(1500),
            Duration::from_micros(2500),
            Duration::ZERO,
        ] {
            assert_eq!(
                from_text::<serde::de::value::Error>(&to_text(&duration)),
                Ok(duration)
            );
        }
    }
}
