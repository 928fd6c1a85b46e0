//! `keymesh health [--ready] [--url URL]`: asks the running server whether it is alive (or ready), so container
//! health checks need no curl in an image that has no shell.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use clap::Args;

use crate::config::Config;

/// How long a health check waits for the server.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Arguments of `keymesh health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Check readiness (`/healthz`: the first Redis snapshot is loaded and the server is not shutting down)
    /// instead of liveness (`/livez`).
    #[arg(long)]
    pub ready: bool,
    /// Base URL of the server. Default: `http://` and the configured `listen` address, with an unspecified
    /// address (`0.0.0.0`, `::`) replaced by loopback.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// Why a health check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The server could not be reached.
    #[error("GET {url}: {reason}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered, but not 200.
    #[error("GET {url} answered {status}")]
    Unhealthy {
        /// The URL asked.
        url: String,
        /// The status it answered.
        status: u16,
    },
    /// Writing the result failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs the check (blocking: it is the process's only work) and prints `ok URL` on success.
pub fn run_health(
    config: &Config,
    args: &HealthArgs,
    out: &mut impl Write,
) -> Result<(), HealthError> {
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", loopback_for(config.listen)));
    let path = if args.ready { "/healthz" } else { "/livez" };
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(HEALTH_TIMEOUT))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .get(&url)
        .call()
        .map_err(|e| HealthError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(HealthError::Unhealthy { url, status });
    }
    writeln!(out, "ok {url}")?;
    Ok(())
}

/// The address to reach a server listening on `listen` from the same host.
fn loopback_for(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        let cases = [
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("[::]:9000", "[::1]:9000"),
            ("10.1.2.3:8080", "10.1.2.3:8080"),
        ];
        for (listen, expected) in cases {
            assert_eq!(loopback_for(listen.parse().unwrap()).to_string(), expected);
        }
    }

    #[test]
    fn an_unreachable_server_is_an_error_naming_the_url() {
        // A port just released: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let args = HealthArgs {
            ready: true,
            url: Some(format!("http://127.0.0.1:{port}/")),
        };
        let mut out = Vec::new();
        let error = run_health(&Config::default(), &args, &mut out).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("http://127.0.0.1:{port}/healthz")),
            "{error}"
        );
        assert!(out.is_empty());
    }
}
