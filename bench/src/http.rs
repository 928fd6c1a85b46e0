//! One-shot HTTP/1.1 GETs on std's TcpStream, for readiness and correctness checks (status line only).

use anyhow::{bail, Context, Result};
use keymesh_test_support::eventually;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// GET `path` on `127.0.0.1:port` with an optional bearer token; returns the status and the raw head.
pub(crate) fn get(port: u16, path: &str, bearer: Option<&str>) -> Result<(u16, String)> {
    let auth = bearer.map(keymesh_test_support::bearer);
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    get_with(port, path, &headers)
}

/// GET `path` on `127.0.0.1:port` with extra request headers; returns the status and the raw head.
pub(crate) fn get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    let raw = read_response(&mut stream)?;
    let text = String::from_utf8_lossy(&raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {head:?}"))?;
    Ok((status, head))
}

/// Reads one response: the head, then `content-length` bytes of body (or up to EOF without one). It does not wait
/// for Envoy to close the connection: after a local reply Envoy holds it open for `delayed_close_timeout` (1 s), and
/// a client that reads to EOF measures that second, not the proxy.
fn read_response(stream: &mut TcpStream) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|line| {
                line.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if let Some(length) = length {
                if raw.len() >= end + 4 + length {
                    raw.truncate(end + 4 + length);
                    return Ok(raw);
                }
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(raw);
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

/// Polls `GET path` until it answers `status`, or fails after `timeout` naming `what`.
pub(crate) fn wait_for_status(
    what: &str,
    port: u16,
    path: &str,
    bearer: Option<&str>,
    status: u16,
    timeout: Duration,
) -> Result<()> {
    let mut last = String::from("no answer");
    let answered = eventually(timeout, || match get(port, path, bearer) {
        Ok((s, _)) if s == status => Some(()),
        Ok((_, head)) => {
            last = head;
            None
        }
        Err(e) => {
            last = e.to_string();
            None
        }
    });
    if answered.is_none() {
        bail!("timed out after {timeout:?} waiting for {what} (expected {status}); last: {last}")
    }
    Ok(())
}

/// Envoy's counters and gauges whose names match `filter` (a regex), from the admin `/stats` text format.
pub(crate) fn stats(admin: u16, filter: &str) -> Result<std::collections::BTreeMap<String, u64>> {
    let mut stream = TcpStream::connect(("127.0.0.1", admin))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let filter: String = filter
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let req = format!(
        "GET /stats?filter={filter} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let (_, body) = split_response(raw).context("the /stats answer")?;
    Ok(parse_stats(&String::from_utf8_lossy(&body)))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The status and the body of a raw HTTP/1.1 answer (identity or chunked).
pub(crate) fn split_response(mut raw: Vec<u8>) -> Result<(u16, Vec<u8>)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers in the answer")?;
    let head = String::from_utf8_lossy(raw.get(..end).unwrap_or_default()).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {head:?}"))?;
    let body = raw.split_off(end + 4);
    if head.contains("transfer-encoding: chunked") {
        return Ok((status, dechunk(&body).context("bad chunked body")?));
    }
    Ok((status, body))
}

/// `name: 123` lines; histograms and anything else that is not an integer are skipped.
fn parse_stats(body: &str) -> std::collections::BTreeMap<String, u64> {
    body.lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(": ")?;
            Some((name.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_identity_and_chunked_answers() {
        let (status, body) =
            split_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec()).unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"{}"[..]));
        let chunked =
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n";
        let (status, body) = split_response(chunked.to_vec()).unwrap();
        assert_eq!((status, body.as_slice()), (503, &b"abcd"[..]));
        assert!(split_response(b"HTTP/1.1 200 OK\r\n".to_vec()).is_err());
    }

    #[test]
    fn reads_counters_and_skips_histograms() {
        let body = "http.bench.jwt_authn.jwt_cache_hit: 2\nwasmcustom.keymesh.authn.denied.bad_signature: 7\n\
                    cluster.x.upstream_rq_time: P0(0,0) P25(0,0)\n";
        let stats = parse_stats(body);
        assert_eq!(stats.len(), 2);
        assert_eq!(stats["wasmcustom.keymesh.authn.denied.bad_signature"], 7);
    }

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk(b"4\r\nab: \r\n3\r\n12\n\r\n0\r\n\r\n").as_deref(),
            Some(&b"ab: 12\n"[..])
        );
        assert_eq!(dechunk(b"zz\r\n"), None);
    }
}
