//! Request ids: UUIDv7, so ids sort by creation time and carry no secrets.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The id of one request or job, unique across callers (UUIDv7).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(Uuid);

/// A string that is not a request id.
#[derive(Debug, thiserror::Error)]
#[error("not a request id (expected a UUID): {0:?}")]
pub struct RequestIdError(String);

impl RequestId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The UUID inside.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Parses the one text form on the wire: lowercase and hyphenated.
    ///
    /// Other spellings of the same UUID are refused, because ids are also
    /// matched as bytes (reply dispatch, record keys): two spellings of one
    /// id would be two ids.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, RequestIdError> {
        let invalid = || RequestIdError(String::from_utf8_lossy(raw).into_owned());
        if raw.len() != 36 {
            return Err(invalid());
        }
        let id = std::str::from_utf8(raw)
            .ok()
            .and_then(|s| Uuid::try_parse(s).ok())
            .ok_or_else(invalid)?;
        let mut canonical = [0u8; 36];
        if id.hyphenated().encode_lower(&mut canonical).as_bytes() != raw {
            return Err(invalid());
        }
        Ok(Self(id))
    }

    /// The hyphenated text form, without allocating.
    pub fn encode<'b>(&self, buf: &'b mut [u8; 36]) -> &'b str {
        self.0.hyphenated().encode_lower(buf)
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for RequestId {
    fn from(value: Uuid) -> Self {
        Self(value)
    }
}

impl FromStr for RequestId {
    type Err = RequestIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(s.as_bytes())
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.0.hyphenated())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let id = RequestId::new();
        let mut buf = [0u8; 36];
        let text = id.encode(&mut buf).to_owned();
        assert_eq!(text.parse::<RequestId>().unwrap(), id);
        assert_eq!(id.to_string(), text);
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let a = RequestId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = RequestId::new();
        assert!(b > a);
    }

    #[test]
    fn garbage_is_not_an_id() {
        assert!(RequestId::from_bytes(b"not-a-uuid").is_err());
        assert!(RequestId::from_bytes(&[0xff, 0xfe]).is_err());
        let id = RequestId::new().to_string();
        assert!(RequestId::from_bytes(id.to_uppercase().as_bytes()).is_err());
        assert!(RequestId::from_bytes(id.replace('-', "").as_bytes()).is_err());
    }
}
