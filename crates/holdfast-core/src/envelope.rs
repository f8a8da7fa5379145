//! Request envelopes and replies as stream entry fields.
//!
//! Both are flat lists of `(name, value)` byte pairs, the shape of a stream
//! entry, so another language reads them with nothing but a Redis client.
//! Parsing never panics: a missing or garbled field is an [`EnvelopeError`]
//! that names the field, which a worker turns into a dead letter.

use bytes::Bytes;

use crate::{Deadline, RequestId};

/// The protocol version written in field `v` of requests and replies.
pub const PROTOCOL_VERSION: &str = "1";

/// Field names, shared by requests and replies where they mean the same.
pub mod fields {
    /// Protocol version.
    pub const VERSION: &str = "v";
    /// Request id (UUIDv7, hyphenated).
    pub const ID: &str = "id";
    /// `call` or `job`.
    pub const KIND: &str = "kind";
    /// Reply stream key of the caller; empty for jobs.
    pub const REPLY_TO: &str = "reply_to";
    /// Absolute deadline, unix milliseconds.
    pub const DEADLINE_MS: &str = "deadline_ms";
    /// W3C trace context of the caller's span.
    pub const TRACEPARENT: &str = "traceparent";
    /// Media type of the body.
    pub const CONTENT_TYPE: &str = "content_type";
    /// Payload bytes.
    pub const BODY: &str = "body";
    /// Caller-chosen key for exactly-once effects in handlers.
    pub const IDEMPOTENCY_KEY: &str = "idempotency_key";
    /// Reply status: `ok`, `error`, `expired`, `dead`.
    pub const STATUS: &str = "status";
    /// Stable error code of an `error` or `dead` reply.
    pub const CODE: &str = "code";
    /// Human-readable error message.
    pub const MESSAGE: &str = "message";
    /// Consumer name of the worker that answered.
    pub const WORKER: &str = "worker";
}

/// Whether the caller waits for a reply or only for a job record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Request/reply: the answer goes to `reply_to`.
    Call,
    /// Fire-and-forget: status and result are kept in the request record.
    Job,
}

impl Kind {
    /// Wire form.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Job => "job",
        }
    }
}

/// A request as carried in a request stream entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Request id.
    pub id: RequestId,
    /// Call or job.
    pub kind: Kind,
    /// Reply stream key; `None` for jobs.
    pub reply_to: Option<String>,
    /// Absolute deadline.
    pub deadline: Deadline,
    /// W3C `traceparent` of the caller.
    pub traceparent: Option<String>,
    /// Media type of `body`.
    pub content_type: String,
    /// Payload.
    pub body: Bytes,
    /// Key for exactly-once effects, chosen by the caller.
    pub idempotency_key: Option<String>,
}

/// Why a stream entry is not a valid envelope or reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field is present but unreadable.
    #[error("invalid field `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A version this build does not speak.
    #[error("unsupported protocol version {0:?}")]
    UnsupportedVersion(String),
}

impl EnvelopeError {
    /// A stable code for dead letters and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::Missing(_) => "missing_field",
            EnvelopeError::Invalid { .. } => "invalid_field",
            EnvelopeError::UnsupportedVersion(_) => "unsupported_version",
        }
    }
}

fn utf8(field: &'static str, raw: &[u8]) -> Result<String, EnvelopeError> {
    std::str::from_utf8(raw)
        .map(str::to_owned)
        .map_err(|_| EnvelopeError::Invalid {
            field,
            reason: "not UTF-8",
        })
}

/// The values of the fields named in `names`, in that order, out of an
/// entry's `(name, value)` pairs; fields not named are ignored, so later
/// versions may add fields. A field given twice keeps its last value.
fn pick<'a, const N: usize>(
    pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    names: [&str; N],
) -> [Option<&'a [u8]>; N] {
    let mut values = [None; N];
    for (name, value) in pairs {
        if let Some(slot) = names.iter().position(|n| n.as_bytes() == name) {
            values[slot] = Some(value);
        }
    }
    values
}

fn check_version(raw: Option<&[u8]>) -> Result<(), EnvelopeError> {
    match raw {
        None => Err(EnvelopeError::Missing(fields::VERSION)),
        Some(v) if v == PROTOCOL_VERSION.as_bytes() => Ok(()),
        Some(v) => Err(EnvelopeError::UnsupportedVersion(
            String::from_utf8_lossy(v).into_owned(),
        )),
    }
}

/// The fields every entry starts with, the protocol version and the request
/// id, in a list with room for `capacity` fields.
fn header_fields(id: RequestId, capacity: usize) -> Vec<(&'static str, Bytes)> {
    let mut out = Vec::with_capacity(capacity);
    out.push((
        fields::VERSION,
        Bytes::from_static(PROTOCOL_VERSION.as_bytes()),
    ));
    out.push((fields::ID, Bytes::from(id.to_string())));
    out
}

fn parse_id(raw: Option<&[u8]>) -> Result<RequestId, EnvelopeError> {
    let raw = raw.ok_or(EnvelopeError::Missing(fields::ID))?;
    RequestId::from_bytes(raw).map_err(|_| EnvelopeError::Invalid {
        field: fields::ID,
        reason: "not a UUID",
    })
}

impl Envelope {
    /// The fields of a stream entry, in protocol order. Optional fields that
    /// are absent are left out.
    pub fn to_fields(&self) -> Vec<(&'static str, Bytes)> {
        let mut out = header_fields(self.id, 9);
        out.push((
            fields::KIND,
            Bytes::from_static(self.kind.as_str().as_bytes()),
        ));
        out.push((
            fields::REPLY_TO,
            Bytes::from(self.reply_to.clone().unwrap_or_default()),
        ));
        out.push((
            fields::DEADLINE_MS,
            Bytes::from(self.deadline.unix_ms().to_string()),
        ));
        if let Some(tp) = &self.traceparent {
            out.push((fields::TRACEPARENT, Bytes::from(tp.clone())));
        }
        out.push((fields::CONTENT_TYPE, Bytes::from(self.content_type.clone())));
        out.push((fields::BODY, self.body.clone()));
        if let Some(key) = &self.idempotency_key {
            out.push((fields::IDEMPOTENCY_KEY, Bytes::from(key.clone())));
        }
        out
    }

    /// Reads an envelope from entry fields given as `(name, value)` pairs.
    /// Unknown fields are ignored, so later versions may add fields.
    pub fn from_fields<'a, I>(pairs: I) -> Result<Self, EnvelopeError>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let [
            version,
            id,
            kind,
            reply_to,
            deadline,
            traceparent,
            content_type,
            body,
            idempotency_key,
        ] = pick(
            pairs,
            [
                fields::VERSION,
                fields::ID,
                fields::KIND,
                fields::REPLY_TO,
                fields::DEADLINE_MS,
                fields::TRACEPARENT,
                fields::CONTENT_TYPE,
                fields::BODY,
                fields::IDEMPOTENCY_KEY,
            ],
        );
        check_version(version)?;
        let id = parse_id(id)?;
        let kind = match kind.ok_or(EnvelopeError::Missing(fields::KIND))? {
            b"call" => Kind::Call,
            b"job" => Kind::Job,
            _ => {
                return Err(EnvelopeError::Invalid {
                    field: fields::KIND,
                    reason: "expected `call` or `job`",
                });
            }
        };
        let reply_to = match reply_to {
            Some(raw) if !raw.is_empty() => Some(utf8(fields::REPLY_TO, raw)?),
            _ => None,
        };
        if kind == Kind::Call && reply_to.is_none() {
            return Err(EnvelopeError::Missing(fields::REPLY_TO));
        }
        let deadline_raw = deadline.ok_or(EnvelopeError::Missing(fields::DEADLINE_MS))?;
        let deadline = std::str::from_utf8(deadline_raw)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .map(Deadline::from_unix_ms)
            .ok_or(EnvelopeError::Invalid {
                field: fields::DEADLINE_MS,
                reason: "not an integer of unix milliseconds",
            })?;
        let traceparent = traceparent
            .filter(|raw| !raw.is_empty())
            .map(|raw| utf8(fields::TRACEPARENT, raw))
            .transpose()?;
        let content_type = match content_type {
            Some(raw) => utf8(fields::CONTENT_TYPE, raw)?,
            None => "application/octet-stream".to_owned(),
        };
        let body = Bytes::copy_from_slice(body.ok_or(EnvelopeError::Missing(fields::BODY))?);
        let idempotency_key = idempotency_key
            .filter(|raw| !raw.is_empty())
            .map(|raw| utf8(fields::IDEMPOTENCY_KEY, raw))
            .transpose()?;
        Ok(Self {
            id,
            kind,
            reply_to,
            deadline,
            traceparent,
            content_type,
            body,
            idempotency_key,
        })
    }
}

/// How a request ended, as told to its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplyStatus {
    /// The handler answered; `body` holds the answer.
    Ok,
    /// The handler refused the request; `code` and `message` say why.
    Error,
    /// The deadline passed: before a worker started the request, or while the
    /// handler ran (it is then stopped).
    Expired,
    /// The request was moved to the dead-letter stream.
    Dead,
}

impl ReplyStatus {
    /// Wire form.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReplyStatus::Ok => "ok",
            ReplyStatus::Error => "error",
            ReplyStatus::Expired => "expired",
            ReplyStatus::Dead => "dead",
        }
    }

    /// Parses the wire form.
    pub fn parse(raw: &[u8]) -> Option<Self> {
        match raw {
            b"ok" => Some(ReplyStatus::Ok),
            b"error" => Some(ReplyStatus::Error),
            b"expired" => Some(ReplyStatus::Expired),
            b"dead" => Some(ReplyStatus::Dead),
            _ => None,
        }
    }
}

/// A reply as carried in a reply stream entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The request it answers.
    pub id: RequestId,
    /// How it ended.
    pub status: ReplyStatus,
    /// Stable error code for `error` and `dead`.
    pub code: Option<String>,
    /// Human-readable message for `error` and `dead`.
    pub message: Option<String>,
    /// The answer for `ok` (may be empty otherwise).
    pub body: Bytes,
    /// Consumer name of the worker.
    pub worker: String,
}

impl Reply {
    /// A successful reply.
    pub fn ok(id: RequestId, body: Bytes, worker: impl Into<String>) -> Self {
        Self {
            id,
            status: ReplyStatus::Ok,
            code: None,
            message: None,
            body,
            worker: worker.into(),
        }
    }

    /// A reply other than `ok`, with a code and a message.
    pub fn failed(
        id: RequestId,
        status: ReplyStatus,
        code: impl Into<String>,
        message: impl Into<String>,
        worker: impl Into<String>,
    ) -> Self {
        Self {
            id,
            status,
            code: Some(code.into()),
            message: Some(message.into()),
            body: Bytes::new(),
            worker: worker.into(),
        }
    }

    /// The fields of a reply stream entry.
    pub fn to_fields(&self) -> Vec<(&'static str, Bytes)> {
        let mut out = header_fields(self.id, 7);
        out.push((
            fields::STATUS,
            Bytes::from_static(self.status.as_str().as_bytes()),
        ));
        if let Some(code) = &self.code {
            out.push((fields::CODE, Bytes::from(code.clone())));
        }
        if let Some(message) = &self.message {
            out.push((fields::MESSAGE, Bytes::from(message.clone())));
        }
        out.push((fields::BODY, self.body.clone()));
        out.push((fields::WORKER, Bytes::from(self.worker.clone())));
        out
    }

    /// Reads a reply from entry fields.
    pub fn from_fields<'a, I>(pairs: I) -> Result<Self, EnvelopeError>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let [version, id, status, code, message, body, worker] = pick(
            pairs,
            [
                fields::VERSION,
                fields::ID,
                fields::STATUS,
                fields::CODE,
                fields::MESSAGE,
                fields::BODY,
                fields::WORKER,
            ],
        );
        check_version(version)?;
        let id = parse_id(id)?;
        let status = ReplyStatus::parse(status.ok_or(EnvelopeError::Missing(fields::STATUS))?)
            .ok_or(EnvelopeError::Invalid {
                field: fields::STATUS,
                reason: "expected ok, error, expired or dead",
            })?;
        Ok(Self {
            id,
            status,
            code: code.map(|c| String::from_utf8_lossy(c).into_owned()),
            message: message.map(|m| String::from_utf8_lossy(m).into_owned()),
            body: body.map(Bytes::copy_from_slice).unwrap_or_default(),
            worker: worker
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pairs(fields: &[(&'static str, Bytes)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec()))
            .collect()
    }

    fn borrow(p: &[(Vec<u8>, Vec<u8>)]) -> impl Iterator<Item = (&[u8], &[u8])> {
        p.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    fn call() -> Envelope {
        Envelope {
            id: RequestId::new(),
            kind: Kind::Call,
            reply_to: Some("hf:reply:c1".into()),
            deadline: Deadline::after(Duration::from_secs(3)),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            content_type: "application/json".into(),
            body: Bytes::from_static(br#"{"city":"Oslo"}"#),
            idempotency_key: None,
        }
    }

    #[test]
    fn an_envelope_round_trips_through_fields() {
        let env = call();
        let p = pairs(&env.to_fields());
        assert_eq!(Envelope::from_fields(borrow(&p)).unwrap(), env);
    }

    #[test]
    fn a_reply_round_trips_through_fields() {
        let reply = Reply::failed(
            RequestId::new(),
            ReplyStatus::Dead,
            "max_deliveries",
            "gave up",
            "w1",
        );
        let p = pairs(&reply.to_fields());
        assert_eq!(Reply::from_fields(borrow(&p)).unwrap(), reply);
    }

    #[test]
    fn a_call_without_reply_to_is_rejected() {
        let mut env = call();
        env.reply_to = None;
        let p = pairs(&env.to_fields());
        assert_eq!(
            Envelope::from_fields(borrow(&p)),
            Err(EnvelopeError::Missing("reply_to"))
        );
    }

    #[test]
    fn garbage_fields_name_the_culprit() {
        let p = vec![
            (b"v".to_vec(), b"1".to_vec()),
            (b"id".to_vec(), RequestId::new().to_string().into_bytes()),
            (b"kind".to_vec(), b"job".to_vec()),
            (b"deadline_ms".to_vec(), b"soon".to_vec()),
            (b"body".to_vec(), b"".to_vec()),
        ];
        let err = Envelope::from_fields(borrow(&p)).unwrap_err();
        assert_eq!(err.code(), "invalid_field");
        assert!(err.to_string().contains("deadline_ms"));
    }

    #[test]
    fn an_unknown_version_is_rejected() {
        let p = vec![(b"v".to_vec(), b"99".to_vec())];
        assert_eq!(
            Envelope::from_fields(borrow(&p)),
            Err(EnvelopeError::UnsupportedVersion("99".into()))
        );
    }

    #[test]
    fn an_empty_entry_is_missing_its_version() {
        assert_eq!(
            Envelope::from_fields(std::iter::empty()),
            Err(EnvelopeError::Missing("v"))
        );
    }
}
