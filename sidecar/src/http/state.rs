//! Shared application state: configuration, the bundle mirror, the request-path Redis connection and the
//! shutdown signal that ends long polls.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, OnceCell};

use crate::api_keys::{ApiKeyStore, UsageMinutes};
use crate::background::issuer_refresh::RefetchRequests;
use crate::background::{StartError, TaskHandle};
use crate::config::Config;
use crate::http::ops::telemetry::Telemetry;
use crate::keys::Unsealer;
use crate::mirror::{Mirror, MirrorTask};
use crate::oauth::clients::ClientStore;
use crate::store::connection::{RedisConnection, RedisTarget};
use crate::store::names::KeyNames;
use crate::support::argon2_slots::Argon2Slots;
use crate::support::clock::Clock;
use crate::support::kek;

/// Limit on request-path Redis operations, so a hung Redis turns into an error response rather than a hang.
const REQUEST_REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request waits for an Argon2 slot before it is answered 503: long enough to ride out a burst of
/// a few dozen verifications, short enough to stay within a client's timeout.
const ARGON2_SLOT_WAIT: Duration = Duration::from_secs(1);

/// Everything the handlers share. Cloning is cheap; the mirror task stops when the last clone is dropped.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: Config,
    names: KeyNames,
    clients: ClientStore,
    api_keys: ApiKeyStore,
    /// Which keys' last use this sidecar has recorded for the current minute.
    usage_minutes: UsageMinutes,
    redis: RedisTarget,
    /// Created on first use so the sidecar can start (and report 503) while Redis is still down; afterwards the
    /// connection reconnects by itself.
    conn: OnceCell<RedisConnection>,
    mirror: Arc<Mirror>,
    clock: Clock,
    /// `true` once shutdown has begun: long polls answer at once instead of holding the server open.
    shutdown: watch::Sender<bool>,
    telemetry: Telemetry,
    /// The cap on Argon2 verifications running at once.
    argon2: Argon2Slots,
    /// Unknown kids reported by filters, for the external issuer task.
    refetch: Arc<RefetchRequests>,
    _mirror_task: TaskHandle,
}

impl AppState {
    /// Creates the state and starts mirroring the key set from Redis in the background.
    ///
    /// Returns at once; [`AppState::ready`] completes when the first snapshot is loaded (which also generates the
    /// first signing key if Redis has none). Key rotation and issuer refresh are not started here: the binary
    /// starts them with [`crate::spawn_background`]. Fails without a key-encryption key. Must be called within a
    /// Tokio runtime.
    pub fn start(config: Config, clock: Clock) -> Result<Self, StartError> {
        let kek = kek::resolve(config.signing.kek.as_ref())?;
        let redis = RedisTarget::from_config(&config).map_err(StartError::RedisUrl)?;
        let names = KeyNames::new(config.key_prefix.clone());
        let mirror = Arc::new(Mirror::new());
        let task = MirrorTask {
            client: redis.clone(),
            names: names.clone(),
            issuer: config.issuer.clone(),
            clock: clock.clone(),
            mirror: Arc::clone(&mirror),
            unsealer: Unsealer::new(kek),
            algorithm: config.signing.algorithm,
        };
        let mirror_task = TaskHandle::spawn(task.run())?;
        let argon2 = Argon2Slots::new(config.argon2_concurrency, ARGON2_SLOT_WAIT);
        Ok(Self {
            inner: Arc::new(Inner {
                clients: ClientStore::new(names.clone()),
                api_keys: ApiKeyStore::new(names.clone()),
                usage_minutes: UsageMinutes::default(),
                config,
                names,
                redis,
                conn: OnceCell::new(),
                mirror,
                clock,
                shutdown: watch::Sender::new(false),
                telemetry: Telemetry::new(),
                argon2,
                refetch: Arc::new(RefetchRequests::default()),
                _mirror_task: mirror_task,
            }),
        })
    }

    /// The mirror and the refetch queue, shared with the background tasks.
    pub(crate) fn shared_with_background(&self) -> (Arc<Mirror>, Arc<RefetchRequests>) {
        (
            Arc::clone(&self.inner.mirror),
            Arc::clone(&self.inner.refetch),
        )
    }

    /// Where filters' reports of unknown kids go.
    pub fn refetch_requests(&self) -> &RefetchRequests {
        &self.inner.refetch
    }

    /// Completes once the first snapshot of the key set is loaded.
    pub async fn ready(&self) {
        self.inner.mirror.ready().await;
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The Redis key names.
    pub fn names(&self) -> &KeyNames {
        &self.inner.names
    }

    /// The key-set mirror.
    pub fn mirror(&self) -> &Mirror {
        &self.inner.mirror
    }

    /// The client records.
    pub fn clients(&self) -> &ClientStore {
        &self.inner.clients
    }

    /// The API key records.
    pub fn api_keys(&self) -> &ApiKeyStore {
        &self.inner.api_keys
    }

    /// Which keys' last use this sidecar has recorded for the current minute.
    pub fn usage_minutes(&self) -> &UsageMinutes {
        &self.inner.usage_minutes
    }

    /// Ends every held long poll (with `304`) and makes new ones answer at once. Call it when graceful shutdown
    /// begins, so the server does not wait up to a minute for polls to time out.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Whether [`AppState::begin_shutdown`] has been called.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Completes once [`AppState::begin_shutdown`] has been called.
    pub fn shutting_down(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut shutdown = self.inner.shutdown.subscribe();
        async move {
            // The sender lives in the state this future was made from; if it is gone, so is the server.
            let _ = shutdown.wait_for(|down| *down).await;
        }
    }

    /// Proxy freshness and request counters.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// The cap on Argon2 verifications (client secrets an operator chose, user passwords).
    pub fn argon2_slots(&self) -> &Argon2Slots {
        &self.inner.argon2
    }

    /// The clock used for issued tokens.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// A handle on the shared request-path Redis connection, connecting on first use.
    pub async fn redis(&self) -> redis::RedisResult<RedisConnection> {
        let conn = self
            .inner
            .conn
            .get_or_try_init(|| self.inner.redis.connect_reconnecting(REQUEST_REDIS_TIMEOUT))
            .await?;
        Ok(conn.clone())
    }
}
