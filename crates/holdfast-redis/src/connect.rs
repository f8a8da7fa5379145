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

/// The certificates `tls` names (a CA, a client certificate and key), read
/// from their files; `None` when it names none (the system roots serve).
///
/// # Errors
/// [`RedisError::Config`]: a file cannot be read, or a client certificate
/// comes without its key or the other way round.
pub(crate) fn certificates(tls: &TlsOptions) -> Result<Option<redis::TlsCertificates>, RedisError> {
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
    Ok(
        (client_tls.is_some() || root_cert.is_some()).then_some(redis::TlsCertificates {
            client_tls,
            root_cert,
        }),
    )
}

/// `[user:password@]host:port,host:port…` split into the user info and
/// the hosts, each with `default_port` when it names none (IPv6 in
/// brackets); `bad` words an error.
pub(crate) fn parse_hosts(
    authority: &str,
    default_port: u16,
    bad: impl Fn(&str) -> RedisError,
) -> Result<(String, Vec<(String, u16)>), RedisError> {
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (authority[..at].to_owned(), &authority[at + 1..]),
        None => (String::new(), authority),
    };
    let hosts = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            let (host, port) = match h.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                    (host, port.parse().map_err(|_| bad("a bad port"))?)
                }
                _ => (h, default_port),
            };
            Ok((host.trim_matches(['[', ']']).to_owned(), port))
        })
        .collect::<Result<Vec<_>, RedisError>>()?;
    Ok((userinfo, hosts))
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
    static WARNED: Once = Once::new();
    if tls.insecure {
        WARNED.call_once(|| tracing::warn!(
            redis = %target,
            "--redis-tls-insecure: the server's certificate is NOT verified; for development only"
        ));
    }
    let client = match certificates(tls)? {
        Some(certificates) => redis::Client::build_with_tls(info, certificates),
        None => redis::Client::open(info),
    }
    .map_err(|err| RedisError::Config(format!("TLS settings for {target}: {err}")))?;
    Ok((client, target))
}

/// A primary found through Redis Sentinel: the URL
/// `redis+sentinel://[user:password@]host1:26379,host2:26379/mastername[/db]`
/// (`rediss+sentinel://` for TLS to the primary and the sentinels). The
/// user and password are the primary's; the sentinels are asked without
/// them.
#[derive(Clone)]
pub(crate) struct Sentinel {
    sentinels: Vec<(String, u16)>,
    master: String,
    userinfo: String,
    db: u32,
    tls: bool,
}

// Hand-written so that the password never reaches a log.
impl std::fmt::Debug for Sentinel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentinel")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Sentinel {
    /// How many sentinels are asked.
    pub(crate) fn count(&self) -> usize {
        self.sentinels.len()
    }

    /// The Sentinel form of `url`, or `None` for any other URL.
    ///
    /// # Errors
    /// [`RedisError::Config`] for a Sentinel URL without sentinels or a
    /// master name.
    pub(crate) fn parse(url: &str) -> Result<Option<Sentinel>, RedisError> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            (true, rest)
        } else {
            return Ok(None);
        };
        let bad = |why: &str| {
            RedisError::Config(format!(
                "{why} in {} (redis+sentinel://[user:password@]host:26379[,host:26379…]/mastername[/db])",
                redact(url)
            ))
        };
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no master name"))?;
        let (userinfo, sentinels) = parse_hosts(authority, 26379, bad)?;
        if sentinels.is_empty() {
            return Err(bad("no sentinel"));
        }
        let mut parts = path.split('/');
        let master = parts
            .next()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| bad("no master name"))?
            .to_owned();
        let db = match parts.next().filter(|d| !d.is_empty()) {
            Some(db) => db.parse().map_err(|_| bad("a bad database number"))?,
            None => 0,
        };
        Ok(Some(Sentinel {
            sentinels,
            master,
            userinfo,
            db,
            tls,
        }))
    }

    /// The URL of each sentinel (TLS as the URL says), in the order given.
    pub(crate) fn sentinel_urls(&self) -> Vec<String> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        self.sentinels
            .iter()
            .map(|(host, port)| format!("{scheme}://{host}:{port}/"))
            .collect()
    }

    /// The master name the URL asks for.
    pub(crate) fn master(&self) -> &str {
        &self.master
    }

    /// The sentinels, as `host:port,host:port`, for messages.
    pub(crate) fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect();
        format!("sentinels {} (master {})", hosts.join(","), self.master)
    }

    /// Asks the sentinels, in turn, where the primary is now.
    pub(crate) async fn resolve(
        &self,
        tls: &TlsOptions,
        timeout: std::time::Duration,
    ) -> Result<(String, u16), (&'static str, String)> {
        let mut failures = Vec::new();
        for (host, port) in &self.sentinels {
            let scheme = if self.tls { "rediss" } else { "redis" };
            let url = format!("{scheme}://{host}:{port}/");
            let asked = async {
                let (client, _) = open_client(&url, tls).map_err(|e| e.to_string())?;
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| describe(&e, &format!("{host}:{port}")).1)?;
                let answer: Option<(String, u16)> = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| format!("{host}:{port}: {e}"))?;
                answer.ok_or_else(|| {
                    format!(
                        "{host}:{port}: this sentinel knows no master named {}",
                        self.master
                    )
                })
            };
            match tokio::time::timeout(timeout, asked).await {
                Ok(Ok(found)) => return Ok(found),
                Ok(Err(why)) => failures.push(why),
                Err(_) => failures.push(format!("{host}:{port}: no answer in time")),
            }
        }
        Err((
            "sentinel_failed",
            format!(
                "{}: no sentinel named the primary: {}",
                self.describe(),
                failures.join("; ")
            ),
        ))
    }

    /// The URL of the primary at `host:port`, with the URL's user,
    /// password and database.
    pub(crate) fn primary_url(&self, host: &str, port: u16) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = if self.userinfo.is_empty() {
            String::new()
        } else {
            format!("{}@", self.userinfo)
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        format!("{scheme}://{auth}{host}:{port}/{}", self.db)
    }
}

/// Hides the password of a Redis URL (see [`holdfast_core::redact_url`]).
pub fn redact(url: &str) -> String {
    holdfast_core::redact_url(url)
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
            "redis://:***@host:6379/0"
        );
        assert_eq!(redact("rediss://u:p@h:1"), "rediss://u:***@h:1");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn sentinel_urls_name_their_sentinels_master_and_database() {
        let s = Sentinel::parse("redis+sentinel://app:pw@s1:26379,s2:26380,s3/cache/2")
            .unwrap()
            .unwrap();
        assert_eq!(
            s.sentinels,
            [
                ("s1".to_owned(), 26379),
                ("s2".to_owned(), 26380),
                ("s3".to_owned(), 26379)
            ]
        );
        assert_eq!((s.master.as_str(), s.db, s.tls), ("cache", 2, false));
        assert_eq!(
            s.primary_url("10.0.0.5", 6379),
            "redis://app:pw@10.0.0.5:6379/2"
        );
        let tls = Sentinel::parse("rediss+sentinel://h:1/m").unwrap().unwrap();
        assert_eq!(tls.primary_url("h2", 6380), "rediss://h2:6380/0");
        assert!(Sentinel::parse("redis://h:1/").unwrap().is_none());
        assert!(matches!(
            Sentinel::parse("redis+sentinel://h:1/"),
            Err(RedisError::Config(_))
        ));
        assert!(matches!(
            Sentinel::parse("redis+sentinel://h:1"),
            Err(RedisError::Config(_))
        ));
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
