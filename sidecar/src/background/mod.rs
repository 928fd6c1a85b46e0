//! The background floor: tasks that change what Redis holds on their own schedule, started by the binary with
//! [`spawn_background`] next to the HTTP server. Key rotation moves signing keys along their lifecycle; issuer
//! refresh fetches external identity providers' keys. (The mirror task, which only reads, belongs to the mirror.)

pub mod issuer_refresh;
pub mod key_rotation;

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::keys::lifecycle::Schedule;
use crate::mirror::Mirror;
use crate::store::connection::RedisTarget;
use crate::store::names::KeyNames;
use crate::support::clock::Clock;
use crate::support::kek::{self, KekError};
use issuer_refresh::{IssuerTask, RefetchRequests};
use key_rotation::LifecycleTask;

/// Why the sidecar's tasks could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The Redis URL (or, in cluster mode, the key prefix) was rejected.
    #[error("invalid redis configuration: {0}")]
    RedisUrl(#[source] redis::RedisError),
    /// Called outside a Tokio runtime, so the tasks cannot be started.
    #[error("no tokio runtime to run the key-set mirror on")]
    NoRuntime,
    /// No key-encryption key: the sidecar could neither sign nor create a key.
    #[error(transparent)]
    Kek(#[from] KekError),
}

/// A spawned task, aborted when dropped.
#[derive(Debug)]
pub struct TaskHandle(JoinHandle<()>);

impl TaskHandle {
    /// Spawns `task` on the current Tokio runtime.
    pub fn spawn(
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<Self, StartError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        Ok(Self(runtime.spawn(task)))
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running background tasks; dropping it stops them.
#[derive(Debug)]
pub struct BackgroundTasks {
    _key_rotation: TaskHandle,
    _issuer_refresh: TaskHandle,
}

impl BackgroundTasks {
    /// Lets the tasks run until the runtime stops, instead of stopping them when this value is dropped.
    pub fn detach(self) {
        std::mem::forget(self);
    }
}

/// Starts key rotation and issuer refresh. `mirror` is the mirror the issuer refresh reads the current issuers
/// from; `refetch` is where filters' reports of unknown kids arrive. Must be called within a Tokio runtime.
pub fn spawn_background(
    config: &Config,
    clock: &Clock,
    mirror: Arc<Mirror>,
    refetch: Arc<RefetchRequests>,
) -> Result<BackgroundTasks, StartError> {
    let kek = kek::resolve(config.signing.kek.as_ref())?;
    let redis = RedisTarget::from_config(config).map_err(StartError::RedisUrl)?;
    let names = KeyNames::new(config.key_prefix.clone());
    let rotation = LifecycleTask {
        client: redis.clone(),
        names: names.clone(),
        kek,
        schedule: Schedule::from_config(config),
        clock: clock.clone(),
    };
    let issuers = IssuerTask {
        client: redis,
        names,
        mirror,
        settings: config.external_issuers,
        clock: clock.clone(),
        requests: refetch,
        replica: issuer_refresh::replica_id(),
    };
    Ok(BackgroundTasks {
        _key_rotation: TaskHandle::spawn(rotation.run())?,
        _issuer_refresh: TaskHandle::spawn(issuers.run())?,
    })
}
