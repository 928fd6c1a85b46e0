//! One connection type for the two Redis deployments keymesh supports: one server, or a Redis Cluster.
//!
//! In a cluster every keymesh key carries the hash tag of the key prefix (see [`crate::support::syntax::hash_tag`]), so they
//! all live in one hash slot, on one master. The cluster client sends each keyed command (and each Lua script, by
//! its first key) to that master and follows `MOVED`/`ASK` redirections by itself. The few commands keymesh sends
//! without a key (`SCAN`, `SCRIPT LOAD`) would go to any node; [`RedisConnection`] sends them to the master of
//! keymesh's slot instead, so that listing sees every record and a loaded script is where it runs.
//!
//! Change notifications use classic pub/sub, which a cluster broadcasts to every node: the mirror subscribes on
//! one seed node, and on the next one when that one goes (see [`RedisTarget::subscribe`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection, PubSub,
};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, RedisError, RedisFuture, RedisResult, Value};

use crate::config::Config;

/// Number of hash slots of a Redis Cluster.
const CLUSTER_SLOTS: u16 = 16_384;
/// Attempts of a cluster command after the first: a `MOVED` or `ASK` redirection costs one.
const CLUSTER_RETRIES: u32 = 3;
/// Bounds of the wait between two attempts, in milliseconds: short, since every command is also bounded by the
/// caller's response timeout.
const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 10;
const CLUSTER_MAX_RETRY_WAIT_MS: u64 = 200;

/// The slot of keys whose hash tag is `tag` (CRC16/XMODEM modulo 16384, as Redis Cluster computes it).
pub fn hash_slot(tag: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes()) % CLUSTER_SLOTS
}

/// Where keymesh's data lives, and how to connect to it. Cheap to clone.
#[derive(Clone)]
pub enum RedisTarget {
    /// One Redis server.
    Node(redis::Client),
    /// A Redis Cluster, every keymesh key in one slot.
    Cluster(ClusterTarget),
}

impl std::fmt::Debug for RedisTarget {
    // Clients hold the password: show only the kind.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node(_) => f.write_str("RedisTarget::Node"),
            Self::Cluster(cluster) => f
                .debug_struct("RedisTarget::Cluster")
                .field("seeds", &cluster.seeds.len())
                .field("slot", &cluster.slot)
                .finish_non_exhaustive(),
        }
    }
}

/// A Redis Cluster: its seed nodes and the slot of keymesh's keys.
#[derive(Clone)]
pub struct ClusterTarget {
    client: ClusterClient,
    /// One client per seed node, for the subscription.
    seeds: Arc<[redis::Client]>,
    /// The seed the next subscription tries first: each new one starts after the last one tried.
    next_seed: Arc<AtomicUsize>,
    slot: u16,
}

impl RedisTarget {
    /// The target `config` names. Connects to nothing.
    pub fn from_config(config: &Config) -> RedisResult<Self> {
        if !config.redis_cluster {
            return Ok(Self::Node(redis::Client::open(config.redis_url.as_str())?));
        }
        let urls = config.redis_urls();
        let tag = crate::support::syntax::hash_tag(&config.key_prefix).ok_or_else(|| {
            RedisError::from((
                ErrorKind::InvalidClientConfig,
                "in a Redis Cluster the key prefix needs a hash tag",
            ))
        })?;
        let client = ClusterClient::builder(urls.iter().copied())
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
            .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS)
            .build()?;
        let seeds = urls
            .iter()
            .map(|url| redis::Client::open(*url))
            .collect::<RedisResult<Vec<_>>>()?;
        Ok(Self::Cluster(ClusterTarget {
            client,
            seeds: seeds.into(),
            next_seed: Arc::new(AtomicUsize::new(0)),
            slot: hash_slot(tag),
        }))
    }

    /// A connection that fails once Redis goes (the caller reconnects), each operation limited to `timeout`. A
    /// cluster connection still follows redirections and reconnects to nodes by itself.
    pub async fn connect(&self, timeout: Duration) -> RedisResult<RedisConnection> {
        match self {
            Self::Node(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                Ok(RedisConnection::Node(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            Self::Cluster(cluster) => cluster.connect(timeout).await,
        }
    }

    /// A connection that reconnects by itself and fails fast while Redis is away (for the request path: a request
    /// should not wait out a reconnect backoff; the next one tries again).
    pub async fn connect_reconnecting(&self, timeout: Duration) -> RedisResult<RedisConnection> {
        match self {
            Self::Node(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout)
                    .set_number_of_retries(0)
                    .set_max_delay(200);
                Ok(RedisConnection::Reconnecting(
                    ConnectionManager::new_with_config(client.clone(), config).await?,
                ))
            }
            Self::Cluster(cluster) => cluster.connect(timeout).await,
        }
    }

    /// A connection subscribed to `channel`, each step limited to `timeout`. In a cluster it tries the seed nodes
    /// in turn, starting after the one the previous subscription used.
    pub async fn subscribe(&self, channel: &str, timeout: Duration) -> RedisResult<PubSub> {
        match self {
            Self::Node(client) => subscribe_on(client, channel, timeout).await,
            Self::Cluster(cluster) => {
                let count = cluster.seeds.len();
                let mut last_error = None;
                for _ in 0..count {
                    let index = cluster.next_seed.fetch_add(1, Ordering::Relaxed) % count;
                    let Some(seed) = cluster.seeds.get(index) else {
                        continue;
                    };
                    match subscribe_on(seed, channel, timeout).await {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(error) => {
                            tracing::debug!(seed = index + 1, %error, "cannot subscribe on this seed node");
                            last_error = Some(error);
                        }
                    }
                }
                Err(last_error.unwrap_or_else(|| {
                    RedisError::from((ErrorKind::InvalidClientConfig, "no seed nodes"))
                }))
            }
        }
    }
}

impl ClusterTarget {
    async fn connect(&self, timeout: Duration) -> RedisResult<RedisConnection> {
        let config = ClusterConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        // Connecting asks every seed in parallel, then one node for the slot map: two steps of `timeout` each.
        let conn = bounded(
            timeout * 2,
            self.client.get_async_connection_with_config(config),
        )
        .await?;
        Ok(RedisConnection::Cluster {
            conn,
            slot: self.slot,
        })
    }
}

async fn subscribe_on(
    client: &redis::Client,
    channel: &str,
    timeout: Duration,
) -> RedisResult<PubSub> {
    let mut pubsub = bounded(timeout, client.get_async_pubsub()).await?;
    bounded(timeout, pubsub.subscribe(channel)).await?;
    Ok(pubsub)
}

async fn bounded<T>(
    timeout: Duration,
    op: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    tokio::time::timeout(timeout, op).await.map_err(|_| {
        RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("redis did not answer within {timeout:?}"),
        ))
    })?
}

/// A connection to a Redis server or a Redis Cluster. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub enum RedisConnection {
    /// One server; fails for good when the connection breaks.
    Node(MultiplexedConnection),
    /// One server; reconnects by itself.
    Reconnecting(ConnectionManager),
    /// A cluster; keyless commands go to the master of `slot`.
    Cluster {
        /// The cluster connection.
        conn: ClusterConnection,
        /// The slot of every keymesh key.
        slot: u16,
    },
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node(_) => f.write_str("RedisConnection::Node"),
            Self::Reconnecting(_) => f.write_str("RedisConnection::Reconnecting"),
            Self::Cluster { slot, .. } => write!(f, "RedisConnection::Cluster {{ slot: {slot} }}"),
        }
    }
}

/// Whether `cmd` is one of the keyless commands keymesh sends, which in a cluster must reach the master of
/// keymesh's slot rather than any node.
fn is_keyless(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter().filter_map(|arg| match arg {
        redis::Arg::Simple(bytes) => Some(bytes),
        redis::Arg::Cursor => None,
    });
    match args.next() {
        Some(name) if name.eq_ignore_ascii_case(b"SCAN") => true,
        Some(name) if name.eq_ignore_ascii_case(b"SCRIPT") => args
            .next()
            .is_some_and(|sub| sub.eq_ignore_ascii_case(b"LOAD")),
        _ => false,
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(conn) => conn.req_packed_command(cmd),
            Self::Reconnecting(conn) => conn.req_packed_command(cmd),
            Self::Cluster { conn, slot } => {
                if is_keyless(cmd) {
                    let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                        Route::new(*slot, SlotAddr::Master),
                    ));
                    Box::pin(conn.route_command(cmd, route))
                } else {
                    conn.req_packed_command(cmd)
                }
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Reconnecting(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster { conn, .. } => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(conn) => conn.get_db(),
            Self::Reconnecting(conn) => conn.get_db(),
            Self::Cluster { conn, .. } => conn.get_db(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_redis_computes() {
        // Values from `CLUSTER KEYSLOT` (Redis documents "123456789" → 12739 as CRC16/XMODEM's check value).
        for (tag, slot) in [
            ("123456789", 12_739),
            ("foo", 12_182),
            ("keymesh", 12_733),
            ("e2e", 12_143),
        ] {
            assert_eq!(hash_slot(tag), slot, "{tag}");
        }
    }

    #[test]
    fn only_scan_and_script_load_are_rerouted() {
        assert!(is_keyless(
            redis::cmd("SCAN").arg(0).arg("MATCH").arg("{k}:*")
        ));
        assert!(is_keyless(redis::cmd("scan").arg(0)));
        assert!(is_keyless(redis::cmd("SCRIPT").arg("LOAD").arg("return 1")));
        assert!(!is_keyless(redis::cmd("SCRIPT").arg("FLUSH")));
        assert!(!is_keyless(redis::cmd("GET").arg("{k}:version")));
        assert!(!is_keyless(
            redis::cmd("EVALSHA").arg("abc").arg(1).arg("{k}:version")
        ));
    }

    #[test]
    fn cluster_targets_need_a_hash_tag() {
        let config = Config {
            redis_url: "redis://127.0.0.1:7000/,redis://127.0.0.1:7001/".to_owned(),
            redis_cluster: true,
            key_prefix: "{km}:".to_owned(),
            ..Config::default()
        };
        let target = RedisTarget::from_config(&config).unwrap();
        assert!(
            matches!(&target, RedisTarget::Cluster(c) if c.seeds.len() == 2 && c.slot == hash_slot("km"))
        );
        let untagged = Config {
            key_prefix: "km:".to_owned(),
            ..config
        };
        assert!(RedisTarget::from_config(&untagged).is_err());
    }
}
