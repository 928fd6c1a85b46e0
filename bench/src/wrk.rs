//! Running Debian's wrk (4.1) and reading its report.

use crate::process::{self, PidFile, Supervised};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How wrk is driven: fixed for every cell of a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WrkSettings {
    pub(crate) threads: u32,
    pub(crate) connections: u32,
    /// Per-request timeout, seconds.
    pub(crate) timeout_secs: u64,
    /// `taskset -c` CPU list for wrk, when pinning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cpus: Option<String>,
}

/// What one wrk run reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct WrkReport {
    /// Completed requests.
    pub(crate) requests: u64,
    /// Measured time, seconds.
    pub(crate) duration_secs: f64,
    /// `Requests/sec`.
    pub(crate) rps: f64,
    pub(crate) p50_us: f64,
    pub(crate) p75_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    /// Responses with a status of 400 or more (wrk's "Non-2xx or 3xx responses").
    pub(crate) non_2xx: u64,
    pub(crate) socket_errors: SocketErrors,
}

/// wrk's "Socket errors" line (all zero when wrk prints none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct SocketErrors {
    pub(crate) connect: u64,
    pub(crate) read: u64,
    pub(crate) write: u64,
    pub(crate) timeout: u64,
}

impl SocketErrors {
    pub(crate) fn total(self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// Why wrk's output could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum WrkParseError {
    /// A line wrk always prints is absent (wrk failed, or its format changed).
    #[error("wrk output has no `{0}` line")]
    Missing(&'static str),
    /// A value could not be parsed.
    #[error("cannot read {what} from `{text}`")]
    BadValue {
        /// Which value.
        what: &'static str,
        /// The text found.
        text: String,
    },
}

/// A wrk duration (`850.00us`, `1.23ms`, `1.02s`, `2.00m`, `1.00h`) in microseconds.
pub(crate) fn parse_duration_us(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// A wrk count with an optional metric suffix (`740.21`, `12.3k`, `1.05M`).
pub(crate) fn parse_count(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = match text.chars().last()? {
        'k' => (&text[..text.len() - 1], 1e3),
        'M' => (&text[..text.len() - 1], 1e6),
        'G' => (&text[..text.len() - 1], 1e9),
        _ => (text, 1.0),
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

fn bad(what: &'static str, text: &str) -> WrkParseError {
    WrkParseError::BadValue {
        what,
        text: text.to_owned(),
    }
}

/// Reads the report of `wrk --latency`.
pub(crate) fn parse(output: &str) -> Result<WrkReport, WrkParseError> {
    let mut requests = None;
    let mut rps = None;
    let mut percentiles = [None; 4];
    let mut non_2xx = 0;
    let mut socket_errors = SocketErrors::default();
    for line in output.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps = Some(parse_count(rest).ok_or_else(|| bad("Requests/sec", rest))?);
        } else if line.contains(" requests in ") {
            // "76714 requests in 5.00s, 9.51MB read"
            let mut words = line.split_whitespace();
            let count = words.next().unwrap_or_default();
            let time = words.nth(2).unwrap_or_default().trim_end_matches(',');
            let count: u64 = count.parse().map_err(|_| bad("the request count", line))?;
            let secs = parse_duration_us(time).ok_or_else(|| bad("the test duration", line))? / 1e6;
            requests = Some((count, secs));
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = rest
                .trim()
                .parse()
                .map_err(|_| bad("non-2xx responses", rest))?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "Socket errors: connect 0, read 0, write 0, timeout 12"
            for part in rest.split(',') {
                let mut kv = part.split_whitespace();
                let (Some(kind), Some(n)) = (kv.next(), kv.next()) else {
                    return Err(bad("socket errors", rest));
                };
                let n: u64 = n.parse().map_err(|_| bad("socket errors", rest))?;
                match kind {
                    "connect" => socket_errors.connect = n,
                    "read" => socket_errors.read = n,
                    "write" => socket_errors.write = n,
                    "timeout" => socket_errors.timeout = n,
                    _ => return Err(bad("socket errors", rest)),
                }
            }
        } else if let Some((pct, value)) = line.split_once('%') {
            let slot = match pct {
                "50" => 0,
                "75" => 1,
                "90" => 2,
                "99" => 3,
                _ => continue,
            };
            percentiles[slot] =
                Some(parse_duration_us(value).ok_or_else(|| bad("a latency percentile", line))?);
        }
    }
    let (requests, duration_secs) = requests.ok_or(WrkParseError::Missing("N requests in T"))?;
    let [Some(p50_us), Some(p75_us), Some(p90_us), Some(p99_us)] = percentiles else {
        return Err(WrkParseError::Missing(
            "Latency Distribution (run with --latency)",
        ));
    };
    Ok(WrkReport {
        requests,
        duration_secs,
        rps: rps.ok_or(WrkParseError::Missing("Requests/sec"))?,
        p50_us,
        p75_us,
        p90_us,
        p99_us,
        non_2xx,
        socket_errors,
    })
}

/// What one wrk run loads: `script` cycling through the tokens of `pool`, against `127.0.0.1:port`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WrkTarget<'a> {
    pub(crate) script: &'a Path,
    pub(crate) pool: &'a Path,
    pub(crate) port: u16,
}

/// The wrk command line for one run.
pub(crate) fn command(
    settings: &WrkSettings,
    duration: Duration,
    target: WrkTarget<'_>,
) -> Command {
    let mut cmd = match &settings.cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus, "wrk"]);
            c
        }
        None => Command::new("wrk"),
    };
    cmd.arg("-t")
        .arg(settings.threads.to_string())
        .arg("-c")
        .arg(settings.connections.to_string())
        .arg("-d")
        .arg(format!("{}s", duration.as_secs().max(1)))
        .arg("--timeout")
        .arg(format!("{}s", settings.timeout_secs))
        .arg("--latency")
        .arg("-s")
        .arg(target.script)
        .arg(format!("http://127.0.0.1:{}/", target.port))
        .arg("--")
        .arg(target.pool);
    cmd
}

/// Runs wrk to completion and reads its report; the raw output stays in `<dir>/<name>.log`.
pub(crate) fn run(
    settings: &WrkSettings,
    duration: Duration,
    target: WrkTarget<'_>,
    dir: &Path,
    name: &str,
    pids: &PidFile,
) -> Result<(WrkReport, PathBuf)> {
    let cmd = command(settings, duration, target);
    let mut wrk = process::start(name, dir, cmd, pids)?;
    let status = wrk.wait_or_stop(duration + Duration::from_secs(settings.timeout_secs + 30))?;
    let output = wrk.log_text();
    if !status.success() {
        bail!("wrk failed ({status}):\n{output}");
    }
    let report = parse(&output).with_context(|| format!("wrk output:\n{output}"))?;
    Ok((report, wrk.log_path().to_owned()))
}

/// `wrk -v`'s first line (wrk prints its version and usage, then exits 1).
pub(crate) fn version() -> String {
    Command::new("wrk")
        .arg("-v")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .next()
                .unwrap_or("wrk")
                .split(" Copyright")
                .next()
                .unwrap_or("wrk")
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|_| "wrk (not found)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTACK: &str = "\
Running 5s test @ http://127.0.0.1:40001/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.09ms  445.18us   9.05ms   87.12%
    Req/Sec    15.42k   740.21    16.33k    86.00%
  Latency Distribution
     50%  850.00us
     75%    1.23ms
     90%    2.46ms
     99%    1.02s
  76714 requests in 5.00s, 9.51MB read
  Socket errors: connect 0, read 2, write 0, timeout 12
  Non-2xx or 3xx responses: 76714
Requests/sec:  15336.21
Transfer/sec:      1.90MB
";

    const CLEAN: &str = "\
Running 1m test @ http://127.0.0.1:40001/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   640.12us  101.00us   5.00ms   90.00%
    Req/Sec    12.3k     1.02k    14.00k    70.00%
  Latency Distribution
     50%  600.00us
     75%  700.00us
     90%  800.00us
     99%    1.50ms
  1476000 requests in 1.00m, 180.00MB read
Requests/sec:  24600.00
Transfer/sec:      3.00MB
";

    #[test]
    fn units_of_time_and_counts() {
        assert_eq!(parse_duration_us("1.23ms"), Some(1230.0));
        assert_eq!(parse_duration_us("850.00us"), Some(850.0));
        assert_eq!(parse_duration_us("1.02s"), Some(1_020_000.0));
        assert_eq!(parse_duration_us("2.00m"), Some(120_000_000.0));
        assert_eq!(parse_duration_us("1.5"), None);
        assert_eq!(parse_duration_us("3.0ns"), None);
        assert_eq!(parse_count("12.3k"), Some(12_300.0));
        assert_eq!(parse_count("1.05M"), Some(1_050_000.0));
        assert_eq!(parse_count(" 740.21 "), Some(740.21));
        assert_eq!(parse_count("fast"), None);
    }

    #[test]
    fn reads_a_report_with_errors_and_refusals() {
        let r = parse(ATTACK).unwrap();
        assert_eq!(r.requests, 76714);
        assert!((r.duration_secs - 5.0).abs() < 1e-9);
        assert!((r.rps - 15336.21).abs() < 1e-9);
        assert_eq!(
            (r.p50_us, r.p75_us, r.p90_us, r.p99_us),
            (850.0, 1230.0, 2460.0, 1_020_000.0)
        );
        assert_eq!(r.non_2xx, 76714);
        assert_eq!(
            r.socket_errors,
            SocketErrors {
                connect: 0,
                read: 2,
                write: 0,
                timeout: 12
            }
        );
        assert_eq!(r.socket_errors.total(), 14);
    }

    #[test]
    fn reads_a_clean_report() {
        let r = parse(CLEAN).unwrap();
        assert_eq!(r.requests, 1_476_000);
        assert!((r.duration_secs - 60.0).abs() < 1e-9);
        assert_eq!(r.non_2xx, 0);
        assert_eq!(r.socket_errors.total(), 0);
        assert_eq!(r.p99_us, 1500.0);
    }

    #[test]
    fn refuses_output_without_latency_or_totals() {
        let no_latency: String = CLEAN
            .lines()
            .filter(|l| !l.contains('%') || l.contains("Latency "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(matches!(parse(&no_latency), Err(WrkParseError::Missing(_))));
        assert_eq!(
            parse("unable to connect to 127.0.0.1:1 Connection refused\n"),
            Err(WrkParseError::Missing("N requests in T"))
        );
    }

    #[test]
    fn command_line_is_fixed_and_complete() {
        let settings = WrkSettings {
            threads: 1,
            connections: 32,
            timeout_secs: 5,
            cpus: None,
        };
        let target = WrkTarget {
            script: Path::new("/d/pool.lua"),
            pool: Path::new("/d/t.txt"),
            port: 4000,
        };
        let cmd = command(&settings, Duration::from_secs(5), target);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-t",
                "1",
                "-c",
                "32",
                "-d",
                "5s",
                "--timeout",
                "5s",
                "--latency",
                "-s",
                "/d/pool.lua",
                "http://127.0.0.1:4000/",
                "--",
                "/d/t.txt"
            ]
        );
    }
}
