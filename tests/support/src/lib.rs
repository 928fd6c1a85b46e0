//! Test plumbing shared by keymesh's sidecar tests (`sidecar/tests`), end-to-end tests (`tests/e2e`) and
//! benchmark (`bench`): everything that starts, waits for or talks to a real process and is not about keymesh.
//!
//! - [`free_port`]: a TCP port nobody listens on.
//! - [`Process`]: a child in its own process group, logging to a file, stopped on drop (optionally listed in a
//!   [`PidFile`] that a shell trap reads).
//! - [`RedisServer`]: a private `redis-server` on a free port, stopped on drop, restartable.
//! - [`bearer`], [`basic`], [`form_urlencode`], [`form`]: `Authorization` values and form bodies.
//! - [`eventually`], [`wait_for`] (and `eventually_async` with the `tokio` feature): polling for something that
//!   happens asynchronously.
//!
//! Keys, token minting and the filter scenario table live in `keymesh-testkit`, so that the benchmark and the
//! sidecar tests do not pull test keys in to get a port. Functions the benchmark calls return errors; the ones
//! only tests call may panic, naming what failed.

mod credentials;
mod poll;
mod ports;
mod process;
mod redis;

pub use credentials::{basic, bearer, form, form_urlencode};
#[cfg(feature = "tokio")]
pub use poll::eventually_async;
pub use poll::{eventually, wait_for};
pub use ports::{free_port, try_free_port};
pub use process::{PidFile, Process};
pub use redis::{RedisOptions, RedisServer};
