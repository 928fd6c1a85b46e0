//! The full bundle of a snapshot in pages of bounded size, for filters that ask for it so (`page=…`).
//!
//! The API keys are cut into runs of at most [`PAGE_BYTES`] of JSON (a single larger key makes a page of its
//! own), in the order of their hashes' bytes — the order of the filter's buckets, so a bucket is rewritten at
//! most once per page boundary. A page is a full bundle document with `page: {from, next, keys}`; the first
//! carries the issuers and the revoked tokens, the others the keys alone. The order is built once per snapshot,
//! on the first page asked for; a page is serialised when asked for (a few hundred KiB, well under a
//! millisecond per hundred keys), so a snapshot never holds the whole bundle serialised for paging clients.

use std::cmp::Ordering;
use std::io;
use std::sync::Arc;

use axum::body::Bytes;
use keymesh_core::bundle::{ApiKeyDto, PageDto};

use super::{BundleView, ChangesView, Snapshot};

/// Most bytes of API keys one page carries (the first page adds the issuers and the revoked tokens).
pub const PAGE_BYTES: usize = 256 * 1024;

impl Snapshot {
    /// Whether the order pages are cut from is built already (then a page is cheap to serve inline).
    pub fn page_order_ready(&self) -> bool {
        self.page_order.get().is_some()
    }

    /// The page whose first API key is at position `from` of this snapshot's key list; `None` if `from` is past
    /// its end (`from` equal to the number of keys is the empty last page of an empty list only).
    ///
    /// Builds the key order on first use (a sort of every key: milliseconds per hundred thousand keys), so async
    /// callers run it on a blocking thread unless [`Snapshot::page_order_ready`].
    pub fn page(&self, from: u64) -> Option<Result<Bytes, serde_json::Error>> {
        let order = self.page_order();
        let start = usize::try_from(from).ok()?;
        if start > order.len() || (start == order.len() && start > 0) {
            return None;
        }
        let mut end = start;
        let mut bytes = 0usize;
        for key in order.get(start..).unwrap_or_default() {
            let len = match json_len(&**key) {
                Ok(len) => len.saturating_add(1),
                Err(error) => return Some(Err(error)),
            };
            if end > start && bytes.saturating_add(len) > PAGE_BYTES {
                break;
            }
            bytes = bytes.saturating_add(len);
            end += 1;
        }
        let first = start == 0;
        let view = BundleView {
            version: self.version,
            since: None,
            issuers: if first { &self.issuers } else { &[] },
            api_keys: ChangesView {
                put: order
                    .get(start..end)
                    .unwrap_or_default()
                    .iter()
                    .map(|key| &**key)
                    .collect(),
                delete: vec![],
            },
            revoked_tokens: if first {
                self.revoked.values().map(|token| &**token).collect()
            } else {
                vec![]
            },
            page: Some(PageDto {
                from,
                next: (end < order.len()).then(|| end as u64),
                keys: order.len() as u64,
            }),
        };
        Some(serde_json::to_vec(&view).map(Bytes::from))
    }

    fn page_order(&self) -> &[Arc<ApiKeyDto>] {
        self.page_order.get_or_init(|| {
            let mut keys: Vec<Arc<ApiKeyDto>> = self.api_keys.values().cloned().collect();
            keys.sort_unstable_by(|a, b| by_hash_bytes(&a.hash, &b.hash));
            keys
        })
    }
}

/// Orders base64url hashes as the bytes they encode (their characters' ASCII order is not that order). Equal
/// length strings compare as their decoded bytes; anything that is not base64url sorts after.
fn by_hash_bytes(a: &str, b: &str) -> Ordering {
    a.bytes().map(sextet).cmp(b.bytes().map(sextet))
}

/// The 6-bit value of a base64url character, 64 for any other byte.
fn sextet(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => 64,
    }
}

/// How many bytes `value` serialises to, without keeping them.
fn json_len(value: &ApiKeyDto) -> Result<usize, serde_json::Error> {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    Ok(count.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use keymesh_core::apikey::hash_key;
    use keymesh_core::bundle::BundleDto;
    use keymesh_core::delivery::bucket::KeyHash;

    use super::*;
    use crate::keys::{SigningKey, StoredKeySet};
    use crate::mirror::load::KeyMaterial;

    fn signing(version: u64) -> KeyMaterial {
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

    fn key(i: usize) -> ApiKeyDto {
        ApiKeyDto {
            hash: hash_key(&format!("km_{i}")),
            id: format!("ak_{i}"),
            owner: format!("owner-{i}"),
            resources: vec!["https://orders.test".into()],
            scopes: vec!["orders:read".into()],
            expires_at: None,
            tier: None,
        }
    }

    fn pages(snapshot: &Snapshot) -> Vec<(usize, BundleDto, PageDto)> {
        let mut out = Vec::new();
        let mut from = Some(0);
        while let Some(at) = from {
            let bytes = snapshot.page(at).unwrap().unwrap();
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let page: PageDto = serde_json::from_value(value["page"].clone()).unwrap();
            assert_eq!(page.from, at);
            from = page.next;
            out.push((bytes.len(), serde_json::from_slice(&bytes).unwrap(), page));
        }
        out
    }

    #[test]
    fn pages_cover_every_key_once_in_bucket_order_and_stay_bounded() {
        let snapshot = Snapshot::full(signing(7), (0..6_000).map(key), "https://i", 10).unwrap();
        let pages = pages(&snapshot);
        assert!(pages.len() >= 4, "{} pages", pages.len());
        let mut hashes = Vec::new();
        for (i, (len, dto, page)) in pages.iter().enumerate() {
            assert_eq!((dto.version, dto.since, page.keys), (7, None, 6_000));
            assert!(*len <= PAGE_BYTES + 4096, "page {i} is {len} bytes");
            assert_eq!(
                dto.issuers.is_empty(),
                i > 0,
                "issuers on the first page only"
            );
            hashes.extend(dto.api_keys.put.iter().map(|key| key.hash.clone()));
        }
        assert_eq!(hashes.len(), 6_000);
        let decoded: Vec<[u8; 32]> = hashes
            .iter()
            .map(|hash| KeyHash::parse(hash).unwrap().0)
            .collect();
        assert!(
            decoded.windows(2).all(|w| w[0] < w[1]),
            "sorted by hash bytes, no repeats"
        );
        // Past the end, or into the middle of nowhere: no page.
        assert!(snapshot.page(6_000).is_none());
        assert!(snapshot.page(u64::MAX).is_none());
    }

    #[test]
    fn an_empty_key_set_is_one_empty_page() {
        let snapshot = Snapshot::full(signing(2), [], "https://i", 10).unwrap();
        let pages = pages(&snapshot);
        assert_eq!(pages.len(), 1);
        assert_eq!(
            pages[0].2,
            PageDto {
                from: 0,
                next: None,
                keys: 0
            }
        );
        assert_eq!(pages[0].1.issuers.len(), 1);
    }

    #[test]
    fn hashes_order_as_their_bytes() {
        // 'A' < 'a' < '0' < '-' < '_' as base64url values, unlike ASCII.
        assert_eq!(by_hash_bytes("A", "a"), Ordering::Less);
        assert_eq!(by_hash_bytes("z", "0"), Ordering::Less);
        assert_eq!(by_hash_bytes("9", "-"), Ordering::Less);
        assert_eq!(by_hash_bytes("-", "_"), Ordering::Less);
        assert_eq!(by_hash_bytes("_", "A"), Ordering::Greater);
    }
}
