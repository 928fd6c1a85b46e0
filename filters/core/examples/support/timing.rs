//! The timing harness the `*_speed` examples share: warm up, then time five rounds and report the fastest and the
//! median per-operation time.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Rounds timed per measurement.
pub(crate) const ROUNDS: usize = 5;

/// Per-operation time of `op`: (fastest round, median round). `op` must return true (a verification that fails
/// would time the wrong path).
pub(crate) fn time(iterations: u32, mut op: impl FnMut() -> bool) -> (Duration, Duration) {
    for _ in 0..iterations.div_ceil(10) {
        assert!(op());
    }
    let mut rounds: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                assert!(black_box(op()));
            }
            start.elapsed() / iterations
        })
        .collect();
    rounds.sort();
    (rounds[0], rounds[ROUNDS / 2])
}

/// `d` in microseconds.
pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// What the example runs on: `wasm32` or `native`.
pub(crate) fn target() -> &'static str {
    if cfg!(target_family = "wasm") {
        "wasm32"
    } else {
        "native"
    }
}
