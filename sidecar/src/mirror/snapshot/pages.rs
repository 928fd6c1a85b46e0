//! The full bundle of a snapshot in pages of bounded size, for filters that ask for it so (`page=…`).
//!
//! The API keys are cut as [`keymesh_core::delivery::paging`] says: in the order of their hashes' bytes (the
//! filter's buckets), at most [`PAGE_BYTES`](keymesh_core::delivery::paging::PAGE_BYTES) of
//! JSON per page. A page is a full bundle document with `page: {from, next, keys}`; the first
//! carries the issuers and the revoked tokens, the others the keys alone. The order is built once per snapshot,
//! on the first page asked for; a page is serialised when asked for (a few hundred KiB, well under a
//! millisecond per hundred keys), so a snapshot never holds the whole bundle serialised for paging clients.

use std::sync::Arc;

use axum::body::Bytes;
use keymesh_core::bundle::{ApiKeyDto, PageDto};
use keymesh_core::delivery::paging::{by_hash_bytes, page_end};

use super::{BundleView, ChangesView, Snapshot};

impl Snapshot {
    /// Whether the order pages are cut from is built already (then a page is cheap to serve inline).
    pub fn page_order_ready(&self) -> bool {
        self.page_order.get().is_some()
    }

    /// Builds the order pages are cut from, if not built yet (a sort of every key: run it on a blocking thread).
    pub fn prepare_pages(&self) {
        self.page_order();
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
        let end = match page_end(order, start, |key| &**key) {
            Ok(end) => end,
            Err(error) => return Some(Err(error)),
        };
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
                next: (end < order.len()).then_some(end as u64),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use keymesh_core::apikey::hash_key;
    use keymesh_core::bundle::BundleDto;
    use keymesh_core::delivery::bucket::KeyHash;
    use keymesh_core::delivery::paging::PAGE_BYTES;

    use super::*;
    use crate::mirror::snapshot::tests::signing;

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
}
