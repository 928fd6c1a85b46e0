//! The mirror's bounded in-memory change log, from which bundle deltas are folded.
//!
//! It holds the API key changes and token revocations of the last [`crate::store::commit::CHANGE_LOG_LEN`] versions, one
//! entry per version (signing-key changes are entries without either, so versions stay contiguous). Entries are shared
//! between consecutive snapshots through `Arc`, so a new snapshot copies pointers, not entries.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use keymesh_core::bundle::{ApiKeyDto, RevokedTokenDto};

/// The API key changes and token revocations of one version.
#[derive(Debug, Default)]
pub struct LoggedChange {
    /// The version the change produced.
    pub version: u64,
    /// Entries created or replaced.
    pub put: Vec<Arc<ApiKeyDto>>,
    /// Hashes that stopped working.
    pub delete: Vec<Arc<str>>,
    /// Access tokens revoked.
    pub revoked: Vec<Arc<RevokedTokenDto>>,
}

/// The changes after version `floor`, contiguous, at most `capacity` of them.
#[derive(Debug, Clone)]
pub struct ChangeLog {
    floor: u64,
    entries: imbl::Vector<Arc<LoggedChange>>,
    capacity: usize,
}

/// The changes between two versions, folded: each hash appears at most once, in `put` if it exists at the later
/// version and in `delete` if it does not. Both lists are sorted by hash; `revoked` is sorted by `jti`.
#[derive(Debug, PartialEq, Eq)]
pub struct Delta<'a> {
    /// Entries to add or replace.
    pub put: Vec<&'a ApiKeyDto>,
    /// Hashes to remove.
    pub delete: Vec<&'a str>,
    /// Access tokens revoked in the window.
    pub revoked: Vec<&'a RevokedTokenDto>,
}

impl ChangeLog {
    /// An empty log of the state at `version`, which will keep up to `capacity` changes.
    pub fn starting_at(version: u64, capacity: usize) -> Self {
        Self {
            floor: version,
            entries: imbl::Vector::new(),
            capacity: capacity.max(1),
        }
    }

    /// The version the oldest entry applies to: deltas can start here or later.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The version after the newest entry.
    pub fn newest(&self) -> u64 {
        self.floor + self.entries.len() as u64
    }

    /// Appends the change of the next version, dropping the oldest beyond the capacity.
    ///
    /// A change that does not follow [`ChangeLog::newest`] cannot be related to the entries held, so the log
    /// restarts at it.
    pub fn push(&mut self, change: Arc<LoggedChange>) {
        if change.version != self.newest() + 1 {
            self.entries.clear();
            self.floor = change.version.saturating_sub(1);
        }
        self.entries.push_back(change);
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
            self.floor += 1;
        }
    }

    /// The folded changes that turn version `since` into version `upto`, or `None` if the log does not cover
    /// both ends.
    pub fn fold(&self, since: u64, upto: u64) -> Option<Delta<'_>> {
        if since < self.floor || upto > self.newest() || since > upto {
            return None;
        }
        // usize: both differences are at most `entries.len()`.
        let start = usize::try_from(since - self.floor).ok()?;
        let end = usize::try_from(upto - self.floor).ok()?;
        let mut put: BTreeMap<&str, &ApiKeyDto> = BTreeMap::new();
        let mut delete: BTreeSet<&str> = BTreeSet::new();
        let mut revoked: BTreeMap<&str, &RevokedTokenDto> = BTreeMap::new();
        // A focus narrowed to the window walks only the changes asked for.
        for change in self.entries.focus().narrow(start..end) {
            for token in &change.revoked {
                revoked.insert(&token.jti, token);
            }
            for hash in &change.delete {
                put.remove(&**hash);
                delete.insert(hash);
            }
            for entry in &change.put {
                delete.remove(entry.hash.as_str());
                put.insert(&entry.hash, entry);
            }
        }
        Some(Delta {
            put: put.into_values().collect(),
            delete: delete.into_iter().collect(),
            revoked: revoked.into_values().collect(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dto(hash: &str, id: &str) -> Arc<ApiKeyDto> {
        Arc::new(ApiKeyDto {
            hash: hash.into(),
            id: id.into(),
            owner: "o".into(),
            resources: vec!["urn:a".into()],
            scopes: vec![],
            expires_at: None,
            tier: None,
        })
    }

    fn change(version: u64, put: &[(&str, &str)], delete: &[&str]) -> Arc<LoggedChange> {
        Arc::new(LoggedChange {
            version,
            put: put.iter().map(|(h, id)| dto(h, id)).collect(),
            delete: delete.iter().map(|h| Arc::from(*h)).collect(),
            revoked: vec![],
        })
    }

    fn hashes<'a>(delta: &Delta<'a>) -> (Vec<&'a str>, Vec<&'a str>) {
        (
            delta.put.iter().map(|e| e.hash.as_str()).collect(),
            delta.delete.clone(),
        )
    }

    #[test]
    fn folding_keeps_the_last_word_on_each_hash() {
        let mut log = ChangeLog::starting_at(10, 100);
        log.push(change(11, &[("a", "ak_a"), ("b", "ak_b")], &[]));
        log.push(change(12, &[], &["a"])); // a: put then deleted
        log.push(change(13, &[("c2", "ak_c")], &["c1"])); // regenerate c
        log.push(change(14, &[], &[])); // signing keys
        log.push(change(15, &[("b", "ak_b2")], &[])); // latest put wins

        let all = log.fold(10, 15).unwrap();
        assert_eq!(hashes(&all), (vec!["b", "c2"], vec!["a", "c1"]));
        assert_eq!(all.put[0].id, "ak_b2");
        assert_eq!(hashes(&log.fold(12, 13).unwrap()), (vec!["c2"], vec!["c1"]));
        assert_eq!(hashes(&log.fold(13, 14).unwrap()), (vec![], vec![]));
        assert_eq!(hashes(&log.fold(15, 15).unwrap()), (vec![], vec![]));
        // A folded window can end before the newest entry (a snapshot older than the log's end).
        assert_eq!(hashes(&log.fold(10, 11).unwrap()), (vec!["a", "b"], vec![]));
    }

    #[test]
    fn a_put_after_a_delete_of_the_same_hash_is_a_put() {
        let mut log = ChangeLog::starting_at(0, 10);
        log.push(change(1, &[], &["x"]));
        log.push(change(2, &[("x", "ak_x")], &[]));
        assert_eq!(hashes(&log.fold(0, 2).unwrap()), (vec!["x"], vec![]));
    }

    #[test]
    fn the_log_only_covers_what_it_holds() {
        let mut log = ChangeLog::starting_at(5, 3);
        assert_eq!(log.fold(4, 5), None, "before the floor");
        assert!(log.fold(5, 5).is_some());
        assert_eq!(log.fold(5, 6), None, "after the newest");
        for version in 6..=9 {
            log.push(change(version, &[], &[]));
        }
        // Capacity 3: versions 7, 8, 9 are kept, so deltas can start at 6 or later.
        assert_eq!((log.floor(), log.newest()), (6, 9));
        assert_eq!(log.fold(5, 9), None);
        assert!(log.fold(6, 9).is_some());
        assert_eq!(log.fold(9, 8), None);
    }

    #[test]
    fn revocations_in_the_window_are_folded_by_jti() {
        let revoke = |version: u64, jtis: &[&str]| {
            Arc::new(LoggedChange {
                version,
                revoked: jtis
                    .iter()
                    .map(|jti| {
                        Arc::new(RevokedTokenDto {
                            jti: (*jti).into(),
                            exp: 100,
                        })
                    })
                    .collect(),
                ..LoggedChange::default()
            })
        };
        let mut log = ChangeLog::starting_at(0, 10);
        log.push(revoke(1, &["b"]));
        log.push(change(2, &[("x", "ak_x")], &[]));
        log.push(revoke(3, &["a", "b"]));
        let jtis = |delta: Delta<'_>| -> Vec<String> {
            delta.revoked.iter().map(|r| r.jti.clone()).collect()
        };
        assert_eq!(jtis(log.fold(0, 3).unwrap()), ["a", "b"]);
        assert_eq!(jtis(log.fold(1, 2).unwrap()), Vec::<String>::new());
        assert_eq!(jtis(log.fold(0, 1).unwrap()), ["b"]);
        assert_eq!(hashes(&log.fold(0, 3).unwrap()), (vec!["x"], vec![]));
    }

    #[test]
    fn a_change_out_of_sequence_restarts_the_log() {
        let mut log = ChangeLog::starting_at(1, 10);
        log.push(change(2, &[], &[]));
        log.push(change(7, &[("z", "ak_z")], &[]));
        assert_eq!((log.floor(), log.newest()), (6, 7));
        assert_eq!(log.fold(1, 7), None);
        assert_eq!(hashes(&log.fold(6, 7).unwrap()), (vec!["z"], vec![]));
    }
}
