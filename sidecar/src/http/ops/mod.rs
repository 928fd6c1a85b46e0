//! Operations: readiness and liveness, the status report, Prometheus metrics and the telemetry they read.

pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod status;
pub mod telemetry;
