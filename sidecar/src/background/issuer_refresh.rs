//! The background task that keeps external providers' keys current, in every replica.
//!
//! Each round looks at every registered provider (from the mirror: the same records the bundle is built from) and
//! its shared fetch status, and fetches those that are due:
//!
//! - never fetched, or the last success is `refresh_secs` old;
//! - a filter reported a `kid` the provider's keys lack, and the last attempt is `refetch_min_secs` old: a key
//!   rolled out by the provider arrives within about a second instead of at the next refresh, while a stream of
//!   made-up kids costs at most one fetch per provider per `refetch_min_secs`;
//! - but never while backing off after failures: 2 s after the first, doubling up to `refresh_secs`.
//!
//! A replica takes a short lock per provider before fetching, so replicas do not fetch the same provider at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::IssuerSettings;
use crate::issuers::{jwks_kids, ExternalIssuer, FetchStatus, Fetcher, IssuerError, IssuerStore};
use crate::mirror::Mirror;
use crate::store::connection::{RedisConnection, RedisTarget};
use crate::store::names::KeyNames;
use crate::support::clock::Clock;

/// How often each replica looks for due fetches when nothing asks sooner.
const ROUND: Duration = Duration::from_secs(1);
/// How long a replica may hold a provider's fetch lock (longer than a fetch can take).
const LOCK_SECS: u64 = 30;
/// Backoff after the first failure; it doubles with each further one, up to the refresh interval.
const FIRST_BACKOFF_SECS: u64 = 2;
/// Most reported kids kept between rounds; more are dropped (a flood of made-up kids must not grow memory).
const MAX_PENDING_KIDS: usize = 64;
const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// Kids the filters reported as unknown, waiting for the next round.
#[derive(Debug, Default)]
pub struct RefetchRequests {
    kids: Mutex<HashSet<String>>,
    wake: Notify,
}

impl RefetchRequests {
    /// Notes a reported kid and wakes the task; returns false if too many are waiting already.
    pub fn report(&self, kid: &str) -> bool {
        let Ok(mut kids) = self.kids.lock() else {
            return false;
        };
        if kids.len() >= MAX_PENDING_KIDS && !kids.contains(kid) {
            return false;
        }
        kids.insert(kid.to_owned());
        drop(kids);
        self.wake.notify_one();
        true
    }

    fn take(&self) -> HashSet<String> {
        self.kids
            .lock()
            .map(|mut kids| std::mem::take(&mut *kids))
            .unwrap_or_default()
    }
}

/// Whether `record` is due for a fetch at `now`, given its shared status and the kids reported since the last
/// round; and why, for the log.
pub fn due(
    record: &ExternalIssuer,
    status: &FetchStatus,
    reported: &HashSet<String>,
    settings: &IssuerSettings,
    now: u64,
) -> Option<&'static str> {
    if status.failures > 0 {
        let shift = status.failures.saturating_sub(1).min(20);
        let backoff = FIRST_BACKOFF_SECS
            .saturating_mul(1 << shift)
            .min(settings.refresh_secs);
        if now < status.last_attempt.saturating_add(backoff) {
            return None;
        }
    }
    if record.jwks.is_none() {
        return Some("no keys yet");
    }
    if now >= status.last_success.saturating_add(settings.refresh_secs) {
        return Some("refresh interval");
    }
    let kids = record.kids();
    let unknown = reported.iter().any(|kid| !kids.contains(&kid.as_str()));
    if unknown
        && now
            >= status
                .last_attempt
                .saturating_add(settings.refetch_min_secs)
    {
        return Some("unknown kid reported");
    }
    None
}

/// Fetches external providers' keys in the background.
pub(crate) struct IssuerTask {
    pub(crate) client: RedisTarget,
    pub(crate) names: KeyNames,
    pub(crate) mirror: Arc<Mirror>,
    pub(crate) settings: IssuerSettings,
    pub(crate) clock: Clock,
    pub(crate) requests: Arc<RefetchRequests>,
    /// Distinguishes this replica's locks from others'.
    pub(crate) replica: String,
}

impl IssuerTask {
    /// Runs forever, reconnecting after errors.
    pub(crate) async fn run(self) {
        let fetcher = Fetcher::new(self.settings.fetch_timeout);
        let mut backoff = ROUND;
        loop {
            let error = match self.connect().await {
                Ok(mut conn) => loop {
                    if let Err(error) = self.round(&mut conn, &fetcher).await {
                        break error;
                    }
                    backoff = ROUND;
                    tokio::select! {
                        () = tokio::time::sleep(ROUND) => {}
                        () = self.requests.wake.notified() => {}
                    }
                },
                Err(error) => error,
            };
            tracing::warn!(%error, retry_in = ?backoff, "external issuer refresh paused");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn connect(&self) -> Result<RedisConnection, IssuerError> {
        Ok(self.client.connect(OP_TIMEOUT).await?)
    }

    async fn round(
        &self,
        conn: &mut RedisConnection,
        fetcher: &Fetcher,
    ) -> Result<(), IssuerError> {
        let reported = self.requests.take();
        let Some(snapshot) = self.mirror.snapshot() else {
            return Ok(());
        };
        let records = snapshot.external_issuers();
        if records.is_empty() {
            return Ok(());
        }
        let store = IssuerStore::new(self.names.clone());
        let statuses = store.statuses(conn).await?;
        for record in records {
            let status = statuses.get(&record.issuer).cloned().unwrap_or_default();
            let now = self.clock.now_secs();
            let Some(reason) = due(record, &status, &reported, &self.settings, now) else {
                continue;
            };
            if !self.lock(conn, &record.issuer).await? {
                continue;
            }
            tracing::debug!(issuer = %record.issuer, reason, "fetching external issuer keys");
            let fetched = {
                let fetcher = fetcher.clone();
                let record = record.clone();
                tokio::task::spawn_blocking(move || fetcher.fetch(&record)).await
            };
            let now = self.clock.now_secs();
            match fetched {
                Ok(Ok(fetched)) => {
                    for skipped in &fetched.skipped {
                        tracing::debug!(issuer = %record.issuer, key = %skipped, "external key left out");
                    }
                    for refused in &fetched.refused {
                        tracing::warn!(issuer = %record.issuer, kid = %refused.kid, reason = %refused.reason,
                            "external key refused; the provider's other keys are kept");
                    }
                    let changed = store.store_keys(conn, record, &fetched, now).await?;
                    if changed {
                        tracing::info!(issuer = %record.issuer, kids = ?jwks_kids(&fetched.jwks), reason,
                            "external issuer keys changed");
                    }
                    store
                        .set_status(conn, &record.issuer, &FetchStatus::succeeded(now, &fetched))
                        .await?;
                }
                Ok(Err(error)) => {
                    let failures = status.failures.saturating_add(1);
                    tracing::warn!(issuer = %record.issuer, %error, failures,
                        "cannot fetch external issuer keys; keeping the keys held");
                    let failed = FetchStatus {
                        last_attempt: now,
                        failures,
                        last_error: Some(error.to_string()),
                        ..status
                    };
                    store.set_status(conn, &record.issuer, &failed).await?;
                }
                Err(error) => {
                    tracing::error!(issuer = %record.issuer, %error, "external issuer fetch task failed");
                }
            }
        }
        Ok(())
    }

    /// Takes this replica's short lock on fetching `issuer`; false if another replica holds it.
    async fn lock(&self, conn: &mut RedisConnection, issuer: &str) -> Result<bool, IssuerError> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.names.external_issuer_lock(issuer))
            .arg(&self.replica)
            .arg("NX")
            .arg("EX")
            .arg(LOCK_SECS)
            .query_async(conn)
            .await?;
        if taken.is_some() {
            return Ok(true);
        }
        // Ours from an earlier round that failed before releasing it: take it again.
        let holder: Option<String> = redis::cmd("GET")
            .arg(self.names.external_issuer_lock(issuer))
            .query_async(conn)
            .await?;
        Ok(holder.as_deref() == Some(self.replica.as_str()))
    }
}

/// A replica's id for its locks: the host name (if any), the process id and a random suffix.
pub(crate) fn replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::issuers::KeySource;
    use keymesh_core::bundle::JwksDto;

    fn record(kids: Option<&[&str]>) -> ExternalIssuer {
        ExternalIssuer {
            issuer: "https://idp".into(),
            source: KeySource::JwksUri("https://idp/jwks".into()),
            audiences: vec!["urn:a".into()],
            jwks: kids.map(|kids| JwksDto {
                keys: kids
                    .iter()
                    .map(|kid| {
                        serde_json::json!({ "kid": kid })
                            .as_object()
                            .unwrap()
                            .clone()
                    })
                    .collect(),
            }),
            keys_changed_at: 0,
            accept_typ: Vec::new(),
            accept_missing_typ: false,
            refused_keys: Vec::new(),
        }
    }

    fn reported(kids: &[&str]) -> HashSet<String> {
        kids.iter().map(|k| (*k).to_owned()).collect()
    }

    const SETTINGS: IssuerSettings = IssuerSettings {
        refresh_secs: 300,
        refetch_min_secs: 30,
        fetch_timeout: Duration::from_secs(5),
    };

    #[test]
    fn fetches_are_due_when_keys_are_missing_old_or_lack_a_reported_kid() {
        let fresh = FetchStatus {
            last_attempt: 1000,
            last_success: 1000,
            ..FetchStatus::default()
        };
        let none = reported(&[]);
        assert_eq!(
            due(&record(None), &FetchStatus::default(), &none, &SETTINGS, 5),
            Some("no keys yet")
        );
        let held = record(Some(&["k1"]));
        assert_eq!(due(&held, &fresh, &none, &SETTINGS, 1100), None);
        assert_eq!(
            due(&held, &fresh, &none, &SETTINGS, 1300),
            Some("refresh interval")
        );
        // A kid the keys have is no reason; an unknown one is, once the minimum interval has passed.
        assert_eq!(
            due(&held, &fresh, &reported(&["k1"]), &SETTINGS, 1100),
            None
        );
        assert_eq!(
            due(&held, &fresh, &reported(&["k2"]), &SETTINGS, 1029),
            None
        );
        assert_eq!(
            due(&held, &fresh, &reported(&["k2"]), &SETTINGS, 1030),
            Some("unknown kid reported")
        );
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_refresh_interval() {
        let held = record(None);
        let failed = |failures: u32| FetchStatus {
            last_attempt: 1000,
            failures,
            ..FetchStatus::default()
        };
        let none = reported(&[]);
        assert_eq!(due(&held, &failed(1), &none, &SETTINGS, 1001), None);
        assert!(due(&held, &failed(1), &none, &SETTINGS, 1002).is_some());
        assert_eq!(due(&held, &failed(3), &none, &SETTINGS, 1007), None);
        assert!(due(&held, &failed(3), &none, &SETTINGS, 1008).is_some());
        assert_eq!(due(&held, &failed(40), &none, &SETTINGS, 1299), None);
        assert!(due(&held, &failed(40), &none, &SETTINGS, 1300).is_some());
        // Backing off wins over a reported kid.
        assert_eq!(
            due(
                &record(Some(&["k1"])),
                &failed(3),
                &reported(&["k9"]),
                &SETTINGS,
                1005
            ),
            None
        );
    }

    #[test]
    fn reported_kids_are_bounded() {
        let requests = RefetchRequests::default();
        for i in 0..MAX_PENDING_KIDS {
            assert!(requests.report(&format!("k{i}")));
        }
        assert!(!requests.report("one-too-many"));
        assert!(requests.report("k0"), "a kid already waiting is fine");
        assert_eq!(requests.take().len(), MAX_PENDING_KIDS);
        assert!(requests.take().is_empty());
    }
}
