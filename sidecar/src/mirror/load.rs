//! Reading the bundle's state from Redis: the signing keys with the external issuers (always whole: they are
//! small), and the change log after a version (see [`crate::store::commit`] for its format).

use std::collections::HashMap;

use redis::aio::ConnectionLike;

use crate::issuers::{self, ExternalIssuer};
use crate::keys::{self, KeyStoreError, StoredKeySet, Unsealer};
use crate::store::commit::{self, Change, EntryError};
use crate::store::names::KeyNames;

/// What the bundle trusts at one version: the sidecar's own signing keys and the external identity providers.
#[derive(Debug, Clone)]
pub struct KeyMaterial {
    /// The signing key set; its `version` labels the whole.
    pub signing: StoredKeySet,
    /// The registered external identity providers, sorted by issuer.
    pub issuers: Vec<ExternalIssuer>,
}

impl KeyMaterial {
    /// The bundle version this material belongs to.
    pub fn version(&self) -> u64 {
        self.signing.version
    }
}

/// Reads the version, the signing keys and the external issuers in one `MULTI`, so the version matches the
/// content.
pub async fn load_key_material<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    unsealer: &Unsealer,
) -> Result<KeyMaterial, KeyStoreError> {
    type Read = (
        Option<u64>,
        Option<String>,
        HashMap<String, String>,
        HashMap<String, String>,
    );
    let (version, active_kid, records, external): Read = redis::pipe()
        .atomic()
        .get(names.version())
        .get(names.signing_active())
        .hgetall(names.signing_keys())
        .hgetall(names.external_issuers())
        .query_async(conn)
        .await?;
    Ok(KeyMaterial {
        signing: keys::key_set(version.unwrap_or(0), active_kid, &records, unsealer),
        issuers: issuers::parse_records(&external),
    })
}

/// Why the change log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// An entry could not be used.
    #[error(transparent)]
    Entry(#[from] EntryError),
}

/// The changes after a version, read in one atomic step with the current version and signing key set.
#[derive(Debug)]
pub struct ChangesSince {
    /// The current version in Redis (0 if never set).
    pub version: u64,
    /// The logged changes after the requested version, oldest first, at most the requested number. Their
    /// versions are not checked here: the caller decides what a gap means.
    pub changes: Vec<Change>,
    /// The signing keys and external issuers at `version`.
    pub signing: KeyMaterial,
}

/// Reads up to `limit` changes after version `after`, with the current version and signing keys, in one `MULTI`.
pub async fn read_since<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &KeyNames,
    unsealer: &Unsealer,
    after: u64,
    limit: usize,
) -> Result<ChangesSince, ReadError> {
    type RawEntry = (String, Vec<String>);
    type Read = (
        Option<u64>,
        Vec<RawEntry>,
        Option<String>,
        HashMap<String, String>,
        HashMap<String, String>,
    );
    let (version, entries, active_kid, records, external): Read = redis::pipe()
        .atomic()
        .get(names.version())
        .cmd("XRANGE")
        .arg(names.changelog())
        .arg(after.saturating_add(1))
        .arg("+")
        .arg("COUNT")
        .arg(limit)
        .get(names.signing_active())
        .hgetall(names.signing_keys())
        .hgetall(names.external_issuers())
        .query_async(conn)
        .await?;
    let version = version.unwrap_or(0);
    let changes = entries
        .into_iter()
        .map(|(id, fields)| commit::parse_entry(&id, &fields))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ChangesSince {
        version,
        changes,
        signing: KeyMaterial {
            signing: keys::key_set(version, active_kid, &records, unsealer),
            issuers: issuers::parse_records(&external),
        },
    })
}
