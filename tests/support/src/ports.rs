//! Free TCP ports.

use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago: bound on port 0, read, released. Another process may take
/// it before the caller binds it; callers that can retry (see [`crate::RedisServer`]) do.
pub fn try_free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// [`try_free_port`] for tests: a machine that cannot bind port 0 on loopback cannot run them.
#[allow(clippy::panic)]
pub fn free_port() -> u16 {
    try_free_port().unwrap_or_else(|e| panic!("cannot bind a free port on 127.0.0.1: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port();
        assert_ne!(port, 0);
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
