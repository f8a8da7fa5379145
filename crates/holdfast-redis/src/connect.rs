//! Opening a client from the settings (plain TCP or TLS through rustls with
//! the ring provider), and saying what went wrong when a connection fails:
//! the address tried and the cause, in words an operator can act on.

use std::path::{Path, PathBuf};
use std::sync::Once;

use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::error::RedisError;

/// TLS settings for a `rediss://` URL. With none of them set, the server
/// is verified against the system's root certificates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the certificate authority that signed the server's
    /// certificate, in place of the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate this client presents (mutual TLS); needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Accept any server certificate. For development only: a warning is
    /// logged at start.
    pub insecure: bool,
}

impl TlsOptions {
    /// Whether any option is set.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some()
            || self.client_cert.is_some()
            || self.client_key.is_some()
            || self.insecure
    }
}

/// rustls needs one process-wide crypto provider: ring, installed once.
pub(crate) fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only when another provider was installed first, which
        // serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, RedisError> {
    std::fs::read(path).map_err(|err| {
        RedisError::Config(format!("cannot read the {what} {}: {err}", path.display()))
    })
}

/// `host:port` of a URL's address, for messages (`a:26379,b:26379` style
/// lists are left to the caller).
pub(crate) fn address(info: &redis::ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{host}:{port}")
        }
        ConnectionAddr::Unix(path) => path.display().to_string(),
        #[allow(unreachable_patterns)]
        _ => "redis".to_owned(),
    }
}

/// A client for `url` with `TCP_NODELAY` set (redis-rs leaves Nagle's
/// algorithm on, which holds back the small pipelined writes this crate
/// lives on), TLS as `tls` says for a `rediss://` URL; and the address it
/// connects to.
///
/// # Errors
/// [`RedisError::Config`]: the URL does not parse, a TLS file cannot be
/// read or parsed, or TLS options come with a plain `redis://` URL.
pub(crate) fn open_client(
    url: &str,
    tls: &TlsOptions,
) -> Result<(redis::Client, String), RedisError> {
    let secure = url.starts_with("rediss://");
    if tls.is_set() && !secure {
        return Err(RedisError::Config(
            "TLS options (a CA file, a client certificate, insecure) need a rediss:// URL".into(),
        ));
    }
    let url = if secure && tls.insecure && !url.contains('#') {
        // redis-rs reads "skip verification" from the URL's fragment.
        format!("{url}#insecure")
    } else {
        url.to_owned()
    };
    let info = url
        .as_str()
        .into_connection_info()
        .map_err(|err| RedisError::Config(format!("invalid Redis URL {}: {err}", redact(&url))))?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    let target = address(&info);
    if !secure {
        let client = redis::Client::open(info)
            .map_err(|err| RedisError::Config(format!("invalid Redis URL: {err}")))?;
        return Ok((client, target));
    }
    install_crypto_provider();
    if tls.insecure {
        tracing::warn!(
            redis = %target,
            "--redis-tls-insecure: the server's certificate is NOT verified; for development only"
        );
    }
    let client_tls = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert, "client certificate")?,
            client_key: read(key, "client key")?,
        }),
        (None, None) => None,
        _ => {
            return Err(RedisError::Config(
                "mutual TLS needs both a client certificate and its key".into(),
            ));
        }
    };
    let root_cert = match &tls.ca_file {
        Some(path) => Some(read(path, "CA file")?),
        None => None,
    };
    let client = if client_tls.is_some() || root_cert.is_some() {
        redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls,
                root_cert,
            },
        )
    } else {
        redis::Client::open(info)
    }
    .map_err(|err| RedisError::Config(format!("TLS settings for {target}: {err}")))?;
    Ok((client, target))
}

/// Hides the password of a Redis URL.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Why a connection to `target` failed: a stable code for metrics and the
/// state history, and a sentence for `/health` and the log that names the
/// address and the cause.
pub(crate) fn describe(err: &redis::RedisError, target: &str) -> (&'static str, String) {
    let text = err.to_string();
    let has = |needle: &str| text.contains(needle);
    let (code, cause) = if err.kind() == redis::ErrorKind::AuthenticationFailed
        || has("WRONGPASS")
        || has("NOAUTH")
        || has("invalid password")
        || has("invalid username-password")
    {
        (
            "auth_failed",
            "authentication failed (wrong user name or password)",
        )
    } else if has("NOPERM") {
        (
            "no_permission",
            "the user may not run a command the connection needs (ACL)",
        )
    } else if has("DB index is out of range") || has("invalid DB index") {
        (
            "wrong_database",
            "the database number does not exist on this server",
        )
    } else if has("UnknownIssuer") || has("unknown issuer") {
        (
            "tls_unknown_ca",
            "TLS: the server's certificate is signed by an authority this client does not trust (give --redis-ca-file)",
        )
    } else if has("NotValidForName") || has("not valid for name") {
        (
            "tls_name_mismatch",
            "TLS: the server's certificate is not valid for this host name",
        )
    } else if has("Expired") || has("expired") {
        ("tls_expired", "TLS: the server's certificate has expired")
    } else if has("certificate") || has("handshake") || has("tls") || has("TLS") {
        ("tls_failed", "TLS handshake failed")
    } else if has("failed to lookup address")
        || has("Name or service not known")
        || has("nodename nor servname")
        || has("No address associated")
        || has("Temporary failure in name resolution")
    {
        ("dns_failed", "the host name does not resolve (DNS)")
    } else if err.is_connection_refusal() || has("Connection refused") {
        (
            "connection_refused",
            "nothing listens there (connection refused)",
        )
    } else if err.is_timeout() {
        ("timeout", "no answer in time")
    } else if err.is_io_error() {
        ("io_error", "the connection failed")
    } else {
        ("error", "the connection failed")
    };
    (code, format!("{target}: {cause}: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact("redis://:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("rediss://u:p@h:1"), "rediss://***@h:1");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn bad_settings_are_refused_before_any_connection() {
        let none = TlsOptions::default();
        assert!(matches!(
            open_client("not a url", &none),
            Err(RedisError::Config(_))
        ));
        let tls = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let Err(RedisError::Config(why)) = open_client("rediss://127.0.0.1:1/", &tls) else {
            panic!("an unreadable CA file is a settings error");
        };
        assert!(why.contains("/nonexistent/ca.pem"), "{why}");
        assert!(matches!(
            open_client("redis://127.0.0.1:1/", &tls),
            Err(RedisError::Config(_))
        ));
        let (_, target) = open_client("redis://example.invalid:6390/2", &none).unwrap();
        assert_eq!(target, "example.invalid:6390");
    }
}
