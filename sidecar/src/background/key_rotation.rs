//! Key rotation: the background task that moves signing keys along their lifecycle on schedule.

use std::time::Duration;

use crate::keys;
use crate::keys::lifecycle::{
    advance, list, rotate, KeyState, LifecycleError, Rotation, Schedule, Transition,
    LIFECYCLE_TICK, OP_TIMEOUT,
};
use crate::store::connection::{RedisConnection, RedisTarget};
use crate::store::names::KeyNames;
use crate::support::clock::Clock;
use crate::support::kek::Kek;

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The background task of `keymesh serve` that calls [`advance`] every [`LIFECYCLE_TICK`] and starts scheduled
/// rotations.
pub(crate) struct LifecycleTask {
    pub(crate) client: RedisTarget,
    pub(crate) names: KeyNames,
    pub(crate) kek: Kek,
    pub(crate) schedule: Schedule,
    pub(crate) clock: Clock,
}

impl LifecycleTask {
    /// Runs forever, reconnecting with backoff.
    pub(crate) async fn run(self) {
        let mut backoff = LIFECYCLE_TICK;
        loop {
            let error = match self.connect().await {
                Ok(mut conn) => loop {
                    if let Err(error) = self.tick(&mut conn).await {
                        break error;
                    }
                    backoff = LIFECYCLE_TICK;
                    tokio::time::sleep(LIFECYCLE_TICK).await;
                },
                Err(error) => error,
            };
            tracing::warn!(%error, retry_in = ?backoff, "signing key lifecycle paused");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect(&self) -> Result<RedisConnection, LifecycleError> {
        Ok(self.client.connect(OP_TIMEOUT).await?)
    }

    /// One round: advance, and rotate if due.
    pub(crate) async fn tick(&self, conn: &mut RedisConnection) -> Result<(), LifecycleError> {
        let now = self.clock.now_secs();
        let advanced = bounded(advance(conn, &self.names, now, &self.schedule)).await?;
        for transition in &advanced.transitions {
            match transition {
                Transition::Activated(kid) => tracing::info!(kid = %kid, "signing key activated"),
                Transition::Retiring(kid) => tracing::info!(
                    kid = %kid,
                    remove_at = now.saturating_add(self.schedule.retain_secs),
                    "signing key retiring: published until the tokens it signed have expired"
                ),
                Transition::Removed(kid) => {
                    tracing::info!(kid = %kid, "retired signing key removed")
                }
            }
        }
        if !advanced.rotation_due {
            return Ok(());
        }
        // A replica given the wrong KEK must not rotate in a key the others cannot unseal.
        let keys = bounded(list(conn, &self.names)).await?;
        let foreign = keys
            .iter()
            .filter(|key| matches!(key.state, KeyState::Active { .. }))
            .find_map(|key| key.sealed_with.as_deref().filter(|id| *id != self.kek.id()));
        if let Some(sealed_with) = foreign {
            tracing::warn!(
                sealed_with,
                kek = self.kek.id(),
                "scheduled rotation skipped: the active key is sealed under another key-encryption key"
            );
            return Ok(());
        }
        let key = keys::generate(self.schedule.algorithm, now).await?;
        let rotation = rotate(
            conn,
            &self.names,
            &self.kek,
            &key,
            now,
            self.schedule.publish_delay_secs,
            Some(self.schedule.rotation_interval_secs),
        );
        match bounded(rotation).await? {
            Rotation::Published {
                version,
                activate_at,
            } => tracing::info!(
                kid = %key.kid(), alg = %key.alg(), version, activate_at,
                "scheduled rotation: new signing key published"
            ),
            other => tracing::debug!(outcome = ?other, "scheduled rotation done elsewhere"),
        }
        Ok(())
    }
}

async fn bounded<T>(
    op: impl std::future::Future<Output = Result<T, LifecycleError>>,
) -> Result<T, LifecycleError> {
    tokio::time::timeout(OP_TIMEOUT, op)
        .await
        .map_err(|_| LifecycleError::Timeout)?
}
