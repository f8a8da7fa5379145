//! The Redis key layout, in one place.
//!
//! Every key of one topic partition carries the same hash tag
//! (`{topic:partition}`), so the scripts that touch a request stream, its
//! dead letters and its job records stay in one Cluster slot. Reply streams
//! belong to one caller and need no tag of their own.

use std::fmt;

/// A validated topic name: 1 to 64 characters of `A-Z a-z 0-9 _ - .`.
///
/// The restriction keeps names safe inside keys and hash tags (no `{`, `}`
/// or `:`) and inside metric labels.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(String);

/// A string that is not a valid topic name.
#[derive(Debug, thiserror::Error)]
#[error("invalid topic {0:?}: use 1 to 64 characters of A-Z a-z 0-9 _ - .")]
pub struct TopicError(String);

impl Topic {
    /// Partitions of a topic unless configured otherwise (callers and
    /// workers must agree).
    pub const DEFAULT_PARTITIONS: u16 = 1;

    /// Validates a topic name.
    pub fn parse(name: &str) -> Result<Self, TopicError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(TopicError(name.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({})", self.0)
    }
}

impl std::str::FromStr for Topic {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Names every key and the consumer group, under a configurable prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PREFIX)
    }
}

impl Keys {
    /// The prefix of every key unless configured otherwise.
    pub const DEFAULT_PREFIX: &str = "hf";

    /// The consumer group every worker of a topic joins.
    pub const GROUP: &'static str = "workers";

    /// Keys under `prefix` (default `hf`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:{topic:partition}:req`: the request stream of one partition.
    pub fn request_stream(&self, topic: &Topic, partition: u16) -> String {
        format!("{}:{{{}:{}}}:req", self.prefix, topic, partition)
    }

    /// `{prefix}:{topic:partition}:dead`: dead letters of one partition.
    pub fn dead_letter_stream(&self, topic: &Topic, partition: u16) -> String {
        format!("{}:{{{}:{}}}:dead", self.prefix, topic, partition)
    }

    /// `{prefix}:{topic:partition}:rec:{id}`: status and result of a job; its
    /// `entry` field also makes a re-sent job recognisable.
    pub fn request_record(&self, topic: &Topic, partition: u16, id: &str) -> String {
        format!("{}:{{{}:{}}}:rec:{}", self.prefix, topic, partition, id)
    }

    /// `{prefix}:{topic:partition}:seen:{id}`: marks a call as queued, so a
    /// re-sent write of the same call is recognised and not added twice.
    pub fn call_marker(&self, topic: &Topic, partition: u16, id: &str) -> String {
        format!("{}:{{{}:{}}}:seen:{}", self.prefix, topic, partition, id)
    }

    /// `{prefix}:{effects:topic}:applied`: the effect ledger of a topic's
    /// keyed requests (idempotency key to the times its effect was applied).
    pub fn effects_applied(&self, topic: &Topic) -> String {
        format!("{}:{{effects:{}}}:applied", self.prefix, topic)
    }

    /// `{prefix}:{effects:topic}:seen`: idempotency keys whose effect was
    /// applied, with the worker that applied it.
    pub fn effects_seen(&self, topic: &Topic) -> String {
        format!("{}:{{effects:{}}}:seen", self.prefix, topic)
    }

    /// `{prefix}:{effects:topic}:stats`: counters `applied` and `absorbed`.
    pub fn effects_stats(&self, topic: &Topic) -> String {
        format!("{}:{{effects:{}}}:stats", self.prefix, topic)
    }

    /// `{prefix}:reply:{caller}`: the reply stream of one caller instance.
    pub fn reply_stream(&self, caller: &str) -> String {
        format!("{}:reply:{}", self.prefix, caller)
    }

    /// A `SCAN MATCH` pattern for the request streams of every topic and
    /// partition (glob characters of the prefix are escaped).
    pub fn request_stream_pattern(&self) -> String {
        self.prefix_pattern(":{*}:req")
    }

    /// The registry entry of one running instance of a role:
    /// `{prefix}:instance:{id}` (a string with a short TTL).
    pub fn instance(&self, id: &str) -> String {
        format!("{}:instance:{id}", self.prefix)
    }

    /// A `SCAN MATCH` pattern for every registry entry under this prefix.
    pub fn instance_pattern(&self) -> String {
        self.prefix_pattern(":instance:*")
    }

    /// The prefix with glob characters escaped, then `rest` as written.
    fn prefix_pattern(&self, rest: &str) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + rest.len() + 2);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(rest);
        pattern
    }

    /// The topic name and partition of a request stream key, the inverse of
    /// [`Keys::request_stream`]. The name is returned as found, unvalidated:
    /// keys written by other tools need not follow [`Topic`]'s rules.
    pub fn parse_request_stream<'k>(&self, key: &'k str) -> Option<(&'k str, u16)> {
        let tagged = key
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{")?
            .strip_suffix("}:req")?;
        let (topic, partition) = tagged.rsplit_once(':')?;
        Some((topic, partition.parse().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_reject_key_syntax() {
        for good in ["weather", "a.b-c_d9"] {
            assert!(Topic::parse(good).is_ok(), "{good:?} refused");
        }
        for bad in ["", "a:b", "a{b}", "with space", &"x".repeat(65)] {
            assert!(Topic::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keys_of_one_partition_share_a_hash_tag() {
        let keys = Keys::default();
        let t = Topic::parse("weather").unwrap();
        assert_eq!(keys.request_stream(&t, 0), "hf:{weather:0}:req");
        assert_eq!(keys.dead_letter_stream(&t, 0), "hf:{weather:0}:dead");
        assert_eq!(keys.request_record(&t, 0, "x"), "hf:{weather:0}:rec:x");
        assert_eq!(keys.call_marker(&t, 0, "x"), "hf:{weather:0}:seen:x");
        assert_eq!(keys.reply_stream("c1"), "hf:reply:c1");
    }

    #[test]
    fn request_stream_keys_are_found_and_parsed_back() {
        let keys = Keys::new("a*b");
        let t = Topic::parse("weather").unwrap();
        assert_eq!(keys.request_stream_pattern(), "a\\*b:{*}:req");
        let key = keys.request_stream(&t, 3);
        assert_eq!(keys.parse_request_stream(&key), Some(("weather", 3)));
        assert_eq!(
            keys.parse_request_stream("a*b:{odd:name:1}:req"),
            Some(("odd:name", 1))
        );
        for other in [
            "a*b:{weather:0}:dead",
            "hf:{weather:0}:req",
            "a*b:{weather:x}:req",
        ] {
            assert_eq!(keys.parse_request_stream(other), None, "{other}");
        }
    }
}
