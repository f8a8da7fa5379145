//! What can go wrong on a read, and whether the caller should try again.
//!
//! The cache itself never fails a read: Redis errors turn into a bypass,
//! encoding errors into a miss. The only error a caller sees is the
//! loader's own, when there is no stale copy to fall back on.

/// A loader (the database read behind the cache) failed.
///
/// It is cloned to every caller that joined the same single-flight load,
/// so it carries a message rather than the original error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LoadError {
    message: String,
    retryable: bool,
}

impl LoadError {
    /// A failure that may pass (database down, timeout): the api answers 503.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that will not pass by retrying (bad query, corrupt row).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the same read may succeed later.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// Loaders mostly fail because the database is unreachable or slow, so a
/// bare message is taken as retryable.
impl From<String> for LoadError {
    fn from(message: String) -> Self {
        Self::retryable(message)
    }
}

impl From<&str> for LoadError {
    fn from(message: &str) -> Self {
        Self::retryable(message)
    }
}

/// Why [`crate::ReadThrough::get`] (or a warm-up) could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The loader failed and no stale copy within the maximum staleness
    /// was available.
    #[error("loader failed: {0}")]
    Loader(#[source] LoadError),
    /// Redis could not take a bulk write ([`crate::ReadThrough::warm`]);
    /// reads never fail this way, they bypass Redis instead.
    #[error("redis unusable: {0}")]
    Redis(#[source] holdfast_redis::RedisError),
}

impl CacheError {
    /// Whether a retry may succeed (the api answers 503 with `Retry-After`
    /// when true, 500 otherwise).
    pub fn is_retryable(&self) -> bool {
        match self {
            CacheError::Loader(err) => err.is_retryable(),
            CacheError::Redis(_) => true,
        }
    }
}
