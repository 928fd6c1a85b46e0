//! Last-used reporting: each worker counts the requests every API key makes in memory, and its root context hands
//! the counts to the sidecar in one batch per report period (`POST` [`UsageReportDto`] as JSON to
//! `sidecar.usage_path`). The sidecar records when each key was last used.
//!
//! Counting costs a request one map lookup and no host call. The map is bounded: once it holds
//! [`UsageCounter::capacity`] keys, uses of further keys are not counted (the request itself is never affected)
//! until the next report empties it. A report that cannot be sent, or that the sidecar refuses, loses its counts:
//! last-used times are a convenience, never a reason to hold or refuse a request.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Default for [`UsageCounter::capacity`]: distinct keys counted per worker between two reports.
pub const DEFAULT_CAPACITY: usize = 4096;

/// The body of a usage report: how many requests each API key made since the last report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReportDto {
    /// One entry per key id, in no particular order.
    pub uses: Vec<KeyUsesDto>,
}

/// The requests one API key made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUsesDto {
    /// The key's public id (`ak_…`).
    pub id: String,
    /// How many requests it was accepted for (at least 1).
    pub count: u64,
}

/// One worker's use counts per API key id, bounded.
#[derive(Debug, Clone)]
pub struct UsageCounter {
    counts: HashMap<String, u64>,
    capacity: usize,
    /// Uses not counted because the map was full, since the last report.
    dropped: u64,
}

impl UsageCounter {
    /// An empty counter holding at most `capacity` distinct ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            counts: HashMap::new(),
            capacity,
            dropped: 0,
        }
    }

    /// The most distinct ids counted between two reports.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many distinct ids are counted now.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether nothing has been counted since the last report.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Uses left uncounted since the last report because the map was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Counts one accepted request of the key `id`. Allocates only for an id not yet in the map.
    pub fn record(&mut self, id: &str) {
        if let Some(count) = self.counts.get_mut(id) {
            *count = count.saturating_add(1);
        } else if self.counts.len() < self.capacity {
            self.counts.insert(id.to_owned(), 1);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// Empties the counter into a report; `None` if nothing was counted. What is taken is the report's to
    /// deliver: if it cannot be, those counts are gone.
    pub fn take_report(&mut self) -> Option<UsageReportDto> {
        self.dropped = 0;
        if self.counts.is_empty() {
            return None;
        }
        let uses = self
            .counts
            .drain()
            .map(|(id, count)| KeyUsesDto { id, count })
            .collect();
        Some(UsageReportDto { uses })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_id_until_taken() {
        let mut counter = UsageCounter::new(8);
        assert!(counter.take_report().is_none(), "nothing to report");
        for id in ["ak_a", "ak_b", "ak_a", "ak_a"] {
            counter.record(id);
        }
        let mut report = counter.take_report().unwrap();
        report.uses.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(
            report.uses,
            [
                KeyUsesDto {
                    id: "ak_a".into(),
                    count: 3
                },
                KeyUsesDto {
                    id: "ak_b".into(),
                    count: 1
                }
            ]
        );
        assert!(counter.is_empty() && counter.take_report().is_none());
    }

    #[test]
    fn a_full_map_drops_new_ids_but_keeps_counting_known_ones() {
        let mut counter = UsageCounter::new(2);
        for id in ["ak_a", "ak_b", "ak_c", "ak_d", "ak_a"] {
            counter.record(id);
        }
        assert_eq!((counter.len(), counter.dropped()), (2, 2));
        let report = counter.take_report().unwrap();
        let a = report.uses.iter().find(|u| u.id == "ak_a").unwrap();
        assert_eq!(a.count, 2);
        assert!(report.uses.iter().all(|u| u.id != "ak_c" && u.id != "ak_d"));
        // After a report there is room again.
        counter.record("ak_c");
        assert_eq!((counter.len(), counter.dropped()), (1, 0));
    }

    #[test]
    fn the_report_round_trips_as_json() {
        let mut counter = UsageCounter::new(4);
        counter.record("ak_x");
        let report = counter.take_report().unwrap();
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(json, r#"{"uses":[{"id":"ak_x","count":1}]}"#);
        assert_eq!(
            serde_json::from_str::<UsageReportDto>(&json).unwrap(),
            report
        );
    }
}
