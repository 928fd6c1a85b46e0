//! Waiting for something that happens asynchronously: poll, with a deadline.

use std::time::{Duration, Instant};

/// How often the pollers here check.
const INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` every 50 ms until it returns `Some` (returned) or `within` has passed (`None`). It is always
/// called at least once, and once more at the deadline.
pub fn eventually<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(INTERVAL);
    }
}

/// [`eventually`] for tests: fails the test naming `what` when `check` has not succeeded within `timeout`.
#[allow(clippy::panic)]
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    eventually(timeout, check)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// [`eventually`] for async checks on a tokio runtime (sleeps with `tokio::time::sleep`).
#[cfg(feature = "tokio")]
pub async fn eventually_async<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventually_returns_the_first_success_or_none_after_the_deadline() {
        let mut calls = 0;
        let got = eventually(Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(got, Some(3));
        let started = Instant::now();
        assert_eq!(eventually(Duration::from_millis(120), || None::<()>), None);
        assert!(started.elapsed() >= Duration::from_millis(120));
    }

    #[test]
    #[should_panic(expected = "waiting for the moon")]
    fn wait_for_names_what_it_waited_for() {
        wait_for("the moon", Duration::from_millis(10), || None::<()>);
    }
}
