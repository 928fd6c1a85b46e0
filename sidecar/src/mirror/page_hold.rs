//! The snapshots being paged: every page of one resync describes one version, so the sidecar keeps that version
//! while filters read its pages, even as the mirror moves on.
//!
//! A filter starting a resync joins the newest snapshot held here if the current snapshot's change log still
//! reaches back to it (it then catches up with a delta right after the switch), so filters resyncing under steady
//! churn share one version instead of each pinning its own, and none is starved. A snapshot is let go
//! [`PAGE_HOLD_SECS`] after its last page was served, or when more than [`HELD_VERSIONS`] are held (the least
//! recently paged first); a filter asking for a page of a version let go gets `410` and starts again.

use std::sync::{Arc, Mutex};

use crate::mirror::snapshot::Snapshot;

/// How long a snapshot is kept after its last page was served.
pub const PAGE_HOLD_SECS: u64 = 120;
/// Most snapshots kept for paging at once.
pub const HELD_VERSIONS: usize = 4;

/// The snapshots held for paging, with when each may be let go.
#[derive(Debug, Default)]
pub struct PageHold {
    held: Mutex<Vec<(Arc<Snapshot>, u64)>>,
}

impl PageHold {
    /// The snapshot a new resync pages at `now_secs` when `current` is in force: the newest one held that
    /// `current`'s change log reaches back to, else `current` itself. Either way it is held from now on.
    pub fn start(&self, current: &Arc<Snapshot>, now_secs: u64) -> Arc<Snapshot> {
        let Ok(mut held) = self.held.lock() else {
            return Arc::clone(current);
        };
        held.retain(|(_, until)| *until > now_secs);
        let joined = held
            .iter()
            .map(|(snapshot, _)| snapshot)
            .filter(|snapshot| {
                snapshot.version() <= current.version() && snapshot.version() >= current.log_floor()
            })
            .max_by_key(|snapshot| snapshot.version())
            .cloned()
            .unwrap_or_else(|| Arc::clone(current));
        keep(&mut held, &joined, now_secs);
        joined
    }

    /// The snapshot at `version` if it is held (or is `current`), kept for another [`PAGE_HOLD_SECS`].
    pub fn get(
        &self,
        version: u64,
        current: &Arc<Snapshot>,
        now_secs: u64,
    ) -> Option<Arc<Snapshot>> {
        let mut held = self.held.lock().ok()?;
        held.retain(|(_, until)| *until > now_secs);
        let found = held
            .iter()
            .map(|(snapshot, _)| snapshot)
            .find(|snapshot| snapshot.version() == version)
            .cloned()
            .or_else(|| (current.version() == version).then(|| Arc::clone(current)))?;
        keep(&mut held, &found, now_secs);
        Some(found)
    }

    /// The versions held, oldest first (for tests and diagnostics).
    pub fn versions(&self) -> Vec<u64> {
        let mut versions: Vec<u64> = self
            .held
            .lock()
            .map(|held| {
                held.iter()
                    .map(|(snapshot, _)| snapshot.version())
                    .collect()
            })
            .unwrap_or_default();
        versions.sort_unstable();
        versions
    }
}

/// Holds `snapshot` until `now_secs` + [`PAGE_HOLD_SECS`], letting the least recently paged go past
/// [`HELD_VERSIONS`].
fn keep(held: &mut Vec<(Arc<Snapshot>, u64)>, snapshot: &Arc<Snapshot>, now_secs: u64) {
    let until = now_secs.saturating_add(PAGE_HOLD_SECS);
    held.retain(|(kept, _)| kept.version() != snapshot.version());
    held.push((Arc::clone(snapshot), until));
    if held.len() > HELD_VERSIONS {
        held.sort_by_key(|(_, until)| std::cmp::Reverse(*until));
        held.truncate(HELD_VERSIONS);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::mirror::snapshot::tests::signing;
    use crate::store::commit::{Change, ChangeKind};

    fn next(snapshot: &Snapshot) -> Arc<Snapshot> {
        let version = snapshot.version() + 1;
        let change = Change {
            version,
            kind: ChangeKind::ApiKeyPut,
            put: vec![],
            delete: vec![],
            revoked: vec![],
        };
        Arc::new(snapshot.apply(signing(version), vec![change]).unwrap())
    }

    #[test]
    fn a_paged_version_is_kept_while_read_and_let_go_after() {
        let hold = PageHold::default();
        let v1 = Arc::new(Snapshot::full(signing(1), [], "https://i", 2).unwrap());
        assert_eq!(hold.start(&v1, 100).version(), 1);
        let v2 = next(&v1);
        assert_eq!(
            hold.get(1, &v2, 150).unwrap().version(),
            1,
            "kept after the mirror moved"
        );
        assert_eq!(
            hold.get(2, &v2, 150).unwrap().version(),
            2,
            "the current one is always there"
        );
        assert!(hold.get(7, &v2, 150).is_none());
        // Each page served keeps it for another PAGE_HOLD_SECS.
        assert!(hold.get(1, &v2, 150 + PAGE_HOLD_SECS - 1).is_some());
        assert!(
            hold.get(1, &v2, 150 + 2 * PAGE_HOLD_SECS).is_none(),
            "let go"
        );
    }

    #[test]
    fn new_resyncs_join_the_newest_paged_version_the_log_still_reaches() {
        let hold = PageHold::default();
        let v1 = Arc::new(Snapshot::full(signing(1), [], "https://i", 2).unwrap());
        hold.start(&v1, 0);
        let v2 = next(&v1);
        let v3 = next(&v2);
        assert_eq!(
            hold.start(&v3, 1).version(),
            1,
            "v3's log reaches back to v1"
        );
        let v4 = next(&v3);
        assert_eq!(v4.log_floor(), 2);
        assert_eq!(
            hold.start(&v4, 2).version(),
            4,
            "v1 is out of v4's log: page v4"
        );
        assert_eq!(hold.start(&v4, 3).version(), 4);
        assert_eq!(hold.versions(), [1, 4]);
        // No more than HELD_VERSIONS at once: the least recently paged goes.
        let mut current = v4;
        for now in 10..(10 + HELD_VERSIONS as u64 + 1) {
            for _ in 0..3 {
                current = next(&current);
            }
            hold.start(&current, now);
        }
        assert_eq!(hold.versions().len(), HELD_VERSIONS);
        assert!(!hold.versions().contains(&1));
    }
}
