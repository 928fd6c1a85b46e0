//! The sidecar report (`sidecar-memory`): per key count, Redis's memory, the sidecar's load time, its RSS at each
//! step and the full bundle's build time, as JSON and markdown.

use crate::machine::Machine;
use crate::sidecar::probe::Memory;
use serde::Serialize;
use std::fmt::Write as _;

/// One fetch of the full key set (in pages, or whole).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BundleFetch {
    /// Until the first byte of the first answer: the build time (sort, or whole bundle) when not done yet.
    pub(crate) first_byte_ms: f64,
    /// Until the last byte.
    pub(crate) total_ms: f64,
    pub(crate) bytes: usize,
    /// API key entries in it.
    pub(crate) entries: usize,
    /// Answers (pages) it took.
    pub(crate) pages: usize,
}

/// The sidecar holding one number of keys.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SidecarRow {
    pub(crate) keys: usize,
    /// Writing the records into Redis (pipelined; not the sidecar's work).
    pub(crate) redis_load_ms: f64,
    /// Redis `INFO memory` `used_memory` once the records are written, bytes.
    pub(crate) redis_used_memory: u64,
    /// From spawning the sidecar until `/healthz` answered with its first snapshot (the full load).
    pub(crate) ready_ms: f64,
    /// The sidecar's CPU time (user + system) until then.
    pub(crate) cpu_to_ready_ms: f64,
    /// At readiness (the eager build of the full bundle may have started).
    pub(crate) at_ready: Memory,
    /// The full bundle fetched right after readiness: it waits for the build the sidecar starts after a full load.
    pub(crate) first_bundle: BundleFetch,
    /// After it: the mirror and its serialised full bundle; the peak is that of the whole start.
    pub(crate) after_first_bundle: Memory,
    /// After one more key was applied from the change log: the new snapshot has no serialised bundle yet, the old
    /// one is freed. The mirror alone.
    pub(crate) after_change: Memory,
    /// Whether the peak could be reset before the cold fetch (if not, `after_cold_bundle.peak_kib` is the
    /// lifetime peak).
    pub(crate) cold_peak_reset: bool,
    /// The full bundle built on the request path.
    pub(crate) cold_bundle: BundleFetch,
    /// The sidecar's CPU time (user + system) while building and serving it: steadier than wall time on a busy
    /// machine.
    pub(crate) cold_cpu_ms: f64,
    /// After it; the peak is that of building and serving it.
    pub(crate) after_cold_bundle: Memory,
    /// The same bundle again, from the snapshot's cache.
    pub(crate) cached_bundle: BundleFetch,
    pub(crate) after_cached: Memory,
}

/// Everything `sidecar-memory` produced.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SidecarResults {
    pub(crate) machine: Machine,
    pub(crate) command: String,
    pub(crate) seed: u64,
    pub(crate) loadavg_end: String,
    pub(crate) rows: Vec<SidecarRow>,
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// Milliseconds: one decimal below 10 ms, whole above.
fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

fn bytes_mb(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

impl SidecarResults {
    pub(crate) fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "# The keymesh sidecar holding N API keys\n");
        let _ = writeln!(md, "`{}`\n", self.command);
        let _ = writeln!(
            md,
            "{} on {} CPUs ({}), {}; commit {}; load {} → {}. Release sidecar, one Redis and one sidecar at a \
             time; keys seeded with {}, one JSON record each as `keymesh apikey create` stores it (one resource, \
             one scope, 10 keys per owner).\n",
            m.date,
            m.nproc,
            m.cpu_model,
            m.kernel,
            m.git_commit,
            m.loadavg_start,
            self.loadavg_end,
            self.seed
        );
        let _ = writeln!(md, "## Memory (RSS, MiB; peak = `VmHWM`)\n");
        let _ = writeln!(
            md,
            "| keys | Redis `used_memory` | sidecar at ready | + first full set (paged) | peak of the start | \
             mirror alone (after a change) | peak building + serving a cold full bundle | after it |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let cold_peak = if r.cold_peak_reset {
                mib(r.after_cold_bundle.peak_kib)
            } else {
                format!("{} (lifetime)", mib(r.after_cold_bundle.peak_kib))
            };
            let _ = writeln!(
                md,
                "| {} | {:.1} | {} | {} | {} | {} | {} | {} |",
                r.keys,
                r.redis_used_memory as f64 / 1_048_576.0,
                mib(r.at_ready.rss_kib),
                mib(r.after_first_bundle.rss_kib),
                mib(r.after_first_bundle.peak_kib),
                mib(r.after_change.rss_kib),
                cold_peak,
                mib(r.after_cold_bundle.rss_kib),
            );
        }
        let _ = writeln!(md, "\n## Time (ms)\n");
        let _ = writeln!(
            md,
            "| keys | records into Redis | start → ready (CPU) | first full set (paged), first byte / last | \
             **cold full bundle**, first byte / last (CPU) | cached, first byte / last | full bundle MB |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} ({}) | {} / {} ({} pages) | **{}** / {} ({}) | {} / {} | {} |",
                r.keys,
                ms(r.redis_load_ms),
                ms(r.ready_ms),
                ms(r.cpu_to_ready_ms),
                ms(r.first_bundle.first_byte_ms),
                ms(r.first_bundle.total_ms),
                r.first_bundle.pages,
                ms(r.cold_bundle.first_byte_ms),
                ms(r.cold_bundle.total_ms),
                ms(r.cold_cpu_ms),
                ms(r.cached_bundle.first_byte_ms),
                ms(r.cached_bundle.total_ms),
                bytes_mb(r.cold_bundle.bytes),
            );
        }
        let _ = writeln!(
            md,
            "\nReady = `/healthz` answers with the first snapshot (full load: `SCAN` + `MGET` of every record). The \
             first full set is fetched as a filter does, page by page (`page=0`, then `page=<next>&version=<V>`); it \
             waits for the key order the sidecar sorts after a full load. Then one key is created (`keymesh apikey \
             create`) and applied from the change log; the cold full bundle is that new snapshot's whole bundle in \
             one document, as an older filter asks for it, built on the request: its time to first byte is the \
             build time, and the CPU the sidecar spent meanwhile is in parentheses. Wall-clock times on a shared \
             machine are indicative. RSS is not sensitive to the load."
        );
        md
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn memory(rss_mib: u64, peak_mib: u64) -> Memory {
        Memory {
            rss_kib: rss_mib * 1024,
            peak_kib: peak_mib * 1024,
        }
    }

    fn fetch(first_byte_ms: f64, bytes: usize, entries: usize) -> BundleFetch {
        BundleFetch {
            first_byte_ms,
            total_ms: first_byte_ms + 1.0,
            bytes,
            entries,
            pages: 3,
        }
    }

    #[test]
    fn the_tables_carry_each_row() {
        let machine = Machine::gather(
            std::path::Path::new("/nonexistent"),
            std::path::Path::new("."),
        );
        let results = SidecarResults {
            machine,
            command: "scripts/bench.sh --sidecar 1000".into(),
            seed: 1,
            loadavg_end: "1.00 1.00 1.00".into(),
            rows: vec![SidecarRow {
                keys: 1000,
                redis_load_ms: 12.0,
                redis_used_memory: 3 * 1_048_576,
                ready_ms: 250.0,
                cpu_to_ready_ms: 40.0,
                at_ready: memory(20, 21),
                first_bundle: fetch(5.0, 190_000, 1000),
                after_first_bundle: memory(22, 25),
                after_change: memory(21, 25),
                cold_peak_reset: false,
                cold_bundle: fetch(7.0, 190_200, 1001),
                cold_cpu_ms: 10.0,
                after_cold_bundle: memory(22, 26),
                cached_bundle: fetch(0.5, 190_200, 1001),
                after_cached: memory(22, 26),
            }],
        };
        let md = results.markdown();
        assert!(md.contains("`scripts/bench.sh --sidecar 1000`"), "{md}");
        assert!(
            md.contains("| 1000 | 3.0 | 20.0 | 22.0 | 25.0 | 21.0 | 26.0 (lifetime) | 22.0 |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| 1000 | 12 | 250 (40) | 5.0 / 6.0 (3 pages) | **7.0** / 8.0 (10) | 0.5 / 1.5 | 0.2 |"
            ),
            "{md}"
        );
        let json = serde_json::to_value(&results).unwrap();
        assert_eq!(json["rows"][0]["cold_bundle"]["entries"], 1001);
    }
}
