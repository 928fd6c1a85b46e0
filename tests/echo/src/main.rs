//! The demo's upstream API: answers every request with JSON showing what arrived through Envoy.
//!
//! Usage: `keymesh-echo PORT NAME [--relay EGRESS_PORT]` (listens on 127.0.0.1:PORT).
//!
//! The body names the API, the method and path, the keymesh identity headers it received (`x-keymesh-*`), and
//! whether an `Authorization` header reached it (keymesh strips the token upstream unless `forward_token` is set).
//! It is small and fast on purpose: a load generator pointed at the demo measures Envoy and keymesh, not this.
//!
//! With `--relay`, it is also the orders service of the demo's second hop (see [`relay`]): `GET /orders/{id}/payment`
//! calls payments through the workload's egress listener with the token it received, and answers with what
//! payments saw.

mod relay;

use std::net::SocketAddr;

use anyhow::Context;
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Response, StatusCode, Uri};
use axum::Router;
use serde_json::{json, Map, Value};

/// Prefix of the identity headers the keymesh filter adds for the upstream.
const IDENTITY_PREFIX: &str = "x-keymesh-";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: keymesh-echo PORT NAME [--relay EGRESS_PORT]";
    let port: u16 = args
        .next()
        .context(usage)?
        .parse()
        .context("PORT must be a number from 1 to 65535")?;
    let name = args.next().context(usage)?;
    let relay_port: Option<u16> = match args.next().as_deref() {
        None => None,
        Some("--relay") => Some(
            args.next()
                .context(usage)?
                .parse()
                .context("EGRESS_PORT must be a number from 1 to 65535")?,
        ),
        Some(other) => anyhow::bail!("unexpected argument `{other}`; {usage}"),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!("{name} upstream listening on {addr}");
    let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let name = name.clone();
        async move {
            let mut body = echo(&name, &method, &uri, &headers);
            let relayed = match (relay_port, relay::payment_path(uri.path())) {
                (Some(egress), Some(path)) => Some(relay::call(egress, &path, &headers).await),
                _ => None,
            };
            let status = match relayed {
                Some(payment) => {
                    let status = payment.status_for_caller();
                    body["payment"] = payment.to_json();
                    status
                }
                None => StatusCode::OK,
            };
            respond(status, &body)
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            // Ctrl-C or SIGTERM: stop accepting, finish what is in flight.
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("server failed")
}

/// What arrived: the API's name, method, path, identity headers, and whether a token reached it.
fn echo(name: &str, method: &Method, uri: &Uri, headers: &HeaderMap) -> Value {
    let identity: Map<String, Value> = headers
        .iter()
        .filter(|(key, _)| key.as_str().starts_with(IDENTITY_PREFIX))
        .map(|(key, value)| {
            (
                key.as_str().to_owned(),
                Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            )
        })
        .collect();
    json!({
        "api": name,
        "method": method.as_str(),
        "path": uri.path_and_query().map_or("/", |p| p.as_str()),
        "identity": identity,
        "authorization_forwarded": headers.contains_key(header::AUTHORIZATION),
    })
}

/// The JSON answer (pretty-printed, one trailing newline, like the curl lines expect).
fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    let mut text = serde_json::to_string_pretty(body).unwrap_or_default();
    text.push('\n');
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
