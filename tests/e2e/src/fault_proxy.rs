//! A fault-injecting HTTP/1.1 relay for end-to-end tests, put between Envoy and the real sidecar: it passes
//! requests and responses through unchanged, or damages the bodies of successful bundle responses (truncated, or
//! well-formed JSON of the wrong shape) as a broken network path or a buggy sidecar would.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::free_port;

/// What the relay does to bundle responses with a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Pass everything through.
    None = 0,
    /// Cut the body in half (and say so in `content-length`).
    Truncate = 1,
    /// Replace the body with JSON that is not a bundle.
    WrongShape = 2,
}

struct Shared {
    fault: AtomicU8,
    damaged: AtomicUsize,
    stop: AtomicBool,
}

/// A running relay to `127.0.0.1:<upstream>`; dropping it stops accepting.
pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts relaying to `upstream`.
    pub fn start(upstream: u16) -> Self {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared {
            fault: AtomicU8::new(Fault::None as u8),
            damaged: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || {
            while !accepting.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let shared = Arc::clone(&accepting);
                        std::thread::spawn(move || relay(&shared, client, upstream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { port, shared }
    }

    /// Sets what happens to bundle responses from now on.
    pub fn set(&self, fault: Fault) {
        self.shared.fault.store(fault as u8, Ordering::Relaxed);
    }

    /// How many responses it has damaged.
    pub fn damaged(&self) -> usize {
        self.shared.damaged.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// One message's head (start line and headers, as sent) and its `content-length`.
fn read_head(reader: &mut impl BufRead) -> Option<(Vec<String>, usize)> {
    let mut lines = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            return Some((lines, length));
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
        lines.push(line);
    }
}

fn relay(shared: &Shared, client: TcpStream, upstream: u16) {
    client.set_nonblocking(false).ok();
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (Ok(client_out), Ok(server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let mut from_client = BufReader::new(client);
    let mut from_server = BufReader::new(server);
    let (mut to_client, mut to_server) = (client_out, server_out);
    // Envoy keeps the connection to its cluster alive: relay request after request.
    while let Some((head, length)) = read_head(&mut from_client) {
        let mut body = vec![0; length];
        if from_client.read_exact(&mut body).is_err() {
            return;
        }
        let is_bundle = head
            .first()
            .is_some_and(|line| line.contains(" /v1/bundle"));
        if to_server.write_all(head.concat().as_bytes()).is_err()
            || to_server.write_all(b"\r\n").is_err()
            || to_server.write_all(&body).is_err()
        {
            return;
        }
        let Some((mut head, length)) = read_head(&mut from_server) else {
            return;
        };
        let mut body = vec![0; length];
        if from_server.read_exact(&mut body).is_err() {
            return;
        }
        let ok = head.first().is_some_and(|line| line.contains(" 200 "));
        let fault = shared.fault.load(Ordering::Relaxed);
        if is_bundle && ok && !body.is_empty() && fault != Fault::None as u8 {
            body = if fault == Fault::Truncate as u8 {
                body[..body.len() / 2].to_vec()
            } else {
                br#"{"version":"seven","issuers":{}}"#.to_vec()
            };
            for line in &mut head {
                if line.to_ascii_lowercase().starts_with("content-length:") {
                    *line = format!("content-length: {}\r\n", body.len());
                }
            }
            shared.damaged.fetch_add(1, Ordering::Relaxed);
        }
        if to_client.write_all(head.concat().as_bytes()).is_err()
            || to_client.write_all(b"\r\n").is_err()
            || to_client.write_all(&body).is_err()
        {
            return;
        }
    }
}
