//! `GET /v1/bundle`: the key bundle the filters poll, revalidated with `ETag`/`If-None-Match`, served as a delta
//! when the caller's version is recent enough, and held open as a long poll with `?wait=N`.
//!
//! - `If-None-Match` names the current version (or is `*`) → `304`, or with `wait=N` the request is held until
//!   the version changes (then answered as if it had just arrived) or `N` seconds pass, or the server begins to
//!   shut down (then `304`).
//! - `If-None-Match: "S"` (one version) and the mirror's change log reaches back to `S` → `200`, a delta with
//!   `since: S`.
//! - Anything else → `200`, the full bundle; or, if the request has `page=0`, the first page of it.
//!
//! **Pages** (see [`keymesh_core::bundle`]): `page=0` on a poll asks for a full bundle in pages, where one is due.
//! The first page names its version in `ETag` and in the body; the pages after it are asked for with
//! `page=<next>&version=<version>` and always describe that version: the mirror holds it for the purpose
//! ([`crate::mirror::page_hold`]), and a filter starting a resync under churn joins the version others are
//! paging if the change log still reaches back to it, so that a delta brings it up to date after the switch.
//! A version no longer held answers `410` (`version_gone`): the filter starts again from `page=0`. A request
//! without `page` gets the whole bundle at once, as before paging existed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keymesh_core::bundle::{etag, parse_etag};

use crate::http::error::AppError;
use crate::http::keys::MAX_WAIT_SECS;
use crate::http::ops::telemetry::{BundleAnswer, ProxySeen};
use crate::http::state::AppState;
use crate::mirror::snapshot::Snapshot;

/// A bundle request's query: `wait`, `page`, `version` (other parameters are ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BundleQuery {
    /// How long to hold a poll open when nothing changed.
    wait: Duration,
    /// The position of the first API key of the page asked for; `None`: the caller does not page.
    page: Option<u64>,
    /// The version a page belongs to (for every page after the first).
    version: Option<u64>,
}

/// Header carrying the polling proxy's id.
pub(crate) const PROXY_HEADER: &str = "x-keymesh-proxy";
/// Deltas spanning more versions than this are folded on a blocking thread, like full bundles.
const INLINE_DELTA_SPAN: u64 = 1_000;

/// What the caller holds, from `If-None-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    /// No (usable) `If-None-Match`.
    Nothing,
    /// `*`: any version.
    Any,
    /// One or more versions.
    Versions(Vec<u64>),
}

impl Held {
    /// RFC 9110 §13.1.2: `*` or a comma-separated list of entity tags, compared weakly.
    fn parse(headers: &HeaderMap) -> Self {
        let Some(value) = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
        else {
            return Self::Nothing;
        };
        if value.trim() == "*" {
            return Self::Any;
        }
        let versions: Vec<u64> = value.split(',').filter_map(parse_etag).collect();
        if versions.is_empty() {
            Self::Nothing
        } else {
            Self::Versions(versions)
        }
    }

    fn matches(&self, version: u64) -> bool {
        match self {
            Self::Nothing => false,
            Self::Any => true,
            Self::Versions(versions) => versions.contains(&version),
        }
    }

    /// The version the caller holds, for the proxy table: the newest it names, 0 for none or `*`.
    fn held_version(&self) -> u64 {
        match self {
            Self::Versions(versions) => versions.iter().copied().max().unwrap_or(0),
            Self::Nothing | Self::Any => 0,
        }
    }

    /// The version a delta can start from: only when the caller names exactly one.
    fn base(&self) -> Option<u64> {
        match self {
            Self::Versions(versions) if versions.len() == 1 => versions.first().copied(),
            _ => None,
        }
    }
}

/// Serves the bundle from the mirror: `304`, a delta or the full bundle, possibly after a long poll.
///
/// Once shutdown has begun every answer carries `Connection: close`, so the proxy's next poll opens a new
/// connection, which its load balancer sends to a replica that is not stopping.
pub(crate) async fn bundle(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let mut response = answer(state.clone(), query, headers).await?;
    if state.is_shutting_down() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

async fn answer(
    state: AppState,
    query: Option<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let BundleQuery {
        wait,
        page,
        version,
    } = parse_query(query.as_deref())?;
    if let (Some(from), Some(version)) = (page, version) {
        return serve_page(&state, version, from).await;
    }
    let held = Held::parse(&headers);
    let proxy = headers.get(PROXY_HEADER).and_then(|v| v.to_str().ok());
    // Subscribe before reading the snapshot, so a change in between still wakes the poll.
    let mut versions = state.mirror().subscribe();
    let mut snapshot = state.mirror().snapshot().ok_or(AppError::NotReady)?;
    if let Some(proxy) = proxy {
        tracing::debug!(proxy, held = ?held, current = snapshot.version(), wait_secs = wait.as_secs(), "bundle poll");
        let seen = ProxySeen {
            version: held.held_version(),
            last_seen: state.clock().now_secs(),
            long_poll: !wait.is_zero(),
        };
        state.telemetry().proxy_polled(proxy, seen);
    }

    if held.matches(snapshot.version()) {
        if wait.is_zero() || state.is_shutting_down() {
            return Ok(not_modified(&state, snapshot.version()));
        }
        let waiting_on = snapshot.version();
        let changed = tokio::select! {
            changed = versions.wait_for(|version| *version != waiting_on) => changed.is_ok(),
            () = tokio::time::sleep(wait) => false,
            () = state.shutting_down() => false,
        };
        snapshot = state.mirror().snapshot().ok_or(AppError::NotReady)?;
        if !changed || held.matches(snapshot.version()) {
            return Ok(not_modified(&state, snapshot.version()));
        }
    }

    let delta_base = held.base().filter(|since| *since < snapshot.version());
    if page.is_some() && delta_base.is_none_or(|since| since < snapshot.log_floor()) {
        let paged = state
            .mirror()
            .paged()
            .start(&snapshot, state.clock().now_secs());
        state.telemetry().bundle_answered(BundleAnswer::Full);
        if let Some(proxy) = proxy {
            tracing::debug!(proxy, version = paged.version(), "bundle paging started");
        }
        return page_response(paged, 0).await;
    }
    let version = snapshot.version();
    let (body, since) = render(snapshot, delta_base).await?;
    state.telemetry().bundle_answered(if since.is_some() {
        BundleAnswer::Delta
    } else {
        BundleAnswer::Full
    });
    if let Some(proxy) = proxy {
        tracing::debug!(proxy, version, since, bytes = body.len(), "bundle sent");
    }
    Ok(bundle_response(version, body))
}

/// A page after the first (or the first again) of `version`, if the mirror still holds it.
async fn serve_page(state: &AppState, version: u64, from: u64) -> Result<Response, AppError> {
    let current = state.mirror().snapshot().ok_or(AppError::NotReady)?;
    let snapshot = state
        .mirror()
        .paged()
        .get(version, &current, state.clock().now_secs())
        .ok_or(AppError::PageVersionGone)?;
    let response = page_response(snapshot, from).await?;
    state.telemetry().bundle_answered(if from == 0 {
        BundleAnswer::Full
    } else {
        BundleAnswer::Page
    });
    Ok(response)
}

/// `200` with the page of `snapshot` starting at key `from`.
async fn page_response(snapshot: Arc<Snapshot>, from: u64) -> Result<Response, AppError> {
    let version = snapshot.version();
    let page = if snapshot.page_order_ready() {
        snapshot.page(from)
    } else {
        tokio::task::spawn_blocking(move || snapshot.page(from))
            .await
            .map_err(|error| {
                tracing::error!(%error, "cannot build bundle page");
                AppError::Internal
            })?
    };
    let body = page.ok_or(AppError::InvalidPage)?.map_err(|error| {
        tracing::error!(%error, version, from, "cannot serialise bundle page");
        AppError::Internal
    })?;
    Ok(bundle_response(version, body))
}

/// The delta from `base` if the change log covers it, else the full bundle; with the delta's base, if any.
async fn render(
    snapshot: Arc<Snapshot>,
    base: Option<u64>,
) -> Result<(Bytes, Option<u64>), AppError> {
    let internal = |error: &dyn std::fmt::Display| {
        tracing::error!(%error, "cannot build bundle");
        AppError::Internal
    };
    if let Some(since) = base.filter(|since| *since >= snapshot.log_floor()) {
        let delta = if snapshot.version() - since <= INLINE_DELTA_SPAN {
            snapshot.delta_bundle(since)
        } else {
            let snapshot = Arc::clone(&snapshot);
            tokio::task::spawn_blocking(move || snapshot.delta_bundle(since))
                .await
                .map_err(|e| internal(&e))?
        };
        if let Some(delta) = delta {
            return Ok((delta.map_err(|e| internal(&e))?, Some(since)));
        }
    }
    let full = match snapshot.cached_full_bundle() {
        Some(full) => full,
        None => tokio::task::spawn_blocking(move || snapshot.full_bundle())
            .await
            .map_err(|e| internal(&e))?
            .ok_or(AppError::Internal)?,
    };
    Ok((full, None))
}

fn not_modified(state: &AppState, version: u64) -> Response {
    state.telemetry().bundle_answered(BundleAnswer::NotModified);
    (StatusCode::NOT_MODIFIED, cache_headers(version)).into_response()
}

fn cache_headers(version: u64) -> [(header::HeaderName, HeaderValue); 2] {
    // A decimal number in quotes is always a valid header value; the fallback is unreachable.
    let etag_value =
        HeaderValue::from_str(&etag(version)).unwrap_or(HeaderValue::from_static("\"0\""));
    [
        (header::ETAG, etag_value),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}

/// The query of a bundle request. Each parameter at most once; `wait` up to [`MAX_WAIT_SECS`]; `page` and
/// `version` whole numbers, `version` only with `page`, `page` past 0 only with `version`, and no `wait` with
/// `version` (a page is answered at once).
fn parse_query(query: Option<&str>) -> Result<BundleQuery, AppError> {
    let mut wait = None;
    let mut page = None;
    let mut version = None;
    for pair in query.unwrap_or_default().split('&') {
        let (slot, value, error) = if let Some(value) = pair.strip_prefix("wait=") {
            (&mut wait, value, AppError::InvalidWait)
        } else if let Some(value) = pair.strip_prefix("page=") {
            (&mut page, value, AppError::InvalidPage)
        } else if let Some(value) = pair.strip_prefix("version=") {
            (&mut version, value, AppError::InvalidPage)
        } else {
            continue;
        };
        if slot.is_some() {
            return Err(error);
        }
        *slot = Some(value.parse::<u64>().map_err(|_| error)?);
    }
    let wait = wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(AppError::InvalidWait);
    }
    let paging_rule_broken = match (page, version) {
        (None, Some(_)) => true,
        (Some(from), None) => from > 0,
        (Some(_), Some(_)) => wait > 0,
        (None, None) => false,
    };
    if paging_rule_broken {
        return Err(AppError::InvalidPage);
    }
    Ok(BundleQuery {
        wait: Duration::from_secs(wait),
        page,
        version,
    })
}

/// `200` with a bundle document (full, delta or page) of `version`.
fn bundle_response(version: u64, body: Bytes) -> Response {
    (
        StatusCode::OK,
        cache_headers(version),
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse_wait(query: Option<&str>) -> Result<Duration, AppError> {
        parse_query(query).map(|query| query.wait)
    }

    #[test]
    fn wait_parameter() {
        assert_eq!(parse_wait(None), Ok(Duration::ZERO));
        assert_eq!(parse_wait(Some("x=1")), Ok(Duration::ZERO));
        assert_eq!(parse_wait(Some("wait=30")), Ok(Duration::from_secs(30)));
        assert_eq!(parse_wait(Some("a=b&wait=60")), Ok(Duration::from_secs(60)));
        assert_eq!(parse_wait(Some("wait=0")), Ok(Duration::ZERO));
        for bad in ["wait=61", "wait=-1", "wait=", "wait=1.5", "wait=1&wait=2"] {
            assert_eq!(parse_wait(Some(bad)), Err(AppError::InvalidWait), "{bad}");
        }
    }

    #[test]
    fn page_parameters() {
        let query = |q: &str| parse_query(Some(q));
        assert_eq!(query("page=0").unwrap().page, Some(0));
        let poll = query("wait=25&page=0").unwrap();
        assert_eq!(
            (poll.wait, poll.page, poll.version),
            (Duration::from_secs(25), Some(0), None)
        );
        let next = query("page=4096&version=17").unwrap();
        assert_eq!((next.page, next.version), (Some(4096), Some(17)));
        assert_eq!(query("version=17&page=0").unwrap().version, Some(17));
        for bad in [
            "page=-1",
            "page=x",
            "page=",
            "page=1",
            "version=3",
            "page=0&page=0",
            "page=2&version=3&version=3",
            "page=2&version=x",
            "page=2&version=3&wait=5",
        ] {
            assert_eq!(query(bad), Err(AppError::InvalidPage), "{bad}");
        }
    }

    #[test]
    fn if_none_match_forms() {
        let held = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            Held::parse(&headers)
        };
        assert_eq!(Held::parse(&HeaderMap::new()), Held::Nothing);
        assert_eq!(held("garbage"), Held::Nothing);
        assert_eq!(held("*"), Held::Any);
        assert_eq!(held("\"4\"").base(), Some(4));
        assert_eq!(held("W/\"4\"").base(), Some(4));
        let two = held("\"3\", \"4\"");
        assert!(two.matches(3) && two.matches(4) && !two.matches(5));
        assert_eq!(
            two.base(),
            None,
            "a delta needs to know exactly what the caller holds"
        );
        assert!(held("*").matches(9));
        assert_eq!(held("*").base(), None);
    }
}
