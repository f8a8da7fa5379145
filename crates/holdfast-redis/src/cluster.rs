//! Redis Cluster: the `redis+cluster://` URL, the client built from it, and
//! the one connection type every command goes through ([`Connection`]),
//! which hides whether one server or a cluster answers.
//!
//! The cluster client of redis-rs follows `MOVED` and `ASK` and refreshes
//! its slot map by itself. What it does not do is run a pipeline whose
//! commands live in different slots: it refuses it (`CROSSSLOT`). A
//! non-atomic pipeline is only a batch of independent commands, so
//! [`Connection`] splits such a batch by slot, sends the parts side by side
//! and puts the answers back in order. A command without a key (`PUBLISH`)
//! travels with the command before it, so "delete, then announce" keeps
//! its order.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{Arg, Cmd, Pipeline, RedisFuture, Value};

use crate::connect::{TlsOptions, install_crypto_provider, redact};
use crate::error::RedisError;

/// The seed nodes of a cluster, from
/// `redis+cluster://[user:password@]host1:port,host2:port[/]`
/// (`rediss+cluster://` for TLS to every node).
#[derive(Clone)]
pub(crate) struct Cluster {
    nodes: Vec<(String, u16)>,
    userinfo: String,
    tls: bool,
}

// Hand-written so that the password never reaches a log.
impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The Cluster form of `url`, or `None` for any other URL.
    ///
    /// # Errors
    /// [`RedisError::Config`] for a cluster URL without nodes, with a bad
    /// port, or with a database other than 0 (a cluster has only one).
    pub(crate) fn parse(url: &str) -> Result<Option<Cluster>, RedisError> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+cluster://") {
            (true, rest)
        } else {
            return Ok(None);
        };
        let bad = |why: &str| {
            RedisError::Config(format!(
                "{why} in {} (redis+cluster://[user:password@]host:port[,host:port…])",
                redact(url)
            ))
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !path.is_empty() && path != "0" {
            return Err(bad(
                "a database other than 0 (a cluster has only database 0)",
            ));
        }
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (authority[..at].to_owned(), &authority[at + 1..]),
            None => (String::new(), authority),
        };
        let nodes = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| {
                let (host, port) = match h.rsplit_once(':') {
                    Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                        (host, port.parse().map_err(|_| bad("a bad node port"))?)
                    }
                    _ => (h, 6379),
                };
                Ok((host.trim_matches(['[', ']']).to_owned(), port))
            })
            .collect::<Result<Vec<_>, RedisError>>()?;
        if nodes.is_empty() {
            return Err(bad("no node"));
        }
        Ok(Some(Cluster {
            nodes,
            userinfo,
            tls,
        }))
    }

    /// The seed nodes, as `cluster a:1,b:2`, for messages.
    pub(crate) fn describe(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        format!("cluster {}", hosts.join(","))
    }

    /// The URL of one node, with the cluster URL's user and password.
    pub(crate) fn node_url(&self, index: usize) -> String {
        let (host, port) = &self.nodes[index % self.nodes.len()];
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = if self.userinfo.is_empty() {
            String::new()
        } else {
            format!("{}@", self.userinfo)
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        format!("{scheme}://{auth}{host}:{port}/")
    }

    /// How many seed nodes the URL names.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// A cluster client over every seed node.
    ///
    /// # Errors
    /// [`RedisError::Config`] when a TLS file cannot be read or the URL
    /// does not parse.
    pub(crate) fn client(
        &self,
        tls: &TlsOptions,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<redis::cluster::ClusterClient, RedisError> {
        let urls: Vec<String> = (0..self.nodes.len()).map(|i| self.node_url(i)).collect();
        let mut builder = redis::cluster::ClusterClient::builder(urls)
            .connection_timeout(connect_timeout)
            .response_timeout(response_timeout)
            // Our own deadlines bound every command; a few retries cover a
            // MOVED or ASK and a node's short blip.
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        if self.tls {
            install_crypto_provider();
            if tls.insecure {
                builder = builder.danger_accept_invalid_hostnames(true);
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
            if client_tls.is_some() || root_cert.is_some() {
                builder = builder.certs(redis::TlsCertificates {
                    client_tls,
                    root_cert,
                });
            }
        } else if tls.is_set() {
            return Err(RedisError::Config(
                "TLS options (a CA file, a client certificate, insecure) need a rediss+cluster:// URL"
                    .into(),
            ));
        }
        builder
            .build()
            .map_err(|err| RedisError::Config(format!("cluster settings: {err}")))
    }
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, RedisError> {
    std::fs::read(path).map_err(|err| {
        RedisError::Config(format!("cannot read the {what} {}: {err}", path.display()))
    })
}

/// A connection to one server or to a cluster; cheap to clone (a handle
/// onto shared sockets), usable wherever redis-rs wants a connection.
#[derive(Clone)]
pub enum Connection {
    /// One server (plain URL, or the primary Sentinel named).
    Single(MultiplexedConnection),
    /// A cluster: commands go to the node of their key's slot.
    Cluster(ClusterConnection),
}

impl Connection {
    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster(_))
    }

    /// Runs `cmd` on one node at random (any node of a cluster; the one
    /// server otherwise): for commands whose answer is about a server, not
    /// a key (`INFO`), which the cluster client would otherwise send to
    /// every node and merge.
    pub async fn on_any_node(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd).await,
            Connection::Cluster(conn) => {
                conn.route_command(
                    cmd.clone(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
                )
                .await
            }
        }
    }

    /// Runs `cmd` on the primary that serves `key`: for `WAIT` and
    /// `WAITAOF` after a write of `key`, which count that node's
    /// replicas (the cluster client would otherwise ask every primary and
    /// take the least).
    pub async fn on_node_of(&mut self, key: &str, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd).await,
            Connection::Cluster(conn) => {
                conn.route_command(
                    cmd.clone(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
                        key,
                        SlotAddr::Master,
                    ))),
                )
                .await
            }
        }
    }

    /// The primaries, as `(host, port)`, from `CLUSTER NODES` (those not
    /// marked failed); empty for one server.
    pub async fn primaries(&mut self) -> redis::RedisResult<Vec<(String, u16)>> {
        let Connection::Cluster(conn) = self else {
            return Ok(Vec::new());
        };
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let text: String = redis::from_redis_value(
            conn.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
                .await?,
        )?;
        Ok(parse_primaries(&text))
    }

    /// Every key matching `pattern` (`SCAN MATCH`), on the one server or on
    /// every primary of a cluster, up to `limit` keys; keys may repeat.
    pub async fn scan_all(
        &mut self,
        pattern: &str,
        count: usize,
        limit: usize,
    ) -> redis::RedisResult<Vec<String>> {
        let mut found = Vec::new();
        let nodes: Vec<Option<(String, u16)>> = match self {
            Connection::Single(_) => vec![None],
            Connection::Cluster(_) => self.primaries().await?.into_iter().map(Some).collect(),
        };
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(count);
                let page = match (&mut *self, &node) {
                    (Connection::Cluster(conn), Some((host, port))) => {
                        conn.route_command(
                            cmd,
                            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                host: host.clone(),
                                port: *port,
                            }),
                        )
                        .await?
                    }
                    (conn, _) => conn.req_packed_command(&cmd).await?,
                };
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::from_redis_value(page)?;
                found.extend(
                    keys.into_iter()
                        .filter_map(|key| String::from_utf8(key).ok()),
                );
                if next == 0 || found.len() >= limit {
                    break;
                }
                cursor = next;
            }
            if found.len() >= limit {
                break;
            }
        }
        Ok(found)
    }
}

/// `host:port` of every primary in a `CLUSTER NODES` answer that is not
/// marked as failing.
fn parse_primaries(text: &str) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_id), Some(addr), Some(flags)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if !flags.contains(&"master") || flags.iter().any(|f| *f == "fail" || *f == "noaddr") {
            continue;
        }
        // `ip:port@cport[,hostname]`
        let addr = addr.split(['@', ',']).next().unwrap_or_default();
        if let Some((host, port)) = addr.rsplit_once(':')
            && let Ok(port) = port.parse()
            && !host.is_empty()
        {
            out.push((host.to_owned(), port));
        }
    }
    out
}

/// The slot of a command's first key, `None` for a command without keys.
fn command_slot(cmd: &Cmd) -> Option<Slot> {
    let mut args = cmd.args_iter().map(|arg| match arg {
        Arg::Simple(bytes) => bytes,
        _ => &b""[..],
    });
    let name = args.next()?.to_ascii_uppercase();
    match name.as_slice() {
        b"PING" | b"INFO" | b"PUBLISH" | b"SCAN" | b"SCRIPT" | b"CLUSTER" | b"WAIT"
        | b"WAITAOF" | b"ROLE" | b"CONFIG" | b"TIME" | b"DBSIZE" | b"CLIENT" | b"ECHO" => None,
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let _body = args.next()?;
            let numkeys: usize = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
            if numkeys == 0 {
                return None;
            }
            Some(Slot::for_key(args.next()?))
        }
        // A subcommand comes before the key.
        b"XINFO" | b"XGROUP" | b"OBJECT" | b"MEMORY" => {
            let _subcommand = args.next()?;
            Some(Slot::for_key(args.next()?))
        }
        b"XREAD" | b"XREADGROUP" => {
            args.find(|a| a.eq_ignore_ascii_case(b"STREAMS"))?;
            Some(Slot::for_key(args.next()?))
        }
        _ => Some(Slot::for_key(args.next()?)),
    }
}

/// The parts of `pipeline` by slot, in order of first appearance, each
/// with the positions of its commands; `None` when every keyed command
/// shares one slot (the pipeline goes as it is).
fn split_by_slot(pipeline: &Pipeline) -> Option<Vec<(Vec<usize>, Pipeline)>> {
    let mut groups: Vec<(Option<Slot>, Vec<usize>, Pipeline)> = Vec::new();
    let mut current: Option<usize> = None;
    for (index, cmd) in pipeline.cmd_iter().enumerate() {
        let slot = command_slot(cmd);
        let group = match slot {
            Some(slot) => match groups.iter().position(|(s, _, _)| *s == Some(slot)) {
                Some(found) => found,
                // Keyless commands just before it join its slot.
                None => match current {
                    Some(group) if groups[group].0.is_none() => group,
                    _ => {
                        groups.push((Some(slot), Vec::new(), redis::pipe()));
                        groups.len() - 1
                    }
                },
            },
            // Keyless: with the command before it, or first in a group
            // of its own that the next keyed command joins.
            None => match current {
                Some(group) => group,
                None => {
                    groups.push((None, Vec::new(), redis::pipe()));
                    groups.len() - 1
                }
            },
        };
        if groups[group].0.is_none() {
            groups[group].0 = slot;
        }
        groups[group].1.push(index);
        groups[group].2.add_command(cmd.clone());
        current = Some(group);
    }
    if groups.len() <= 1 {
        return None;
    }
    Some(
        groups
            .into_iter()
            .map(|(_, positions, pipe)| (positions, pipe))
            .collect(),
    )
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(conn) => {
                // An atomic pipeline (offset > 0: MULTI … EXEC) must stay
                // whole; the server refuses it across slots, as it should.
                let parts = if offset == 0 {
                    split_by_slot(pipeline)
                } else {
                    None
                };
                let Some(parts) = parts else {
                    return conn.req_packed_commands(pipeline, offset, count);
                };
                let conn = conn.clone();
                Box::pin(async move {
                    let total = pipeline.len();
                    let sent = parts.iter().map(|(_, part)| {
                        let mut conn = conn.clone();
                        async move { conn.req_packed_commands(part, 0, part.len()).await }
                    });
                    let answers = futures_util::future::try_join_all(sent).await?;
                    let mut out = vec![Value::Nil; total];
                    for ((positions, _), values) in parts.iter().zip(answers) {
                        for (position, value) in positions.iter().zip(values) {
                            out[*position] = value;
                        }
                    }
                    Ok(out)
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_name_their_nodes() {
        let c = Cluster::parse("redis+cluster://app:pw@n1:7000,n2:7001,n3")
            .unwrap()
            .unwrap();
        assert_eq!(
            c.nodes,
            [
                ("n1".to_owned(), 7000),
                ("n2".to_owned(), 7001),
                ("n3".to_owned(), 6379)
            ]
        );
        assert_eq!(c.node_url(1), "redis://app:pw@n2:7001/");
        assert_eq!(c.describe(), "cluster n1:7000,n2:7001,n3:6379");
        let tls = Cluster::parse("rediss+cluster://h:1/").unwrap().unwrap();
        assert_eq!(tls.node_url(0), "rediss://h:1/");
        assert!(Cluster::parse("redis://h:1/").unwrap().is_none());
        assert!(matches!(
            Cluster::parse("redis+cluster:///"),
            Err(RedisError::Config(_))
        ));
        assert!(matches!(
            Cluster::parse("redis+cluster://h:1/3"),
            Err(RedisError::Config(_))
        ));
        assert!(matches!(
            Cluster::parse("redis+cluster://h:x"),
            Err(RedisError::Config(_))
        ));
    }

    #[test]
    fn pipelines_split_by_slot_and_keyless_commands_follow_the_one_before() {
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg("hf:reply:a")
            .arg("*")
            .arg("f")
            .arg("v")
            .cmd("DEL")
            .arg("{t:0}:x")
            .cmd("PUBLISH")
            .arg("chan")
            .arg("x")
            .cmd("EVALSHA")
            .arg("abc")
            .arg(1)
            .arg("{t:0}:y")
            .cmd("PEXPIRE")
            .arg("hf:reply:a")
            .arg(10);
        let parts = split_by_slot(&pipe).expect("two slots");
        let positions: Vec<Vec<usize>> = parts.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(positions, [vec![0, 4], vec![1, 2, 3]]);

        let mut one = redis::pipe();
        one.cmd("DEL")
            .arg("{a}1")
            .cmd("PUBLISH")
            .arg("c")
            .arg("m")
            .cmd("SET")
            .arg("{a}2")
            .arg(1);
        assert!(split_by_slot(&one).is_none(), "one slot goes whole");

        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("STREAMS")
            .arg("{t:1}:req")
            .arg(">");
        assert_eq!(command_slot(&read), Some(Slot::for_key("{t:1}:req")));
        assert_eq!(command_slot(&redis::cmd("PING")), None);
        let mut groups = redis::cmd("XINFO");
        groups.arg("GROUPS").arg("{t:2}:req");
        assert_eq!(command_slot(&groups), Some(Slot::for_key("{t:2}:req")));
    }

    #[test]
    fn primaries_are_read_from_cluster_nodes() {
        let text = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001,host-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master,fail - 0 0 3 disconnected
d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected
";
        assert_eq!(
            parse_primaries(text),
            [
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001)
            ]
        );
    }
}
