//! Reading stream replies out of raw `redis::Value`s without building maps.
//!
//! The hot paths read thousands of entries a second; walking the value tree
//! once and borrowing the field bytes avoids a `HashMap` per entry.

use redis::Value;

/// One stream entry: its id and its fields as a flat `[name, value, ...]` list.
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// Stream entry id (`ms-seq`).
    pub id: String,
    fields: Vec<Value>,
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b.as_slice()),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn string(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

impl RawEntry {
    /// The fields as `(name, value)` pairs; non-string values are skipped.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .chunks_exact(2)
            .filter_map(|kv| Some((bytes(&kv[0])?, bytes(&kv[1])?)))
    }

    /// The value of one field.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.pairs().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Parses `[id, [field, value, ...]]`; `None` for anything else (a
    /// claimed entry that was deleted comes back as `[id, nil]`).
    pub fn from_value(v: Value) -> Option<Self> {
        let Value::Array(mut parts) = v else {
            return None;
        };
        if parts.len() != 2 {
            return None;
        }
        let fields = parts.pop()?;
        let id = string(parts.pop()?)?;
        let fields = match fields {
            Value::Array(f) => f,
            Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => return None,
        };
        Some(Self { id, fields })
    }

    /// Parses a flat field list as returned inside other replies.
    pub fn from_fields(id: String, v: Value) -> Option<Self> {
        match v {
            Value::Array(fields) => Some(Self { id, fields }),
            _ => None,
        }
    }
}

/// Entries of an `XRANGE`/`XCLAIM` reply: `[[id, fields], ...]`.
pub fn entries(v: Value) -> Vec<RawEntry> {
    match v {
        Value::Array(items) => items.into_iter().filter_map(RawEntry::from_value).collect(),
        _ => Vec::new(),
    }
}

/// Entries of an `XREAD`/`XREADGROUP` reply for a single stream:
/// `[[key, [[id, fields], ...]]]` (or a map in RESP3); nil reads nothing.
pub fn read_reply(v: Value) -> Vec<RawEntry> {
    match v {
        Value::Array(streams) => streams
            .into_iter()
            .flat_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => entries(kv.pop().unwrap_or(Value::Nil)),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().flat_map(|(_, v)| entries(v)).collect(),
        _ => Vec::new(),
    }
}

/// An integer out of a value that may be an int or a numeric string.
pub fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => std::str::from_utf8(bytes(other)?).ok()?.parse().ok(),
    }
}

/// Looks up `name` in a flat `[name, value, ...]` list or a map.
pub fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Array(items) => items
            .chunks_exact(2)
            .find(|kv| bytes(&kv[0]) == Some(name.as_bytes()))
            .map(|kv| &kv[1]),
        Value::Map(items) => items
            .iter()
            .find(|(k, _)| bytes(k) == Some(name.as_bytes()))
            .map(|(_, v)| v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn an_xread_reply_yields_its_entries_in_order() {
        let v = Value::Array(vec![Value::Array(vec![
            bulk("k"),
            Value::Array(vec![
                Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("a"), bulk("1")])]),
                Value::Array(vec![bulk("2-0"), Value::Array(vec![bulk("a"), bulk("2")])]),
            ]),
        ])]);
        let got = read_reply(v);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].id, "2-0");
        assert_eq!(got[1].get(b"a"), Some(&b"2"[..]));
    }

    #[test]
    fn a_nil_read_yields_nothing() {
        assert!(read_reply(Value::Nil).is_empty());
    }

    #[test]
    fn a_deleted_claimed_entry_is_skipped() {
        let v = Value::Array(vec![Value::Array(vec![bulk("1-0"), Value::Nil])]);
        assert!(entries(v).is_empty());
    }
}
