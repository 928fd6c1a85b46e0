//! An immutable copy of the bundle's content at one version: the signing keys, the API keys, the revoked access
//! tokens, and the recent changes that lead to it, with the documents built from them serialised once and kept,
//! ready to serve.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use keymesh_core::bundle::{ApiKeyDto, IssuerKeysDto, JwksDto, PageDto, RevokedTokenDto};
use keymesh_core::KeySet;
use serde::Serialize;

use crate::issuers::ExternalIssuer;
use crate::keys::{PublishedKey, SigningKey};
use crate::mirror::delta_window::{ChangeLog, Delta, LoggedChange};
use crate::mirror::load::KeyMaterial;
use crate::store::commit::Change;

mod pages;

/// How many serialised deltas a snapshot keeps: filters mostly ask from one or two recent versions.
const DELTA_CACHE_LEN: usize = 8;

/// The API keys of a snapshot by hash. Keys and values are shared with the previous snapshot and the change log.
pub type ApiKeySet = imbl::HashMap<Arc<str>, Arc<ApiKeyDto>>;

/// Adds `entry` to `set` under its hash, replacing any entry with the same hash.
pub fn put_key(set: &mut ApiKeySet, entry: ApiKeyDto) {
    set.insert(Arc::from(entry.hash.as_str()), Arc::new(entry));
}

/// The revoked access tokens of a snapshot by `jti`, shared like [`ApiKeySet`].
type RevokedSet = imbl::OrdMap<String, Arc<RevokedTokenDto>>;

/// One version of the bundle's content as the sidecar serves it.
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    issuer: Arc<str>,
    active: Option<SigningKey>,
    kids: Vec<String>,
    issuers: Vec<IssuerKeysDto>,
    jwks_json: Bytes,
    api_keys: Arc<ApiKeySet>,
    revoked: Arc<RevokedSet>,
    /// The registered external identity providers, sorted by issuer.
    external: Vec<ExternalIssuer>,
    /// The sidecar's published keys as the filters' verifier holds them, to verify tokens this sidecar issued;
    /// `None` if they could not be read (logged), when no token verifies.
    own_keys: Option<Arc<KeySet>>,
    log: ChangeLog,
    /// The full bundle, serialised on first request (`None` if that failed): with many API keys it is large, and
    /// most filters only ever need deltas.
    full_bundle: OnceLock<Option<Bytes>>,
    deltas: Mutex<VecDeque<(u64, Bytes)>>,
    /// The API keys in the order pages are cut from (by hash bytes), built on the first page asked for.
    page_order: OnceLock<Vec<Arc<ApiKeyDto>>>,
}

/// The wire form of a bundle (a [`keymesh_core::bundle::BundleDto`]), borrowing from the snapshot.
#[derive(Serialize)]
struct BundleView<'a> {
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<u64>,
    issuers: &'a [IssuerKeysDto],
    api_keys: ChangesView<'a>,
    revoked_tokens: Vec<&'a RevokedTokenDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<PageDto>,
}

#[derive(Serialize)]
struct ChangesView<'a> {
    put: Vec<&'a ApiKeyDto>,
    delete: Vec<&'a str>,
}

/// Bytes of the hash a full bundle is first sorted by (zero-padded): 96 bits of a SHA-256, so ties are rare.
const SORT_PREFIX_LEN: usize = 16;

/// `entries` in the order of their hashes (as strings).
///
/// Comparing the hashes themselves follows two pointers per side (the entry, then its hash): at a million keys
/// those cache misses are most of the time a full bundle takes to build. A fixed-size prefix of each hash is kept
/// next to its entry instead, and compared in place; only equal prefixes compare the whole hashes. A zero-padded
/// prefix never orders two hashes against their string order, so the result is the same.
fn sorted_by_hash<'a>(entries: impl Iterator<Item = &'a ApiKeyDto>) -> Vec<&'a ApiKeyDto> {
    let mut keyed: Vec<([u8; SORT_PREFIX_LEN], &ApiKeyDto)> = entries
        .map(|entry| {
            let mut prefix = [0u8; SORT_PREFIX_LEN];
            for (to, from) in prefix.iter_mut().zip(entry.hash.bytes()) {
                *to = from;
            }
            (prefix, entry)
        })
        .collect();
    keyed.sort_unstable_by(|(a_prefix, a), (b_prefix, b)| {
        a_prefix.cmp(b_prefix).then_with(|| a.hash.cmp(&b.hash))
    });
    keyed.into_iter().map(|(_, entry)| entry).collect()
}

impl Snapshot {
    /// The snapshot of a complete state: the signing key set (whose version labels the snapshot) and every API
    /// key, for tokens issued by `issuer`. Its change log starts empty at this version and keeps up to
    /// `log_capacity` changes.
    pub fn full(
        signing: KeyMaterial,
        api_keys: impl IntoIterator<Item = ApiKeyDto>,
        issuer: &str,
        log_capacity: usize,
    ) -> Result<Self, serde_json::Error> {
        let mut set = ApiKeySet::new();
        for entry in api_keys {
            put_key(&mut set, entry);
        }
        Self::with_key_set(signing, set, issuer, log_capacity)
    }

    /// [`Snapshot::full`] with the API keys already in a set (built with [`put_key`]).
    pub fn with_key_set(
        signing: KeyMaterial,
        api_keys: ApiKeySet,
        issuer: &str,
        log_capacity: usize,
    ) -> Result<Self, serde_json::Error> {
        let log = ChangeLog::starting_at(signing.version(), log_capacity);
        Self::assemble(
            signing,
            Arc::from(issuer),
            Arc::new(api_keys),
            Arc::default(),
            log,
        )
    }

    /// This snapshot with `tokens` as its revoked access tokens (for a full load, before the snapshot is served).
    pub fn with_revoked_tokens(self, tokens: impl IntoIterator<Item = RevokedTokenDto>) -> Self {
        let revoked = tokens
            .into_iter()
            .map(|token| (token.jti.clone(), Arc::new(token)))
            .collect();
        Self {
            revoked: Arc::new(revoked),
            ..self
        }
    }

    /// Forgets revoked tokens whose `exp` is at or before `cutoff`: they fail on their own by then. Call it before
    /// the snapshot is served (the full bundle is built on first use).
    pub fn forget_revocations_until(&mut self, cutoff: i64) {
        if self.revoked.values().any(|token| token.exp <= cutoff) {
            let kept: RevokedSet = self
                .revoked
                .iter()
                .filter(|(_, token)| token.exp > cutoff)
                .map(|(jti, token)| (jti.clone(), Arc::clone(token)))
                .collect();
            self.revoked = Arc::new(kept);
        }
    }

    /// The snapshot after `changes`, which must be the contiguous changes after this snapshot's version up to
    /// `signing.version`; `signing` is the signing key set at that version.
    pub fn apply(
        &self,
        signing: KeyMaterial,
        changes: Vec<Change>,
    ) -> Result<Self, serde_json::Error> {
        let mut log = self.log.clone();
        let mut api_keys = Arc::clone(&self.api_keys);
        let mut revoked = Arc::clone(&self.revoked);
        for change in changes {
            let logged = LoggedChange {
                version: change.version,
                put: change.put.into_iter().map(Arc::new).collect(),
                delete: change.delete.into_iter().map(Arc::from).collect(),
                revoked: change.revoked.into_iter().map(Arc::new).collect(),
            };
            if !logged.revoked.is_empty() {
                let set = Arc::make_mut(&mut revoked);
                for token in &logged.revoked {
                    set.insert(token.jti.clone(), Arc::clone(token));
                }
            }
            if !logged.put.is_empty() || !logged.delete.is_empty() {
                // Copies the map's pointers once per batch, the first time it changes.
                let set = Arc::make_mut(&mut api_keys);
                for hash in &logged.delete {
                    set.remove(hash);
                }
                for entry in &logged.put {
                    set.insert(Arc::from(entry.hash.as_str()), Arc::clone(entry));
                }
            }
            log.push(Arc::new(logged));
        }
        Self::assemble(signing, Arc::clone(&self.issuer), api_keys, revoked, log)
    }

    fn assemble(
        signing: KeyMaterial,
        issuer: Arc<str>,
        api_keys: Arc<ApiKeySet>,
        revoked: Arc<RevokedSet>,
        log: ChangeLog,
    ) -> Result<Self, serde_json::Error> {
        let KeyMaterial {
            signing,
            issuers: external,
        } = signing;
        let jwks = JwksDto {
            keys: signing.keys.iter().map(PublishedKey::public_jwk).collect(),
        };
        let jwks_json = Bytes::from(serde_json::to_vec(&jwks)?);
        // Only a key this snapshot also publishes may sign.
        let active = signing.active.clone().filter(|key| {
            signing.active_kid.as_deref() == Some(key.kid())
                && signing
                    .keys
                    .iter()
                    .any(|published| published.kid() == key.kid())
        });
        if active.is_none() {
            tracing::warn!(active_kid = ?signing.active_kid, "no usable active signing key: token requests will fail");
        }
        let kids = signing
            .keys
            .iter()
            .map(|key| key.kid().to_owned())
            .collect();
        let own_keys = match KeySet::single_issuer(signing.version, &issuer, &jwks) {
            Ok(keys) => Some(Arc::new(keys)),
            Err(error) => {
                tracing::error!(%error, "cannot verify the sidecar's own keys: introspection will find no token active");
                None
            }
        };
        // The sidecar's own keys first, then each external provider that has keys, bound to its audiences. A
        // provider registered under the sidecar's own issuer would make the bundle ambiguous: it is left out.
        let own = IssuerKeysDto {
            issuer: issuer.to_string(),
            jwks,
            audiences: None,
            external: false,
            accept_typ: Vec::new(),
            accept_missing_typ: false,
        };
        let issuers = std::iter::once(own)
            .chain(
                external
                    .iter()
                    .filter(|record| record.issuer != *issuer)
                    .filter_map(ExternalIssuer::bundle_entry),
            )
            .collect();
        Ok(Self {
            version: signing.version,
            issuers,
            external,
            issuer,
            active,
            kids,
            jwks_json,
            api_keys,
            revoked,
            own_keys,
            log,
            full_bundle: OnceLock::new(),
            deltas: Mutex::new(VecDeque::new()),
            page_order: OnceLock::new(),
        })
    }

    /// The bundle version this snapshot describes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The key that signs new tokens, if the active kid names a usable key.
    pub fn active_key(&self) -> Option<&SigningKey> {
        self.active.as_ref()
    }

    /// The ids of all published keys, oldest first.
    pub fn kids(&self) -> &[String] {
        &self.kids
    }

    /// The public JWK Set (RFC 7517), serialised.
    pub fn jwks_json(&self) -> &Bytes {
        &self.jwks_json
    }

    /// The registered external identity providers, sorted by issuer.
    pub fn external_issuers(&self) -> &[ExternalIssuer] {
        &self.external
    }

    /// How many API keys the bundle holds.
    pub fn api_key_count(&self) -> usize {
        self.api_keys.len()
    }

    /// The API key entry with this hash, if any.
    pub fn api_key(&self, hash: &str) -> Option<&ApiKeyDto> {
        self.api_keys.get(hash).map(|entry| &**entry)
    }

    /// The sidecar's own published keys, for the filters' verifier; `None` if they could not be read.
    pub fn own_keys(&self) -> Option<&KeySet> {
        self.own_keys.as_deref()
    }

    /// How many revoked, not yet forgotten access tokens the bundle lists.
    pub fn revoked_token_count(&self) -> usize {
        self.revoked.len()
    }

    /// Whether the access token with this `jti` is listed as revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains_key(jti)
    }

    /// The oldest version a delta can start from.
    pub fn log_floor(&self) -> u64 {
        self.log.floor()
    }

    /// The full bundle if it has been serialised already (cheap; see [`Snapshot::full_bundle`]).
    pub fn cached_full_bundle(&self) -> Option<Bytes> {
        self.full_bundle.get().cloned().flatten()
    }

    /// The full bundle: every issuer and every API key (sorted by hash), serialised once, on first use; `None` if
    /// it cannot be serialised (logged).
    ///
    /// With many API keys this takes milliseconds: async callers run it on a blocking thread. Concurrent first
    /// callers wait for one serialisation rather than each making a copy.
    pub fn full_bundle(&self) -> Option<Bytes> {
        self.full_bundle
            .get_or_init(|| {
                let put = sorted_by_hash(self.api_keys.values().map(|entry| &**entry));
                let view = BundleView {
                    version: self.version,
                    since: None,
                    issuers: &self.issuers,
                    api_keys: ChangesView { put, delete: vec![] },
                    revoked_tokens: self.revoked.values().map(|token| &**token).collect(),
                    page: None,
                };
                match serde_json::to_vec(&view) {
                    Ok(bytes) => Some(Bytes::from(bytes)),
                    Err(error) => {
                        tracing::error!(%error, version = self.version, "cannot serialise the full bundle");
                        None
                    }
                }
            })
            .clone()
    }

    /// The delta that turns version `since` into this one, or `None` if the change log does not reach back to
    /// `since` (then only the full bundle will do).
    pub fn delta_bundle(&self, since: u64) -> Option<Result<Bytes, serde_json::Error>> {
        if let Some(bytes) = self.cached_delta(since) {
            return Some(Ok(bytes));
        }
        let Delta {
            put,
            delete,
            mut revoked,
        } = self.log.fold(since, self.version)?;
        // Revocations already forgotten (their tokens have expired) are left out, as from the full bundle.
        revoked.retain(|token| self.revoked.contains_key(&token.jti));
        let bytes = match serde_json::to_vec(&BundleView {
            version: self.version,
            since: Some(since),
            issuers: &self.issuers,
            api_keys: ChangesView { put, delete },
            revoked_tokens: revoked,
            page: None,
        }) {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) => return Some(Err(error)),
        };
        // A poisoned cache only costs recomputation.
        if let Ok(mut cache) = self.deltas.lock() {
            if !cache.iter().any(|(cached, _)| *cached == since) {
                if cache.len() >= DELTA_CACHE_LEN {
                    cache.pop_front();
                }
                cache.push_back((since, bytes.clone()));
            }
        }
        Some(Ok(bytes))
    }

    fn cached_delta(&self, since: u64) -> Option<Bytes> {
        let cache = self.deltas.lock().ok()?;
        cache
            .iter()
            .find(|(cached, _)| *cached == since)
            .map(|(_, bytes)| bytes.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use keymesh_core::bundle::BundleDto;

    use super::*;
    use crate::keys::StoredKeySet;
    use crate::store::commit::ChangeKind;

    /// Key material at `version` with one signing key, for the mirror's tests.
    pub(crate) fn signing(version: u64) -> KeyMaterial {
        let key = SigningKey::from_seed(&[3; 32], 0);
        KeyMaterial {
            signing: StoredKeySet {
                version,
                active_kid: Some(key.kid().to_owned()),
                keys: vec![key.published()],
                active: Some(key),
            },
            issuers: vec![],
        }
    }

    fn dto(hash: &str) -> ApiKeyDto {
        ApiKeyDto {
            hash: hash.into(),
            id: format!("ak_{hash}"),
            owner: "o".into(),
            resources: vec!["urn:a".into()],
            scopes: vec!["read".into()],
            expires_at: Some(2_000_000_000),
            tier: None,
        }
    }

    fn change(version: u64, put: &[&str], delete: &[&str]) -> Change {
        Change {
            version,
            kind: ChangeKind::ApiKeyPut,
            put: put.iter().map(|h| dto(h)).collect(),
            delete: delete.iter().map(|h| (*h).to_owned()).collect(),
            revoked: vec![],
        }
    }

    fn parse(bytes: &Bytes) -> BundleDto {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn full_and_delta_bundles_are_bundle_dtos() {
        let first = Snapshot::full(signing(3), [dto("b"), dto("a")], "https://i", 100).unwrap();
        let full = parse(&first.full_bundle().unwrap());
        assert_eq!((full.version, full.since), (3, None));
        assert_eq!(full.issuers[0].issuer, "https://i");
        let hashes: Vec<&str> = full.api_keys.put.iter().map(|e| e.hash.as_str()).collect();
        assert_eq!(hashes, ["a", "b"], "sorted by hash");
        assert!(full.api_keys.delete.is_empty());
        assert_eq!(full.api_keys.put[0], dto("a"));

        let next = first
            .apply(
                signing(5),
                vec![change(4, &["c"], &[]), change(5, &[], &["a"])],
            )
            .unwrap();
        assert_eq!(next.version(), 5);
        assert_eq!(next.api_key_count(), 2);
        assert!(next.api_key("a").is_none() && next.api_key("c").is_some());
        assert_eq!(first.api_key_count(), 2, "the older snapshot is unchanged");

        let delta = parse(&next.delta_bundle(3).unwrap().unwrap());
        assert_eq!((delta.version, delta.since), (5, Some(3)));
        assert_eq!(delta.api_keys.put, vec![dto("c")]);
        assert_eq!(delta.api_keys.delete, ["a"]);
        assert_eq!(
            delta.issuers, full.issuers,
            "issuers are complete in a delta"
        );
        // Served twice, the same bytes (the second from the cache).
        assert_eq!(
            next.delta_bundle(3).unwrap().unwrap(),
            next.delta_bundle(3).unwrap().unwrap()
        );
        assert!(next.delta_bundle(2).is_none(), "before the log");
        let full = parse(&next.full_bundle().unwrap());
        let hashes: Vec<&str> = full.api_keys.put.iter().map(|e| e.hash.as_str()).collect();
        assert_eq!(hashes, ["b", "c"]);
        assert!(full.revoked_tokens.is_empty());
    }

    #[test]
    fn full_bundles_follow_the_string_order_of_the_hashes_past_the_sort_prefix() {
        let long = "A".repeat(SORT_PREFIX_LEN);
        let hashes = [
            format!("{long}b"),
            format!("{long}a"),
            long.clone(),
            format!("{long}\0"),
            "AAAA".to_owned(),
            "AAA".to_owned(),
            "-_".to_owned(),
            "zz".to_owned(),
            "a".to_owned(),
        ];
        let snapshot =
            Snapshot::full(signing(1), hashes.iter().map(|h| dto(h)), "https://i", 10).unwrap();
        let full = parse(&snapshot.full_bundle().unwrap());
        let served: Vec<&str> = full.api_keys.put.iter().map(|e| e.hash.as_str()).collect();
        let mut expected: Vec<&str> = hashes.iter().map(String::as_str).collect();
        expected.sort_unstable();
        assert_eq!(served, expected);
    }

    fn revoked(jti: &str, exp: i64) -> RevokedTokenDto {
        RevokedTokenDto {
            jti: jti.into(),
            exp,
        }
    }

    fn revocation(version: u64, jti: &str, exp: i64) -> Change {
        Change {
            version,
            kind: ChangeKind::TokenRevoke,
            put: vec![],
            delete: vec![],
            revoked: vec![revoked(jti, exp)],
        }
    }

    #[test]
    fn revoked_tokens_are_listed_in_full_and_in_the_delta_window_until_forgotten() {
        let first = Snapshot::full(signing(3), [], "https://i", 100)
            .unwrap()
            .with_revoked_tokens([revoked("old", 500)]);
        assert!(first.is_revoked("old"));
        let mut next = first
            .apply(
                signing(5),
                vec![revocation(4, "a", 900), revocation(5, "b", 1_000)],
            )
            .unwrap();
        let full = parse(&next.full_bundle().unwrap());
        assert_eq!(
            full.revoked_tokens,
            [revoked("a", 900), revoked("b", 1_000), revoked("old", 500)]
        );
        let delta = parse(&next.delta_bundle(4).unwrap().unwrap());
        assert_eq!(delta.revoked_tokens, [revoked("b", 1_000)]);

        // Forgetting happens before a snapshot is served; a forgotten revocation leaves deltas too.
        let mut later = next.apply(signing(6), vec![change(6, &[], &[])]).unwrap();
        later.forget_revocations_until(900);
        assert_eq!(later.revoked_token_count(), 1);
        assert!(!later.is_revoked("a") && later.is_revoked("b"));
        let full = parse(&later.full_bundle().unwrap());
        assert_eq!(full.revoked_tokens, [revoked("b", 1_000)]);
        let delta = parse(&later.delta_bundle(3).unwrap().unwrap());
        assert_eq!(delta.revoked_tokens, [revoked("b", 1_000)]);
        next.forget_revocations_until(0);
        assert_eq!(next.revoked_token_count(), 3, "nothing expired at 0");
    }
}
