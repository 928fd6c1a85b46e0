//! The in-memory mirror of the bundle's content in Redis.
//!
//! Requests read the current [`Snapshot`] without touching Redis. A background task keeps it current: at the
//! start of every Redis session (so after every reconnect) it does a full load (`SCAN` of the API key records and
//! the revoked-token markers, the signing keys). After that it follows the change log (see [`crate::store::commit`]): when a version is announced
//! on `{prefix}changes`, or a cheap `GET {prefix}version` (every [`GAP_REPAIR_INTERVAL`]) shows a change whose
//! announcement was lost, it reads the entries after its version and applies them to a new snapshot. Only when the
//! log does not reach back to its version (trimmed, or a writer that did not log) does it load everything again.
//! While Redis is away the last snapshot keeps being served.

pub mod delta_window;
pub mod load;
pub mod page_hold;
pub mod snapshot;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::{interval_at, sleep, Instant, MissedTickBehavior};

use crate::api_keys::{ApiKeyError, ApiKeyStore};
use crate::keys::{self, Alg, KeyStoreError, SigningKey, Unsealer};
use crate::mirror::load::{ChangesSince, KeyMaterial, ReadError};
use crate::mirror::page_hold::PageHold;
use crate::mirror::snapshot::{ApiKeySet, Snapshot};
use crate::oauth::revocation;
use crate::store::commit::{Change, CHANGE_LOG_LEN};
use crate::store::connection::{RedisConnection, RedisTarget};
use crate::store::names::KeyNames;
use crate::support::clock::Clock;

/// How often the version counter is polled to repair missed notifications.
pub const GAP_REPAIR_INTERVAL: Duration = Duration::from_secs(2);
/// Limit on any single Redis operation of the mirror, so a silent Redis is noticed.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Change log entries read per round trip.
const READ_BATCH: usize = 10_000;
/// Full loads tried before settling for a state the change log could not bring to one exact version.
const FULL_LOAD_ATTEMPTS: usize = 3;

/// Holds the current snapshot; cheap to read from any number of requests.
#[derive(Debug)]
pub struct Mirror {
    current: ArcSwapOption<Snapshot>,
    loaded: watch::Sender<bool>,
    version: watch::Sender<u64>,
    full_loads: AtomicU64,
    connected: AtomicBool,
    paged: PageHold,
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
            version: watch::Sender::new(0),
            full_loads: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            paged: PageHold::default(),
        }
    }

    /// The current snapshot, or `None` before the first load.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// The snapshots held while filters read their full bundle in pages.
    pub fn paged(&self) -> &PageHold {
        &self.paged
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

    /// The version of the current snapshot, updated after each new snapshot is installed (0 before the first).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// How many full loads (`SCAN` of every API key record) the mirror has done: one per Redis session, plus one
    /// each time the change log could not bridge a gap.
    pub fn full_loads(&self) -> u64 {
        self.full_loads.load(Ordering::Relaxed)
    }

    /// Whether the mirror's Redis session is up (loaded and following changes).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    fn install(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        let version = snapshot.version();
        let snapshot = Arc::new(snapshot);
        self.current.store(Some(Arc::clone(&snapshot)));
        self.version.send_if_modified(|current| {
            let changed = *current != version;
            *current = version;
            changed
        });
        self.loaded.send_replace(true);
        snapshot
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
    /// Reading the API key records failed.
    #[error(transparent)]
    ApiKeys(#[from] ApiKeyError),
    /// The subscription connection closed.
    #[error("change subscription closed")]
    SubscriptionClosed,
    /// The snapshot documents could not be serialised.
    #[error("cannot serialise snapshot: {0}")]
    Encode(#[from] serde_json::Error),
}

/// How far the change log brought the mirror.
enum CatchUp {
    /// Every change up to Redis's current version, oldest first, and the signing key set at that version (whose
    /// `version` is that version).
    Complete(KeyMaterial, Vec<Change>),
    /// The log does not reach back far enough, has a gap, an unusable entry, or the counter went back.
    Gap(&'static str),
}

/// The background task that keeps a [`Mirror`] in step with Redis.
pub(crate) struct MirrorTask {
    pub(crate) client: RedisTarget,
    pub(crate) names: KeyNames,
    pub(crate) issuer: String,
    pub(crate) clock: Clock,
    pub(crate) mirror: Arc<Mirror>,
    /// Unseals the active signing key.
    pub(crate) unsealer: Unsealer,
    /// Algorithm of the first key, if Redis has none.
    pub(crate) algorithm: Alg,
}

impl MirrorTask {
    /// Runs forever: one session per Redis connection, with exponential backoff between sessions.
    pub(crate) async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let Err(error) = self.session(&mut backoff).await;
            self.mirror.connected.store(false, Ordering::Relaxed);
            tracing::warn!(%error, retry_in = ?backoff, "redis mirror disconnected; serving the last snapshot");
            sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn session(&self, backoff: &mut Duration) -> Result<Infallible, SessionError> {
        // Subscribe before the full load, so no change can fall between the two.
        let mut pubsub = self
            .client
            .subscribe(&self.names.changes(), OP_TIMEOUT)
            .await?;
        let mut conn = self.client.connect(OP_TIMEOUT).await?;

        // Every session re-checks the active key: Redis may have been emptied while we were away.
        let ensured = keys::ensure_active(
            &mut conn,
            &self.names,
            self.unsealer.kek(),
            self.algorithm,
            self.clock.now_secs(),
        )
        .await?;
        if ensured.generated {
            tracing::info!(kid = %ensured.active_kid, alg = %self.algorithm, "generated and activated a new signing key");
        }
        let mut version = self.full_load(&mut conn).await?;
        self.mirror.connected.store(true, Ordering::Relaxed);
        *backoff = MIN_BACKOFF;

        let mut messages = pubsub.on_message();
        let mut gap_repair = interval_at(Instant::now() + GAP_REPAIR_INTERVAL, GAP_REPAIR_INTERVAL);
        gap_repair.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let message = message.ok_or(SessionError::SubscriptionClosed)?;
                    let announced: Option<u64> = message.get_payload().ok();
                    // Announcements of versions already applied arrive after a burst of changes: skip them. A
                    // counter that went back is found by the gap repair below.
                    if announced.is_none_or(|announced| announced > version) {
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

    /// Brings the mirror from its snapshot's version to Redis's current version through the change log, or with a
    /// full load if the log cannot; returns the version installed.
    async fn refresh(&self, conn: &mut RedisConnection) -> Result<u64, SessionError> {
        let Some(current) = self.mirror.snapshot() else {
            return self.full_load(conn).await;
        };
        match self.catch_up(conn, current.version()).await? {
            CatchUp::Complete(signing, changes) => {
                if changes.is_empty() {
                    return Ok(current.version());
                }
                let applied = changes.len();
                let mut snapshot = current.apply(signing, changes)?;
                snapshot
                    .forget_revocations_until(revocation::listing_cutoff(self.clock.now_secs()));
                tracing::debug!(
                    from = current.version(),
                    version = snapshot.version(),
                    applied,
                    api_keys = snapshot.api_key_count(),
                    "applied changes"
                );
                let version = snapshot.version();
                self.mirror.install(snapshot);
                Ok(version)
            }
            CatchUp::Gap(reason) => {
                tracing::info!(
                    from = current.version(),
                    reason,
                    "change log does not cover the update: full load"
                );
                self.full_load(conn).await
            }
        }
    }

    /// Reads the change log after `after` up to Redis's current version, in batches.
    async fn catch_up(
        &self,
        conn: &mut RedisConnection,
        after: u64,
    ) -> Result<CatchUp, SessionError> {
        let mut changes = Vec::new();
        let mut next = after;
        loop {
            let read =
                match load::read_since(conn, &self.names, &self.unsealer, next, READ_BATCH).await {
                    Ok(read) => read,
                    Err(ReadError::Redis(error)) => return Err(error.into()),
                    Err(ReadError::Entry(error)) => {
                        tracing::warn!(%error, "unusable change log entry");
                        return Ok(CatchUp::Gap("unusable entry"));
                    }
                };
            if read.version < after {
                return Ok(CatchUp::Gap("the version counter went back"));
            }
            let ChangesSince {
                version,
                changes: batch,
                signing,
            } = read;
            let batch_len = batch.len();
            for change in batch {
                if change.version != next + 1 {
                    return Ok(CatchUp::Gap("entries missing from the change log"));
                }
                next = change.version;
                changes.push(change);
            }
            if next == version {
                return Ok(CatchUp::Complete(signing, changes));
            }
            if batch_len < READ_BATCH {
                return Ok(CatchUp::Gap("versions without change log entries"));
            }
        }
    }

    /// Loads every API key record and the signing keys, and installs them; returns the version.
    ///
    /// `SCAN` is not atomic, so the records read are brought to one exact version with the change log entries
    /// written while scanning (re-applying a change the scan already saw is harmless: entries are keyed by hash).
    async fn full_load(&self, conn: &mut RedisConnection) -> Result<u64, SessionError> {
        self.mirror.full_loads.fetch_add(1, Ordering::Relaxed);
        let store = ApiKeyStore::new(self.names.clone());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let start: Option<u64> = redis::cmd("GET")
                .arg(self.names.version())
                .query_async(conn)
                .await?;
            let start = start.unwrap_or(0);
            // Disabled keys have no entries; a secret in its grace period has its own.
            let now = self.clock.now_secs();
            // Each record becomes its entries as it is read, straight into the snapshot's own map: neither every
            // record nor a second map of the entries is ever held (at a million keys, each cost hundreds of MiB).
            let mut keys = ApiKeySet::new();
            store
                .scan_each(conn, |record| {
                    for entry in record.bundle_entries(now) {
                        snapshot::put_key(&mut keys, entry);
                    }
                })
                .await?;
            let mut revoked =
                revocation::scan_revoked(conn, &self.names, self.clock.now_secs()).await?;
            let (signing, version) = match self.catch_up(conn, start).await? {
                CatchUp::Complete(signing, changes) => {
                    for change in changes {
                        for hash in change.delete {
                            keys.remove(hash.as_str());
                        }
                        for entry in change.put {
                            snapshot::put_key(&mut keys, entry);
                        }
                        revoked.extend(change.revoked);
                    }
                    let version = signing.version();
                    (signing, version)
                }
                CatchUp::Gap(reason) if attempt < FULL_LOAD_ATTEMPTS => {
                    tracing::debug!(
                        reason,
                        attempt,
                        "changes during the full load could not be ordered; loading again"
                    );
                    continue;
                }
                // Labelled with the version before the scan: the next refresh sees a newer one and loads again.
                CatchUp::Gap(reason) => {
                    tracing::warn!(reason, version = start, "changes during the full load could not be ordered; serving it as the version before them");
                    (
                        load::load_key_material(conn, &self.names, &self.unsealer).await?,
                        start,
                    )
                }
            };
            let mut signing = signing;
            signing.signing.version = version;
            let mut snapshot = Snapshot::with_key_set(signing, keys, &self.issuer, CHANGE_LOG_LEN)?
                .with_revoked_tokens(revoked);
            snapshot.forget_revocations_until(revocation::listing_cutoff(self.clock.now_secs()));
            let version = snapshot.version();
            tracing::info!(
                version,
                signing_keys = snapshot.kids().len(),
                active_kid = snapshot.active_key().map(SigningKey::kid),
                api_keys = snapshot.api_key_count(),
                revoked_tokens = snapshot.revoked_token_count(),
                "bundle content loaded"
            );
            let snapshot = self.mirror.install(snapshot);
            // After a load every filter asks for the full set (no delta reaches across it): sort the keys for
            // its pages now rather than on the first poll. The whole bundle in one document (older filters only)
            // is serialised when one asks: at 1M keys it is 180 MB.
            tokio::task::spawn_blocking(move || snapshot.prepare_pages());
            return Ok(version);
        }
    }
}
