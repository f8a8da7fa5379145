//! Redis Cluster: the `redis+cluster://` URL, the client built from it, and
//! the one connection type every command goes through ([`Connection`]),
//! which hides whether one server or a cluster answers.
//!
//! The cluster client of redis-rs follows `MOVED` and `ASK` and refreshes
//! its slot map by itself. What it does not do is run a pipeline whose
//! commands live in different slots: it refuses it (`CROSSSLOT`). A
//! non-atomic pipeline is only a batch of independent commands, so
//! [`Connection`] splits such a batch by slot, sends the parts side by side
//! and puts the answers back in order. A `PUBLISH` (routed by its channel)
//! goes out after every part has answered, so "delete, then announce"
//! keeps its order.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, Slot,
    SlotAddr,
};
use redis::{Arg, Cmd, Pipeline, RedisFuture, Value};

use crate::connect::{TlsOptions, certificates, install_crypto_provider, parse_hosts, redact};
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
        let (userinfo, nodes) = parse_hosts(authority, 6379, bad)?;
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
                builder = builder.tls(redis::TlsMode::Insecure);
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        redis = %self.describe(),
                        "--redis-tls-insecure: the nodes' certificates are NOT verified; for development only"
                    );
                });
            } else {
                builder = builder.tls(redis::TlsMode::Secure);
            }
            if let Some(certificates) = certificates(tls)? {
                builder = builder.certs(certificates);
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
    /// Runs `cmd` on the one server, or on every primary of a cluster
    /// taking the first answer that succeeds: for commands about a server,
    /// not a key (`PING`, `INFO`), which must not fail because one primary
    /// is down (the cluster client would otherwise need every primary's
    /// answer, or merge them).
    pub async fn on_any_node(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd).await,
            Connection::Cluster(conn) => {
                conn.route_command(
                    cmd.clone(),
                    RoutingInfo::MultiNode((
                        MultipleNodeRoutingInfo::AllMasters,
                        Some(ResponsePolicy::OneSucceeded),
                    )),
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

    /// The primaries, as `(host, port)`, from `CLUSTER SLOTS`: the same
    /// source (and so the same addresses) the cluster client routes by;
    /// empty for one server.
    pub async fn primaries(&mut self) -> redis::RedisResult<Vec<(String, u16)>> {
        let Connection::Cluster(conn) = self else {
            return Ok(Vec::new());
        };
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let slots = conn
            .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
            .await?;
        Ok(parse_primaries(&slots))
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

/// `host:port` of every primary in a `CLUSTER SLOTS` answer (each range:
/// start, end, then the primary as host, port, id…, then its replicas),
/// each once.
fn parse_primaries(slots: &Value) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = Vec::new();
    let Value::Array(ranges) = slots else {
        return out;
    };
    for range in ranges {
        let Value::Array(parts) = range else {
            continue;
        };
        let Some(Value::Array(primary)) = parts.get(2) else {
            continue;
        };
        let host = match primary.first() {
            Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Some(Value::SimpleString(text)) => text.clone(),
            _ => continue,
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            continue;
        };
        let Ok(port) = u16::try_from(*port) else {
            continue;
        };
        if !host.is_empty() && !out.iter().any(|(h, p)| *h == host && *p == port) {
            out.push((host, port));
        }
    }
    out
}

/// Where a command of a pipeline goes on a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Destination {
    /// No key: with the command before it (any node will do).
    Keyless,
    /// The node of this slot.
    Slot(Slot),
    /// `PUBLISH`: the cluster client routes it by its channel, and any
    /// node spreads it cluster-wide; sent after the rest of the pipeline,
    /// so "delete, then announce" keeps its order.
    Announce,
}

/// Where `cmd` goes: by its first key, if it has one.
fn destination(cmd: &Cmd) -> Destination {
    let mut args = cmd.args_iter().map(|arg| match arg {
        Arg::Simple(bytes) => bytes,
        _ => &b""[..],
    });
    let Some(name) = args.next().map(<[u8]>::to_ascii_uppercase) else {
        return Destination::Keyless;
    };
    let slot = |key: Option<&[u8]>| {
        key.map_or(Destination::Keyless, |k| {
            Destination::Slot(Slot::for_key(k))
        })
    };
    match name.as_slice() {
        b"PUBLISH" => Destination::Announce,
        b"PING" | b"INFO" | b"SCAN" | b"SCRIPT" | b"CLUSTER" | b"WAIT" | b"WAITAOF" | b"ROLE"
        | b"CONFIG" | b"TIME" | b"DBSIZE" | b"CLIENT" | b"ECHO" => Destination::Keyless,
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let _body = args.next();
            let numkeys: usize = args
                .next()
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if numkeys == 0 {
                Destination::Keyless
            } else {
                slot(args.next())
            }
        }
        // A subcommand comes before the key.
        b"XINFO" | b"XGROUP" | b"OBJECT" | b"MEMORY" => {
            let _subcommand = args.next();
            slot(args.next())
        }
        b"XREAD" | b"XREADGROUP" => {
            if args.any(|a| a.eq_ignore_ascii_case(b"STREAMS")) {
                slot(args.next())
            } else {
                Destination::Keyless
            }
        }
        _ => slot(args.next()),
    }
}

/// A pipeline cut for a cluster: parts by slot (each with the positions of
/// its commands, in order of first appearance) and the announcements, sent
/// after every part has answered.
struct Split {
    parts: Vec<(Vec<usize>, Pipeline)>,
    announces: Vec<usize>,
}

/// `pipeline` cut by slot; `None` when every keyed command shares one slot
/// and none is an announcement (the pipeline then goes as it is).
fn split_by_slot(pipeline: &Pipeline) -> Option<Split> {
    let mut groups: Vec<(Option<Slot>, Vec<usize>, Pipeline)> = Vec::new();
    let mut announces = Vec::new();
    let mut current: Option<usize> = None;
    for (index, cmd) in pipeline.cmd_iter().enumerate() {
        let group = match destination(cmd) {
            Destination::Announce => {
                announces.push(index);
                continue;
            }
            Destination::Slot(slot) => {
                match groups.iter().position(|(s, _, _)| *s == Some(slot)) {
                    Some(found) => found,
                    // Keyless commands just before it join its slot.
                    None => match current {
                        Some(group) if groups[group].0.is_none() => {
                            groups[group].0 = Some(slot);
                            group
                        }
                        _ => {
                            groups.push((Some(slot), Vec::new(), redis::pipe()));
                            groups.len() - 1
                        }
                    },
                }
            }
            // Keyless: with the command before it, or first in a group
            // of its own that the next keyed command joins.
            Destination::Keyless => match current {
                Some(group) => group,
                None => {
                    groups.push((None, Vec::new(), redis::pipe()));
                    groups.len() - 1
                }
            },
        };
        groups[group].1.push(index);
        groups[group].2.add_command(cmd.clone());
        current = Some(group);
    }
    if groups.len() <= 1 && announces.is_empty() {
        return None;
    }
    Some(Split {
        parts: groups
            .into_iter()
            .map(|(_, positions, pipe)| (positions, pipe))
            .collect(),
        announces,
    })
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
                let Some(split) = parts else {
                    return conn.req_packed_commands(pipeline, offset, count);
                };
                let conn = conn.clone();
                Box::pin(async move {
                    let total = pipeline.len();
                    let sent = split.parts.iter().map(|(_, part)| {
                        let mut conn = conn.clone();
                        async move { conn.req_packed_commands(part, 0, part.len()).await }
                    });
                    let answers = futures_util::future::try_join_all(sent).await?;
                    let mut out = vec![Value::Nil; total];
                    for ((positions, _), values) in split.parts.iter().zip(answers) {
                        for (position, value) in positions.iter().zip(values) {
                            out[*position] = value;
                        }
                    }
                    // The announcements, once everything they announce is
                    // done.
                    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
                    let announced = split.announces.iter().map(|&index| {
                        let mut conn = conn.clone();
                        let cmd = commands[index];
                        async move { conn.req_packed_command(cmd).await }
                    });
                    let answers = futures_util::future::try_join_all(announced).await?;
                    for (&index, value) in split.announces.iter().zip(answers) {
                        out[index] = value;
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
    fn pipelines_split_by_slot_and_announcements_go_last() {
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
            .cmd("PING")
            .cmd("PEXPIRE")
            .arg("hf:reply:a")
            .arg(10);
        let split = split_by_slot(&pipe).expect("two slots");
        let positions: Vec<Vec<usize>> = split.parts.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(positions, [vec![0, 5], vec![1, 3, 4]]);
        assert_eq!(split.announces, [2]);

        // One slot and an announcement: the announcement still goes apart,
        // since the cluster client routes it by its channel.
        let mut one = redis::pipe();
        one.cmd("DEL").arg("{a}1").cmd("PUBLISH").arg("c").arg("m");
        let split = split_by_slot(&one).expect("an announcement");
        assert_eq!(split.parts.len(), 1);
        assert_eq!(split.announces, [1]);

        let mut whole = redis::pipe();
        whole
            .cmd("PING")
            .cmd("DEL")
            .arg("{a}1")
            .cmd("SET")
            .arg("{a}2")
            .arg(1);
        assert!(split_by_slot(&whole).is_none(), "one slot goes whole");

        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("STREAMS")
            .arg("{t:1}:req")
            .arg(">");
        assert_eq!(
            destination(&read),
            Destination::Slot(Slot::for_key("{t:1}:req"))
        );
        assert_eq!(destination(&redis::cmd("PING")), Destination::Keyless);
        let mut groups = redis::cmd("XINFO");
        groups.arg("GROUPS").arg("{t:2}:req");
        assert_eq!(
            destination(&groups),
            Destination::Slot(Slot::for_key("{t:2}:req"))
        );
    }

    #[test]
    fn primaries_are_read_from_cluster_slots_once_each() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let slots = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("b.example", 7001),
            ]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(12000),
                node("10.0.0.1", 7000),
            ]),
            Value::Int(1),
        ]);
        assert_eq!(
            parse_primaries(&slots),
            [
                ("10.0.0.1".to_owned(), 7000),
                ("b.example".to_owned(), 7001)
            ]
        );
    }
}
