//! A stand-in external identity provider for end-to-end tests: a real HTTP server on a free loopback port that
//! serves an OIDC discovery document and a JWK Set the test can change, counts what is fetched, and can be taken
//! down. (It is the provider that is simulated here, not any part of keymesh.)

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::free_port;

struct Shared {
    issuer: Mutex<String>,
    jwks: Mutex<serde_json::Value>,
    fetches: AtomicUsize,
    stop: AtomicBool,
}

/// A running provider; dropping it stops it.
pub struct TestIdp {
    pub port: u16,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl TestIdp {
    /// Starts a provider whose issuer is `http://127.0.0.1:<port>`, serving `jwks`.
    pub fn start(jwks: serde_json::Value) -> Self {
        let port = free_port();
        let shared = Arc::new(Shared {
            issuer: Mutex::new(format!("http://127.0.0.1:{port}")),
            jwks: Mutex::new(jwks),
            fetches: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let serving = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            while !serving.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => serve(&serving, port, stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            port,
            shared,
            thread: Some(thread),
        }
    }

    /// The issuer identifier (`iss` of its tokens).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The JWK Set URL.
    pub fn jwks_uri(&self) -> String {
        format!("http://127.0.0.1:{}/jwks", self.port)
    }

    /// Serves `jwks` from now on.
    pub fn set_jwks(&self, jwks: serde_json::Value) {
        *self.shared.jwks.lock().unwrap() = jwks;
    }

    /// Makes the discovery document name `issuer` (a provider misconfigured, or an impostor).
    pub fn set_discovery_issuer(&self, issuer: &str) {
        *self.shared.issuer.lock().unwrap() = issuer.to_owned();
    }

    /// How many requests (discovery and JWKS) it has answered.
    pub fn fetches(&self) -> usize {
        self.shared.fetches.load(Ordering::Relaxed)
    }

    /// Stops listening: connections are refused from now on.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(shared: &Shared, port: u16, stream: TcpStream) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers: these are GETs without bodies.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/.well-known/openid-configuration" => {
            let issuer = shared.issuer.lock().unwrap().clone();
            let doc = serde_json::json!({
                "issuer": issuer,
                "jwks_uri": format!("http://127.0.0.1:{port}/jwks"),
                "id_token_signing_alg_values_supported": ["EdDSA", "ES256"],
            });
            ("200 OK", doc.to_string())
        }
        "/jwks" => ("200 OK", shared.jwks.lock().unwrap().to_string()),
        _ => ("404 Not Found", "{}".to_owned()),
    };
    shared.fetches.fetch_add(1, Ordering::Relaxed);
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
}
