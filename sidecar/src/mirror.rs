//! The in-memory mirror of the key set in Redis.
//!
//! Requests read the current [`Snapshot`] without touching Redis. A background task replaces it when a version
//! is announced on `{prefix}changes`, when a cheap `GET {prefix}version` (every [`GAP_REPAIR_INTERVAL`]) shows
//! a change whose announcement was lost (pub/sub drops messages while disconnected), and on every reconnect.
//! While Redis is away the last snapshot keeps being served.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::watch;
use tokio::time::{interval_at, sleep, timeout, Instant, MissedTickBehavior};

use crate::clock::Clock;
use crate::names::KeyNames;
use crate::signing_keys::{self, KeyStoreError, SigningKey};
use crate::snapshot::Snapshot;

/// How often the version counter is polled to repair missed notifications.
pub const GAP_REPAIR_INTERVAL: Duration = Duration::from_secs(2);
/// Limit on any single Redis operation of the mirror, so a silent Redis is noticed.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Holds the current snapshot; cheap to read from any number of requests.
#[derive(Debug)]
pub struct Mirror {
    current: ArcSwapOption<Snapshot>,
    loaded: watch::Sender<bool>,
}

impl Default for Mirror {
    fn default() -> Self {
        Self::new()
    }
}

impl Mirror {
    /// An empty mirror: not ready until the first snapshot is installed.
    pub fn new() -> Self {
        Self {
            current: ArcSwapOption::empty(),
            loaded: watch::Sender::new(false),
        }
    }

    /// The current snapshot, or `None` before the first load.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Whether a snapshot has been loaded.
    pub fn is_ready(&self) -> bool {
        *self.loaded.borrow()
    }

    /// Completes once the first snapshot is loaded.
    pub fn ready(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut loaded = self.loaded.subscribe();
        async move {
            // The sender lives as long as the mirror; if it is gone nothing will ever load, and waiting ends.
            let _ = loaded.wait_for(|loaded| *loaded).await;
        }
    }

    fn install(&self, snapshot: Snapshot) {
        self.current.store(Some(Arc::new(snapshot)));
        self.loaded.send_replace(true);
    }
}

/// Why a mirror session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    /// A Redis command failed or the connection broke.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Reading or bootstrapping the key set failed.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {OP_TIMEOUT:?}")]
    Timeout,
    /// The subscription connection closed.
    #[error("change subscription closed")]
    SubscriptionClosed,
    /// The snapshot documents could not be serialised.
    #[error("cannot serialise snapshot: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The background task that keeps a [`Mirror`] in step with Redis.
pub(crate) struct MirrorTask {
    pub(crate) client: redis::Client,
    pub(crate) names: KeyNames,
    pub(crate) issuer: String,
    pub(crate) clock: Clock,
    pub(crate) mirror: Arc<Mirror>,
}

impl MirrorTask {
    /// Runs forever: one session per Redis connection, with exponential backoff between sessions.
    pub(crate) async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let Err(error) = self.session(&mut backoff).await;
            tracing::warn!(%error, retry_in = ?backoff, "redis mirror disconnected; serving the last snapshot");
            sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn session(&self, backoff: &mut Duration) -> Result<Infallible, SessionError> {
        // Subscribe before the full load, so no change can fall between the two.
        let mut pubsub = bounded(self.client.get_async_pubsub()).await?;
        bounded(pubsub.subscribe(self.names.changes())).await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(OP_TIMEOUT)
            .set_response_timeout(OP_TIMEOUT);
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;

        // Every session re-checks the active key: Redis may have been emptied while we were away.
        let candidate = SigningKey::generate(self.clock.now_secs());
        let active = signing_keys::ensure_active(&mut conn, &self.names, &candidate).await?;
        if active == candidate.kid() {
            tracing::info!(kid = %active, "generated and activated a new signing key");
        }
        let mut version = self.refresh(&mut conn).await?;
        *backoff = MIN_BACKOFF;

        let mut messages = pubsub.on_message();
        let mut gap_repair = interval_at(Instant::now() + GAP_REPAIR_INTERVAL, GAP_REPAIR_INTERVAL);
        gap_repair.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let message = message.ok_or(SessionError::SubscriptionClosed)?;
                    let announced: Option<u64> = message.get_payload().ok();
                    if announced != Some(version) {
                        version = self.refresh(&mut conn).await?;
                    }
                }
                _ = gap_repair.tick() => {
                    let current: Option<u64> =
                        redis::cmd("GET").arg(self.names.version()).query_async(&mut conn).await?;
                    if current.unwrap_or(0) != version {
                        tracing::debug!(seen = version, current = ?current, "version changed without notification");
                        version = self.refresh(&mut conn).await?;
                    }
                }
            }
        }
    }

    /// Loads the key set and installs it; returns its version.
    async fn refresh(&self, conn: &mut MultiplexedConnection) -> Result<u64, SessionError> {
        let set = signing_keys::load(conn, &self.names).await?;
        let snapshot = Snapshot::build(set, &self.issuer)?;
        let version = snapshot.version();
        let previous = self.mirror.snapshot().map(|s| s.version());
        if previous != Some(version) {
            tracing::info!(
                version,
                keys = snapshot.kids().len(),
                active_kid = snapshot.active_key().map(SigningKey::kid),
                "key set loaded"
            );
        }
        self.mirror.install(snapshot);
        Ok(version)
    }
}

async fn bounded<T>(op: impl Future<Output = redis::RedisResult<T>>) -> Result<T, SessionError> {
    Ok(timeout(OP_TIMEOUT, op)
        .await
        .map_err(|_| SessionError::Timeout)??)
}
