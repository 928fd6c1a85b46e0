//! API keys in buckets and the interned rights table, through applies and lookups: collisions, contention, a
//! growing rights table, full buckets, damaged bytes.

use super::*;
use crate::delivery::bucket::{BucketView, KeyHash, BUCKETS};
use crate::delivery::rights::parse_list;
use base64ct::{Base64UrlUnpadded, Encoding};

const BUCKET_PREFIX: &str = "keymesh.authn.v3/sidecar/v1/bundle/s1/ak/";
const RIGHTS_KEY: &str = "keymesh.authn.v3/sidecar/v1/bundle/rights";

/// A wire hash whose bucket is `bucket`, told apart by `n`.
fn hash_in(bucket: u16, n: u16) -> String {
    let mut bytes = [7u8; 32];
    bytes[..2].copy_from_slice(&(bucket << 4).to_be_bytes());
    bytes[30..].copy_from_slice(&n.to_be_bytes());
    Base64UrlUnpadded::encode_string(&bytes)
}

fn key_with(hash: &str, resource: &str, scopes: &[&str]) -> Value {
    json!({"hash": hash, "id": format!("ak_{}", &hash[..8]), "owner": "bob", "resources": [resource],
           "scopes": scopes})
}

fn bundle(version: u64, since: Option<u64>, put: &[Value], delete: &[String]) -> Vec<u8> {
    let mut body =
        json!({"version": version, "issuers": [], "api_keys": {"put": put, "delete": delete}});
    if let Some(since) = since {
        body["since"] = json!(since);
    }
    serde_json::to_vec(&body).unwrap()
}

fn bucket_key(bucket: u16) -> String {
    format!("{BUCKET_PREFIX}{bucket:03x}")
}

fn rights_len(shared: &InMemorySharedData) -> usize {
    parse_list(&shared.get(RIGHTS_KEY).unwrap().bytes)
        .unwrap()
        .len()
}

#[test]
fn keys_sharing_a_bucket_are_found_and_revoked_apart() {
    let shared = InMemorySharedData::new();
    let (fetcher, other) = (worker(&shared), worker(&shared));
    let (a, b) = (hash_in(0x2a1, 1), hash_in(0x2a1, 2));
    let put = [
        key_with(&a, "https://api", &["read"]),
        key_with(&b, "https://api", &["write"]),
    ];
    assert_eq!(
        apply(&fetcher, &bundle(1, None, &put, &[]), NOW_MS),
        stored()
    );
    let bucket = BucketView::new(&shared.get(&bucket_key(0x2a1)).unwrap().bytes)
        .unwrap()
        .len();
    assert_eq!(bucket, 2, "one value holds both keys");
    assert_eq!(other.snapshot().api_key(&a).unwrap().scopes, ["read"]);
    assert_eq!(other.snapshot().api_key(&b).unwrap().scopes, ["write"]);

    // Revoking one rewrites the bucket without the other; the next request sees it.
    apply(
        &fetcher,
        &bundle(2, Some(1), &[], std::slice::from_ref(&a)),
        NOW_MS,
    );
    assert!(other.snapshot().api_key(&a).is_none());
    let kept = other.snapshot().api_key(&b).unwrap();
    assert_eq!(
        (kept.id.as_str(), kept.owner.as_str()),
        (&*format!("ak_{}", &b[..8]), "bob")
    );
    assert_eq!(kept.resources, ["https://api"]);
}

#[test]
fn a_revoked_key_in_a_full_bucket_is_refused_and_the_rest_of_the_bucket_kept() {
    let shared = InMemorySharedData::new();
    let (fetcher, other) = (worker(&shared), worker(&shared));
    let hashes: Vec<String> = (0..300).map(|n| hash_in(0xfff, n)).collect();
    let put: Vec<Value> = hashes
        .iter()
        .map(|h| key_with(h, "https://api", &[]))
        .collect();
    apply(&fetcher, &bundle(1, None, &put, &[]), NOW_MS);
    let revoked = hashes[150].clone();
    assert!(other.snapshot().api_key(&revoked).is_some());
    apply(
        &fetcher,
        &bundle(2, Some(1), &[], std::slice::from_ref(&revoked)),
        NOW_MS,
    );
    let snapshot = other.snapshot();
    assert!(snapshot.api_key(&revoked).is_none());
    assert!(hashes
        .iter()
        .filter(|h| **h != revoked)
        .all(|h| snapshot.api_key(h).is_some()));
    assert_eq!(BUCKETS - 1, 0xfff);
}

#[test]
fn rights_are_interned_once_and_an_index_keeps_its_meaning_across_resyncs() {
    let shared = InMemorySharedData::new();
    let (fetcher, other) = (worker(&shared), worker(&shared));
    let (a, b, c, d) = (hash_in(1, 1), hash_in(2, 1), hash_in(3, 1), hash_in(4, 1));
    let put = [
        key_with(&a, "https://api", &["read"]),
        key_with(&b, "https://api", &["read"]),
        key_with(&c, "https://api", &["read", "write"]),
    ];
    apply(&fetcher, &bundle(1, None, &put, &[]), NOW_MS);
    assert_eq!(rights_len(&shared), 2, "three keys, two distinct rights");
    // The other worker parses the table once.
    assert_eq!(
        other.snapshot().api_key(&c).unwrap().scopes,
        ["read", "write"]
    );

    // A delta with new rights grows the table; the other worker's copy is too short and is re-read.
    let gold = json!({"hash": d, "id": "ak_d", "owner": "carol", "resources": ["https://api"], "tier": "gold"});
    apply(&fetcher, &bundle(2, Some(1), &[gold], &[]), NOW_MS);
    assert_eq!(rights_len(&shared), 3);
    let found = other.snapshot().api_key(&d).unwrap();
    assert_eq!(found.tier.as_deref(), Some("gold"));
    assert!(found.scopes.is_empty());

    // A full resync listing the rights in another order appends nothing and moves no index: a bucket still
    // under the old floor resolves to what it was written with.
    let before = shared.get(RIGHTS_KEY).unwrap().bytes;
    let reordered = [
        key_with(&c, "https://api", &["read", "write"]),
        key_with(&a, "https://api", &["read"]),
    ];
    apply(&fetcher, &bundle(3, None, &reordered, &[]), NOW_MS);
    assert_eq!(shared.get(RIGHTS_KEY).unwrap().bytes, before);
    assert_eq!(other.snapshot().api_key(&a).unwrap().scopes, ["read"]);
    assert_eq!(
        other.snapshot().api_key(&c).unwrap().scopes,
        ["read", "write"]
    );
    assert!(
        other.snapshot().api_key(&b).is_none(),
        "left out of the resync"
    );
    assert!(
        other.snapshot().api_key(&d).is_none(),
        "left out of the resync"
    );
}

#[test]
fn damaged_bucket_bytes_make_its_keys_unknown_and_the_next_write_repairs_it() {
    let shared = InMemorySharedData::new();
    let (fetcher, other) = (worker(&shared), worker(&shared));
    let (a, b) = (hash_in(0x100, 1), hash_in(0x100, 2));
    apply(
        &fetcher,
        &bundle(1, None, &[key_with(&a, "https://api", &[])], &[]),
        NOW_MS,
    );
    let good = shared.get(&bucket_key(0x100)).unwrap().bytes;
    for damaged in [&b"garbage"[..], b"", &good[..good.len() - 1], &good[..20]] {
        shared.set(&bucket_key(0x100), damaged, None).unwrap();
        assert!(other.snapshot().api_key(&a).is_none(), "{damaged:?}");
    }
    // A hash that is not base64url SHA-256 names no key (and costs no shared-data read).
    assert!(other.snapshot().api_key("not a hash").is_none());
    // A delta touching the bucket starts it afresh: what it puts is there, nothing is made up.
    apply(
        &fetcher,
        &bundle(2, Some(1), &[key_with(&b, "https://api", &[])], &[]),
        NOW_MS,
    );
    assert!(other.snapshot().api_key(&b).is_some());
    assert!(other.snapshot().api_key(&a).is_none());
}

#[test]
fn an_entry_naming_rights_the_table_does_not_have_is_an_unknown_key() {
    let shared = InMemorySharedData::new();
    let (fetcher, other) = (worker(&shared), worker(&shared));
    let a = hash_in(9, 1);
    apply(
        &fetcher,
        &bundle(1, None, &[key_with(&a, "https://api", &[])], &[]),
        NOW_MS,
    );
    shared.set(RIGHTS_KEY, b"[]", None).unwrap();
    assert!(other.snapshot().api_key(&a).is_none());
    shared.set(RIGHTS_KEY, b"{damaged", None).unwrap();
    assert!(other.snapshot().api_key(&a).is_none());
    // Nothing is appended to a table that does not parse: indexes handed out would change meaning.
    let b = hash_in(9, 2);
    assert!(matches!(
        apply(
            &fetcher,
            &bundle(2, Some(1), &[key_with(&b, "https://other", &[])], &[]),
            NOW_MS
        ),
        Applied::Failed(DeliveryError::RightsTableDamaged(_))
    ));
    assert_eq!(fetcher.shared_version(), Some(1));
}

/// Shared data where another writer rewrites a bucket right before each of our next `conflicts` compare-and-swap
/// writes to it, adding a key of its own each time.
struct ContendedBucket {
    inner: InMemorySharedData,
    conflicts: Cell<u16>,
}

impl SharedData for ContendedBucket {
    fn get(&self, key: &str) -> Option<SharedValue> {
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        if key.contains("/ak/") && cas.is_some() && self.conflicts.get() > 0 {
            let n = self.conflicts.get();
            self.conflicts.set(n - 1);
            let current = self.inner.get(key).unwrap();
            let mut bucket = crate::delivery::bucket::Bucket::decode(&current.bytes).unwrap();
            let theirs = KeyHash::parse(&hash_in(0x0aa, 100 + n)).unwrap();
            bucket.put(crate::delivery::bucket::BucketEntry {
                hash: theirs,
                rights: 0,
                expires_at: None,
                id: format!("ak_theirs{n}"),
                owner: "them".into(),
            });
            self.inner
                .set(key, &bucket.encode().unwrap(), None)
                .unwrap();
        }
        self.inner.set(key, value, cas)
    }

    fn change_count(&self) -> Option<u64> {
        self.inner.change_count()
    }

    fn count_change(&self) {
        self.inner.count_change();
    }
}

#[test]
fn a_bucket_rewrite_that_loses_a_compare_and_swap_reads_again_and_keeps_the_other_write() {
    let contended = ContendedBucket {
        inner: InMemorySharedData::new(),
        conflicts: Cell::new(0),
    };
    let fetcher = SharedKeyMaterial::new(contended, "sidecar", "/v1/bundle");
    let (a, b) = (hash_in(0x0aa, 1), hash_in(0x0aa, 2));
    apply(
        &fetcher,
        &bundle(1, None, &[key_with(&a, "https://api", &[])], &[]),
        NOW_MS,
    );
    fetcher.shared.conflicts.set(2);
    assert_eq!(
        apply(
            &fetcher,
            &bundle(2, Some(1), &[key_with(&b, "https://api", &[])], &[]),
            NOW_MS
        ),
        stored()
    );
    let snapshot = fetcher.snapshot();
    for hash in [&a, &b, &hash_in(0x0aa, 102), &hash_in(0x0aa, 101)] {
        assert!(snapshot.api_key(hash).is_some(), "{hash}");
    }

    // A writer that never lets go: the apply reports it, and the record stays where it was.
    fetcher.shared.conflicts.set(1000);
    assert_eq!(
        apply(
            &fetcher,
            &bundle(3, Some(2), &[], std::slice::from_ref(&a)),
            NOW_MS
        ),
        Applied::Failed(DeliveryError::Contention(bucket_key(0x0aa)))
    );
    assert_eq!(fetcher.shared_version(), Some(2));
}

#[test]
fn a_bucket_already_written_by_a_newer_version_is_left_alone() {
    // A root that lost the fetch lease mid-apply finishes an older delta after its successor wrote a newer one.
    let shared = InMemorySharedData::new();
    let (late, successor) = (worker(&shared), worker(&shared));
    let a = hash_in(0x333, 1);
    apply(
        &successor,
        &bundle(1, None, &[key_with(&a, "https://api", &[])], &[]),
        NOW_MS,
    );
    apply(
        &successor,
        &bundle(3, Some(1), &[], std::slice::from_ref(&a)),
        NOW_MS,
    );
    let body = bundle(2, Some(1), &[key_with(&a, "https://api", &[])], &[]);
    let received = ReceivedBundle::parse(&body).unwrap();
    // The late root checked the record before its successor moved it; it writes the bucket anyway (it cannot
    // know), and must not bring the revoked key back.
    let target = crate::delivery::apply_keys::BucketWrite {
        slot: 1,
        version: 2,
        full: false,
        floor: 1,
    };
    late.store_api_keys(target, &[], &received.rights, &received.body)
        .unwrap();
    assert!(successor.snapshot().api_key(&a).is_none());
}

/// Shared data that refuses every bucket write after the first `allowed`.
struct FailingBuckets {
    inner: InMemorySharedData,
    allowed: Cell<usize>,
}

impl SharedData for FailingBuckets {
    fn get(&self, key: &str) -> Option<SharedValue> {
        self.inner.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedDataError> {
        if key.contains("/ak/") {
            if self.allowed.get() == 0 {
                return Err(SharedDataError::Refused);
            }
            self.allowed.set(self.allowed.get() - 1);
        }
        self.inner.set(key, value, cas)
    }

    fn change_count(&self) -> Option<u64> {
        self.inner.change_count()
    }

    fn count_change(&self) {
        self.inner.count_change();
    }
}

#[test]
fn a_full_resync_that_fails_half_way_exposes_no_version_and_kills_no_key() {
    let failing = FailingBuckets {
        inner: InMemorySharedData::new(),
        allowed: Cell::new(usize::MAX),
    };
    let fetcher = SharedKeyMaterial::new(failing, "sidecar", "/v1/bundle");
    let other = worker(&fetcher.shared.inner);
    // v1: 64 keys in 64 buckets.
    let old: Vec<String> = (0..64).map(|n| hash_in(n * 64, 1)).collect();
    let put: Vec<Value> = old
        .iter()
        .map(|h| key_with(h, "https://api", &[]))
        .collect();
    apply(&fetcher, &bundle(1, None, &put, &[]), NOW_MS);
    // v5 arrives as a full resync: the same keys but the first, plus 64 new ones. The host refuses bucket writes
    // part of the way through.
    let new: Vec<String> = (0..64).map(|n| hash_in(n * 64 + 1, 1)).collect();
    let mut resync: Vec<Value> = old[1..]
        .iter()
        .chain(&new)
        .map(|h| key_with(h, "https://api", &[]))
        .collect();
    resync.sort_by(|a, b| {
        let bucket = |v: &Value| KeyHash::parse(v["hash"].as_str().unwrap()).unwrap();
        bucket(a).cmp(&bucket(b))
    });
    fetcher.shared.allowed.set(40);
    let body = bundle(5, None, &resync, &[]);
    assert!(matches!(
        apply(&fetcher, &body, NOW_MS),
        Applied::Failed(DeliveryError::Write { .. })
    ));
    // No version is exposed: the record, its floor and the issuers stay at v1, so no bucket left unwritten is
    // dead, and every key v5 keeps is still accepted wherever the resync stopped.
    let record = other.record().0.unwrap();
    assert_eq!((record.version, record.floor), (1, 1));
    let snapshot = other.snapshot();
    assert_eq!(snapshot.keys().map(|keys| keys.version()), Some(1));
    assert!(old[1..].iter().all(|h| snapshot.api_key(h).is_some()));
    assert!(
        snapshot.api_key(&old[0]).is_some(),
        "v5 deletes it, but v5 is not in force"
    );
    assert!(
        new.iter().all(|h| snapshot.api_key(h).is_none()),
        "v5's new keys are not in force either"
    );
    // The next full bundle (asked for after a failure) completes it.
    fetcher.shared.allowed.set(usize::MAX);
    assert_eq!(apply(&fetcher, &body, NOW_MS), stored());
    let snapshot = other.snapshot();
    assert!(snapshot.api_key(&old[0]).is_none());
    assert!(old[1..]
        .iter()
        .chain(&new)
        .all(|h| snapshot.api_key(h).is_some()));
    assert_eq!(other.record().0.unwrap().floor, 5);
}

#[test]
fn a_regenerated_key_keeps_its_old_secret_as_a_second_entry_with_its_own_expiry() {
    let shared = InMemorySharedData::new();
    let (fetcher, other) = (worker(&shared), worker(&shared));
    let (old, new) = (hash_in(0x500, 1), hash_in(0x777, 1));
    let grace_end = now_secs() + 600;
    let put = [
        json!({"hash": old, "id": "ak_same", "owner": "bob", "resources": ["https://api"], "tier": "pro",
               "expires_at": grace_end}),
        json!({"hash": new, "id": "ak_same", "owner": "bob", "resources": ["https://api"], "tier": "pro"}),
    ];
    apply(&fetcher, &bundle(1, None, &put, &[]), NOW_MS);
    assert_eq!(rights_len(&shared), 1, "both secrets share the rights");
    let (old_entry, new_entry) = (
        other.snapshot().api_key(&old).unwrap(),
        other.snapshot().api_key(&new).unwrap(),
    );
    assert_eq!(
        (old_entry.id.as_str(), old_entry.expires_at),
        ("ak_same", Some(grace_end))
    );
    assert_eq!(
        (new_entry.id.as_str(), new_entry.expires_at),
        ("ak_same", None)
    );
    assert_eq!(new_entry.tier.as_deref(), Some("pro"));
}
