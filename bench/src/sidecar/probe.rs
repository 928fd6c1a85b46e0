//! What the sidecar benchmark reads of the running sidecar: timed HTTP answers with their bodies, the full key set
//! as `GET /v1/bundle` serves it, and the process's memory in /proc.

use crate::http::split_response;
use anyhow::{bail, Context, Result};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One HTTP answer, timed from sending the request.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    /// Until the first byte of the answer: for a bundle, the time the sidecar took to build it.
    pub(crate) first_byte: Duration,
}

/// `GET path` on 127.0.0.1:`port` (HTTP/1.1, `connection: close`, read to the end).
pub(crate) fn fetch(port: u16, path: &str, timeout: Duration) -> Result<Fetched> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(timeout))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n");
    let started = Instant::now();
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let n = stream.read(&mut chunk)?;
    let first_byte = started.elapsed();
    raw.extend_from_slice(chunk.get(..n).unwrap_or_default());
    stream.read_to_end(&mut raw)?;
    let (status, body) = split_response(raw)?;
    Ok(Fetched {
        status,
        body,
        first_byte,
    })
}

/// The version `/healthz` reports once the mirror is loaded; `None` before (503) or without an answer.
pub(crate) fn ready_version(port: u16) -> Option<u64> {
    let answer = fetch(port, "/healthz", Duration::from_secs(2)).ok()?;
    if answer.status != 200 {
        return None;
    }
    serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()?
        .get("version")?
        .as_u64()
}

/// The full key set as the sidecar serves it to a filter that holds nothing.
#[derive(Debug)]
pub(crate) struct FullSet {
    pub(crate) version: u64,
    /// API key entries received.
    pub(crate) entries: usize,
    pub(crate) bytes: usize,
    /// Answers it took (pages).
    pub(crate) pages: usize,
    /// Until the first byte of the first answer.
    pub(crate) first_byte: Duration,
    /// Until the last byte of the last answer.
    pub(crate) total: Duration,
}

#[derive(Deserialize)]
struct BundleShape {
    version: u64,
    since: Option<u64>,
    api_keys: ChangesShape,
    page: Option<PageShape>,
}

#[derive(Deserialize)]
struct PageShape {
    next: Option<u64>,
}

#[derive(Deserialize)]
struct ChangesShape {
    put: Vec<IgnoredAny>,
}

/// How the full key set is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paging {
    /// As a filter of this build: `GET /v1/bundle?page=0`, then each next page of the same version.
    Pages,
    /// As an older filter: `GET /v1/bundle`, the whole bundle in one document.
    Whole,
}

/// Fetches the full key set without `If-None-Match`, summing sizes and entries over its pages.
pub(crate) fn fetch_full_set(port: u16, timeout: Duration, paging: Paging) -> Result<FullSet> {
    let started = Instant::now();
    let mut path = match paging {
        Paging::Pages => "/v1/bundle?page=0",
        Paging::Whole => "/v1/bundle",
    }
    .to_owned();
    let mut set: Option<FullSet> = None;
    loop {
        let answer = fetch(port, &path, timeout)?;
        if answer.status != 200 {
            bail!(
                "GET {path} answered {}: {}",
                answer.status,
                String::from_utf8_lossy(
                    answer
                        .body
                        .get(..200.min(answer.body.len()))
                        .unwrap_or_default()
                )
            );
        }
        let page = count_entries(&answer.body)?;
        let set = set.get_or_insert(FullSet {
            version: page.version,
            entries: 0,
            bytes: 0,
            pages: 0,
            first_byte: answer.first_byte,
            total: Duration::ZERO,
        });
        if page.version != set.version {
            bail!(
                "page {} is version {}, the first was {}",
                set.pages,
                page.version,
                set.version
            );
        }
        set.entries += page.entries;
        set.bytes += answer.body.len();
        set.pages += 1;
        match page.next {
            Some(next) => path = format!("/v1/bundle?page={next}&version={}", set.version),
            None => {
                set.total = started.elapsed();
                break;
            }
        }
    }
    set.context("no answer")
}

/// What one answer of a full set holds.
#[derive(Debug, PartialEq, Eq)]
struct PageCount {
    version: u64,
    entries: usize,
    /// Where the next page starts; `None` on the last page (and for a bundle served whole).
    next: Option<u64>,
}

/// The version, the number of API key entries and the next page of a full bundle or of one of its pages (without
/// building the entries).
fn count_entries(body: &[u8]) -> Result<PageCount> {
    let bundle: BundleShape =
        serde_json::from_slice(body).context("the bundle is not a bundle document")?;
    if let Some(since) = bundle.since {
        bail!("expected a full bundle, got a delta since {since}");
    }
    Ok(PageCount {
        version: bundle.version,
        entries: bundle.api_keys.put.len(),
        next: bundle.page.and_then(|page| page.next),
    })
}

/// A process's resident memory, from /proc/PID/status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Memory {
    /// `VmRSS`: resident now.
    pub(crate) rss_kib: u64,
    /// `VmHWM`: the most resident since the process started, or since [`reset_peak`].
    pub(crate) peak_kib: u64,
}

pub(crate) fn memory(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    parse_memory(&status).with_context(|| format!("no VmRSS/VmHWM for pid {pid}"))
}

fn parse_memory(status: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// Resets `VmHWM` to the current RSS (`echo 5 > /proc/PID/clear_refs`, Linux 4.0+), so the next [`memory`] shows
/// the peak of what happened in between. Returns whether the kernel accepted it.
pub(crate) fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_its_peak() {
        let status =
            "Name:\tkeymesh\nVmPeak:\t 900000 kB\nVmHWM:\t  512000 kB\nVmRSS:\t   81234 kB\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss_kib: 81_234,
                peak_kib: 512_000
            })
        );
        assert_eq!(parse_memory("VmRSS:\t1 kB\n"), None, "no VmHWM");
        let mine = memory(std::process::id()).unwrap();
        assert!(mine.rss_kib > 0 && mine.peak_kib >= mine.rss_kib);
    }

    #[test]
    fn resetting_the_peak_brings_it_down_to_the_current_rss() {
        let me = std::process::id();
        // Touch 64 MiB, free it, then reset: the peak falls back near what is resident now.
        let big = vec![1u8; 64 << 20];
        assert_eq!(big.iter().map(|b| u64::from(*b)).sum::<u64>(), 64 << 20);
        drop(big);
        let before = memory(me).unwrap();
        assert!(before.peak_kib >= 64 << 10, "{before:?}");
        if !reset_peak(me) {
            eprintln!("clear_refs is not writable here: skipping the reset check");
            return;
        }
        let after = memory(me).unwrap();
        assert!(after.peak_kib < before.peak_kib, "{before:?} → {after:?}");
    }

    #[test]
    fn counts_the_entries_and_the_next_page_of_a_full_bundle_only() {
        let full = br#"{"version":7,"issuers":[],"api_keys":{"put":[{"hash":"a"},{"hash":"b"}],"delete":[]},"revoked_tokens":[]}"#;
        let whole = PageCount {
            version: 7,
            entries: 2,
            next: None,
        };
        assert_eq!(count_entries(full).unwrap(), whole);
        let page = br#"{"version":7,"issuers":[],"api_keys":{"put":[{"hash":"a"}],"delete":[]},"revoked_tokens":[],"page":{"from":0,"next":1,"keys":2}}"#;
        let first = PageCount {
            version: 7,
            entries: 1,
            next: Some(1),
        };
        assert_eq!(count_entries(page).unwrap(), first);
        let delta = br#"{"version":7,"since":6,"issuers":[],"api_keys":{"put":[],"delete":["a"]},"revoked_tokens":[]}"#;
        assert!(count_entries(delta).is_err());
        assert!(count_entries(b"not json").is_err());
    }
}
