//! The demo's second hop, as an application does it: orders calls `http://payments.local/payments/{id}` through
//! its workload's egress listener, propagating the `Authorization` header it received unchanged. The egress filter
//! (not this code) replaces it with a token exchanged for payments.

use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `:authority` orders uses for payments: what the egress filter's destination and route match.
pub(crate) const PAYMENTS_AUTHORITY: &str = "payments.local";
/// Largest answer read from payments.
const MAX_ANSWER: u64 = 64 * 1024;

/// `/payments/{id}` for a request to `/orders/{id}/payment`.
pub(crate) fn payment_path(path: &str) -> Option<String> {
    let id = path.strip_prefix("/orders/")?.strip_suffix("/payment")?;
    (!id.is_empty() && !id.contains('/')).then(|| format!("/payments/{id}"))
}

/// What payments answered, or why it could not be asked.
pub(crate) enum Payment {
    Answered { status: u16, body: Value },
    Failed(String),
}

impl Payment {
    /// orders answers 200 when payments did, else 502: the caller's request to orders was fine, its next hop
    /// was not.
    pub(crate) fn status_for_caller(&self) -> StatusCode {
        match self {
            Payment::Answered { status, .. } if (200..300).contains(status) => StatusCode::OK,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        match self {
            Payment::Answered { status, body } => json!({"status": status, "body": body}),
            Payment::Failed(why) => json!({"error": why}),
        }
    }
}

/// GET `path` on payments through the egress listener at 127.0.0.1:`egress`, with the received `Authorization`.
pub(crate) async fn call(egress: u16, path: &str, received: &HeaderMap) -> Payment {
    match get(egress, path, received).await {
        Ok((status, body)) => Payment::Answered {
            status,
            body: serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
        },
        Err(e) => Payment::Failed(e.to_string()),
    }
}

/// One HTTP/1.1 request on its own connection; the status and the body. The answer is read up to the end of its
/// body, not to EOF: Envoy waits up to its `delayed_close_timeout` (1 s) for the client to close first.
async fn get(egress: u16, path: &str, received: &HeaderMap) -> std::io::Result<(u16, Vec<u8>)> {
    let mut request =
        format!("GET {path} HTTP/1.1\r\nhost: {PAYMENTS_AUTHORITY}\r\nconnection: close\r\n");
    for value in received.get_all(header::AUTHORIZATION) {
        if let Ok(value) = value.to_str() {
            request.push_str(&format!("authorization: {value}\r\n"));
        }
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(("127.0.0.1", egress)).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(done) = parse(&answer) {
            return Ok(done);
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 || answer.len() as u64 > MAX_ANSWER {
            return Err(std::io::Error::other(
                "incomplete or oversized answer from the egress listener",
            ));
        }
        answer.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
}

/// The status and body of an HTTP/1.1 answer, once it is complete (length-delimited or chunked).
fn parse(answer: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(answer.get(..split)?)
        .ok()?
        .to_ascii_lowercase();
    let body = answer.get(split + 4..)?;
    let status = head.get(9..12)?.parse().ok()?;
    if head
        .lines()
        .any(|l| l.starts_with("transfer-encoding: chunked"))
    {
        return Some((status, dechunk(body)?));
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some((status, body.get(..length)?.to_vec()))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(body.get(..line_end)?).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = body.get(line_end + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_orders_payment_path_is_relayed() {
        assert_eq!(
            payment_path("/orders/42/payment").as_deref(),
            Some("/payments/42")
        );
        for path in [
            "/orders/42",
            "/orders//payment",
            "/orders/a/b/payment",
            "/payments/42/payment",
        ] {
            assert_eq!(payment_path(path), None, "{path}");
        }
    }

    #[test]
    fn answers_are_read_length_delimited_or_chunked() {
        let plain = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse(plain), Some((401, b"{}".to_vec())));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse(chunked), Some((200, b"abcde".to_vec())));
        assert_eq!(parse(b"garbage"), None);
        // Not complete yet: more is read.
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab"),
            None
        );
    }
}
