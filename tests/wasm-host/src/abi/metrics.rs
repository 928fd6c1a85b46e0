//! Metrics: `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric`,
//! `proxy_get_metric`. Ids are per VM; values live by name in the [`SharedStore`](crate::SharedStore),
//! as Envoy's stats are process-wide.

use crate::guest::{self, Caller};
use crate::shared::MetricValue;
use crate::state::HostState;
use crate::types::{MetricType, Status};
use wasmtime::{Linker, Result};

/// This VM's metric ids: id `n` is entry `n - 1`.
#[derive(Default)]
pub(crate) struct MetricIds {
    names: Vec<String>,
}

impl MetricIds {
    fn name(&self, id: u32) -> Option<&str> {
        self.names
            .get((id as usize).checked_sub(1)?)
            .map(String::as_str)
    }
}

pub(crate) fn link(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap("env", "proxy_define_metric", define_metric)?;
    linker.func_wrap("env", "proxy_increment_metric", increment_metric)?;
    linker.func_wrap("env", "proxy_record_metric", record_metric)?;
    linker.func_wrap("env", "proxy_get_metric", get_metric)?;
    Ok(())
}

fn define_metric(
    mut caller: Caller<'_>,
    kind: u32,
    name_ptr: u32,
    name_len: u32,
    return_id: u32,
) -> Result<u32> {
    let name = guest::read_string(&caller, name_ptr, name_len)?;
    let Some(kind) = MetricType::from_raw(kind) else {
        return Ok(Status::BadArgument.raw());
    };
    let state = caller.data_mut();
    if !state.shared.lock().define_metric(&name, kind) {
        return Ok(Status::BadArgument.raw());
    }
    let ids = &mut state.metric_ids.names;
    let index = ids.iter().position(|n| *n == name).unwrap_or_else(|| {
        ids.push(name);
        ids.len() - 1
    });
    let id = u32::try_from(index + 1).unwrap_or(u32::MAX);
    guest::write_u32(&mut caller, return_id, id)?;
    Ok(Status::Ok.raw())
}

/// Applies `update` to metric `id`, or returns `NotFound`.
fn update(state: &HostState, id: u32, update: impl FnOnce(&mut MetricValue) -> Status) -> Status {
    let Some(name) = state.metric_ids.name(id) else {
        return Status::NotFound;
    };
    match state.shared.lock().metric_mut(name) {
        Some(metric) => update(metric),
        None => Status::NotFound,
    }
}

fn increment_metric(caller: Caller<'_>, id: u32, offset: i64) -> Result<u32> {
    let status = update(caller.data(), id, |metric| match metric {
        // Envoy counters cannot go down.
        MetricValue::Counter(_) if offset < 0 => Status::BadArgument,
        MetricValue::Counter(value) => {
            *value = value.saturating_add(offset.unsigned_abs());
            Status::Ok
        }
        MetricValue::Gauge(value) => {
            *value = value.saturating_add(offset);
            Status::Ok
        }
        MetricValue::Histogram(_) => Status::BadArgument,
    });
    Ok(status.raw())
}

fn record_metric(caller: Caller<'_>, id: u32, value: u64) -> Result<u32> {
    let status = update(caller.data(), id, |metric| {
        match metric {
            // Envoy adds a recorded value to a counter and sets a gauge.
            MetricValue::Counter(total) => *total = total.saturating_add(value),
            MetricValue::Gauge(current) => *current = i64::try_from(value).unwrap_or(i64::MAX),
            MetricValue::Histogram(samples) => samples.push(value),
        }
        Status::Ok
    });
    Ok(status.raw())
}

fn get_metric(mut caller: Caller<'_>, id: u32, return_value: u32) -> Result<u32> {
    let mut value = 0u64;
    let status = update(caller.data(), id, |metric| match metric {
        MetricValue::Counter(total) => {
            value = *total;
            Status::Ok
        }
        MetricValue::Gauge(current) => {
            value = u64::try_from(*current).unwrap_or(0);
            Status::Ok
        }
        // Envoy cannot read a histogram back.
        MetricValue::Histogram(_) => Status::BadArgument,
    });
    if status == Status::Ok {
        guest::write_u64(&mut caller, return_value, value)?;
    }
    Ok(status.raw())
}
